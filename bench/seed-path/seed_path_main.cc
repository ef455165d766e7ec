// naiad_bench_seed_path: the measuring half of bench/seed-path/run (which builds it, calls it and
// turns its JSON into tables, CSV and a chart). Never asserts times: see bench/seed-path/README.md.
//
//   naiad_bench_seed_path --naiad build/apps/naiad/naiad --runs 3 --nodes 8
//       --json /tmp/naiad-bench/seed-path/raw.json
//
// The seed's table (docs: DESIGN.md §7) on this machine, side by side in one run: the python
// test image, the registry behind a 100 Mbit/s link (its host's egress), the LAN between the nodes
// unshaped. Each round, in a fresh P2pCluster with the seed's dfdaemon settings (host 0 registry
// and scheduler, host 1 seed peer, hosts 2 and 3 nodes A and B, each with its own `naiad peer`):
//   oci          node B: skopeo copy + tar -xzf of every layer + chroot python3 -V (OCIv1)
//   lazy-cold    node B: naiad fs with the seed's nydusd config minus the mirror (straight to
//                the registry), empty blob cache, fs_prefetch off; overlayfs; chroot python3 -V
//   p2p-cold     node A: the same through A's own peer (the seed's mirror, 127.0.0.1:65001);
//                empty piece stores everywhere, empty blob cache
//   remote-peer  node B: through B's peer (fresh store), empty blob cache: pieces from A's peer
//   local-peer   node A: a new blob cache and a fresh mount; A's peer holds the pieces
//   blob-cache   node A: a fresh mount on p2p-cold's (warm) blob cache
// then, in a fresh swarm of --nodes peers, every node mounts and starts python3 -V at one instant
// (one thread per node), against the single node's p2p-cold time of the same round:
//   at-once      per node: the instant -> python3 -V's exit
// Every time runs from the start of `naiad fs` (LazyNode::Start) to the command's exit; the page
// cache is dropped before each. Counted per run: the registry's blob bytes and GETs, the bytes
// naiad fs got from its mirror and from the registry, and the deltas of every daemon's
// naiad_peer_origin_bytes_total / _peer_bytes_total / _served_bytes_total / _upload_bytes_total.
//
// Needs root. Scratch lives in an owned temp dir ("$TMPDIR/naiad-bench-seed-path-*"), removed at
// the end, on error and on SIGINT/SIGTERM (mounts first); a later run removes that of a run that
// died, and NetnsCluster::Create removes namespaces left by dead runs.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "bench/common/bench_util.h"
#include "nlohmann/json.hpp"
#include "test/testing/lazy_node.h"
#include "test/testing/p2p_cluster.h"
#include "test/testing/rafs_convert.h"
#include "test/testing/registry_fixture.h"
#include "test/testing/test_env.h"
#include "test/testing/test_images.h"

namespace naiad::bench {
namespace {

using json = nlohmann::json;
using testing::LazyNode;
using testing::P2pCluster;
using testing::RafsImage;
using testing::RegistryFixture;
using testing::RemoveTreeSafely;
using testing::TestImage;
using testing::TestImages;

struct Flags {
  std::string naiad;
  std::string image = "python";
  int runs = 3;
  int nodes = 8;
  double mbit = 100;
  std::string json_path;
  double max_wait = 60;
  std::string logs_dir;  // logs of round 1 (naiad fs, the daemons) go here, if set
  std::string fs_log_level = "info";
  std::string peer_log_level = "info";
  bool oci = true;
  bool at_once = true;
};

// The test image, its RAFS conversion and the command its container starts.
struct Image {
  TestImage image;
  std::vector<std::string> command;
  std::string repo;  // "bench/<name>"
  RafsImage rafs;
  uint64_t rafs_blob_bytes = 0;
  uint64_t boot_bytes = 0;
  uint64_t oci_layer_bytes = 0;
};

// "<mtime UTC> <bytes>" of a file: other engineers may rebuild naiad while the benchmark runs.
std::string FileStamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "?";
  char when[32];
  std::tm tm{};
  ::gmtime_r(&st.st_mtime, &tm);
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return StrCat(when, " ", st.st_size);
}

// ---------------------------------------------------------------------------------------------
// The peers' counters

struct PeerCounters {
  double origin = 0;  // naiad_peer_origin_bytes_total: pieces fetched from the registry
  double peer = 0;    // naiad_peer_peer_bytes_total: pieces fetched from other peers
  double served = 0;  // naiad_peer_served_bytes_total: body bytes sent to proxy clients
  double upload = 0;  // naiad_peer_upload_bytes_total: pieces served to other peers
};
using Snapshot = std::map<int, PeerCounters>;  // by host; the seed's too

absl::StatusOr<Snapshot> TakeSnapshot(const P2pCluster& swarm) {
  std::vector<int> hosts;
  if (swarm.seed_host() >= 0) hosts.push_back(swarm.seed_host());
  for (int i = 0; i < swarm.peer_count(); ++i) hosts.push_back(swarm.peer_host(i));
  Snapshot snapshot;
  for (int host : hosts) {
    // One GET /metrics per daemon.
    ASSIGN_OR_RETURN(
        std::string text,
        swarm.HttpGet(host, StrCat(swarm.HostUrl(host, P2pCluster::kHealthPort), "/metrics")));
    PeerCounters& c = snapshot[host];
    ASSIGN_OR_RETURN(c.origin, testing::PrometheusValue(text, "naiad_peer_origin_bytes_total"));
    ASSIGN_OR_RETURN(c.peer, testing::PrometheusValue(text, "naiad_peer_peer_bytes_total"));
    ASSIGN_OR_RETURN(c.served, testing::PrometheusValue(text, "naiad_peer_served_bytes_total"));
    ASSIGN_OR_RETURN(c.upload, testing::PrometheusValue(text, "naiad_peer_upload_bytes_total"));
  }
  return snapshot;
}

// Adds what the daemons did between two snapshots to `run`: sums over every peer and the seed,
// the seed's origin bytes, and the node's own peer's counters (node_host; -1: none).
void AddPeerDeltas(const P2pCluster& swarm, const Snapshot& before, const Snapshot& after,
                   int node_host, json& run) {
  double origin = 0, peer = 0, upload = 0;
  json per_host = json::object();
  for (const auto& [host, a] : after) {
    const PeerCounters& b = before.at(host);
    PeerCounters d{a.origin - b.origin, a.peer - b.peer, a.served - b.served, a.upload - b.upload};
    origin += d.origin;
    peer += d.peer;
    upload += d.upload;
    per_host[StrCat(host)] = {{"origin_bytes", d.origin},
                              {"peer_bytes", d.peer},
                              {"served_bytes", d.served},
                              {"upload_bytes", d.upload}};
    if (host == swarm.seed_host()) run["seed_origin_bytes"] = d.origin;
    if (host == node_host) {
      run["node_peer_origin_bytes"] = d.origin;
      run["node_peer_peer_bytes"] = d.peer;
      run["node_peer_served_bytes"] = d.served;
    }
  }
  run["peers_origin_bytes"] = origin;
  run["peers_peer_bytes"] = peer;
  run["peers_upload_bytes"] = upload;
  run["peer_deltas"] = std::move(per_host);
}

// ---------------------------------------------------------------------------------------------

class Bench {
 public:
  Bench(const Flags& flags, Image& image, std::string work, json& out)
      : flags_(flags), image_(image), work_(std::move(work)), out_(out) {}

  absl::Status Round(int round) {
    const std::string dir = StrCat(work_, "/r", round);
    RETURN_IF_ERROR(CreateDirectories(dir));
    double alone = 0;  // this round's p2p-cold time, for the at-once line
    {
      Log(StrCat("round ", round, ": swarm with 2 nodes (A on host 2, B on host 3)"));
      ASSIGN_OR_RETURN(std::unique_ptr<P2pCluster> swarm, StartSwarm(2, /*push_oci=*/flags_.oci));
      absl::Status status = PairScenarios(*swarm, round, dir, alone);
      KeepSwarmLogs(*swarm, round, "pair", !status.ok());
      RETURN_IF_ERROR(status);
      RETURN_IF_ERROR(swarm->Stop());
    }
    if (flags_.at_once) {
      Log(StrCat("round ", round, ": fresh swarm of ", flags_.nodes, " nodes, all at once"));
      ASSIGN_OR_RETURN(std::unique_ptr<P2pCluster> swarm,
                       StartSwarm(flags_.nodes, /*push_oci=*/false));
      absl::Status status = AtOnce(*swarm, round, dir, alone);
      KeepSwarmLogs(*swarm, round, StrCat("at-once-", flags_.nodes), !status.ok());
      RETURN_IF_ERROR(status);
      RETURN_IF_ERROR(swarm->Stop());
    }
    return RemoveTreeSafely(dir);
  }

 private:
  // A swarm with the seed's dfdaemon settings and no prefetch, the image in its registry, the
  // registry's link shaped.
  absl::StatusOr<std::unique_ptr<P2pCluster>> StartSwarm(int peers, bool push_oci) {
    ASSIGN_OR_RETURN(std::unique_ptr<P2pCluster> swarm,
                     P2pCluster::Start({.peers = peers,
                                        .prefetch = false,
                                        .seed_style_config = true,
                                        .naiad = flags_.naiad,
                                        .log_level = flags_.peer_log_level}));
    for (const std::string& blob : image_.rafs.blob_paths) {
      RETURN_IF_ERROR(swarm->registry().PushBlobFile(image_.repo, blob).status());
    }
    if (push_oci) {
      ASSIGN_OR_RETURN(oci_ref_, image_.image.PushTo(swarm->registry(), image_.repo));
    }
    RETURN_IF_ERROR(swarm->net().SetEgressLimit(P2pCluster::kRegistryHost, flags_.mbit));
    return swarm;
  }

  absl::Status PairScenarios(P2pCluster& swarm, int round, const std::string& dir, double& alone) {
    const int a = swarm.peer_host(0), b = swarm.peer_host(1);
    if (flags_.oci) RETURN_IF_ERROR(Oci(swarm, round, b, dir));
    RETURN_IF_ERROR(Lazy(swarm, round, "lazy-cold", b, dir + "/cache-direct", false, dir).status());
    ASSIGN_OR_RETURN(alone, Lazy(swarm, round, "p2p-cold", a, dir + "/cache-a", true, dir));
    // A's peer holds the pieces at the ends of the ranges it read only in part until its readers
    // have been quiet for a second: "hit remote peer" starts once it has completed them.
    RETURN_IF_ERROR(WaitForOriginQuiet(swarm));
    RETURN_IF_ERROR(Lazy(swarm, round, "remote-peer", b, dir + "/cache-b", true, dir).status());
    RETURN_IF_ERROR(Lazy(swarm, round, "local-peer", a, dir + "/cache-a2", true, dir).status());
    return Lazy(swarm, round, "blob-cache", a, dir + "/cache-a", true, dir).status();
  }

  // Returns once no peer of the swarm has fetched from the origin for 1.5 s (at most 30 s).
  absl::Status WaitForOriginQuiet(const P2pCluster& swarm) {
    auto origin_total = [&]() -> absl::StatusOr<double> {
      ASSIGN_OR_RETURN(Snapshot snapshot, TakeSnapshot(swarm));
      double total = 0;
      for (const auto& [host, counters] : snapshot) total += counters.origin;
      return total;
    };
    ASSIGN_OR_RETURN(double last, origin_total());
    Clock::time_point changed = Clock::now();
    for (Clock::time_point start = Clock::now(); Since(start) < 30;) {
      absl::SleepFor(absl::Milliseconds(250));
      ASSIGN_OR_RETURN(double now, origin_total());
      if (now != last) {
        last = now;
        changed = Clock::now();
      } else if (Since(changed) >= 1.5) {
        return absl::OkStatus();
      }
    }
    return absl::DeadlineExceededError("the swarm kept fetching from the origin for 30 s");
  }

  // The seed's nydusd config for a node; without the mirror when !through_peer.
  absl::StatusOr<json> NodeConfig(P2pCluster& swarm, const std::string& cache,
                                  bool through_peer) const {
    ASSIGN_OR_RETURN(json config,
                     testing::SeedNydusdConfig({.registry = swarm.registry().host_port(),
                                                .repo = image_.repo,
                                                .work_dir = cache,
                                                .fs_prefetch = false}));
    if (!through_peer) config["device"]["backend"]["config"].erase("mirrors");
    return config;
  }

  // Before every timed run: dirty pages flushed, page cache dropped, other load settled.
  absl::Status Prepare() {
    RETURN_IF_ERROR(DropCaches());
    WaitQuiet(flags_.max_wait);
    RETURN_IF_ERROR(CheckInterrupted());
    return DropCaches();
  }

  static absl::Status AddRegistryCounts(P2pCluster& swarm, json& run) {
    const RegistryFixture& registry = swarm.registry();
    ASSIGN_OR_RETURN(uint64_t bytes, registry.BytesServed(RegistryFixture::Traffic::kBlobGets));
    ASSIGN_OR_RETURN(uint64_t gets, registry.RequestCount(RegistryFixture::Traffic::kBlobGets));
    ASSIGN_OR_RETURN(uint64_t all, registry.RequestCount(RegistryFixture::Traffic::kAll));
    run["registry_blob_bytes"] = bytes;
    run["registry_blob_requests"] = gets;
    run["registry_all_requests"] = all;
    return absl::OkStatus();
  }

  absl::Status Record(json run) {
    std::string line = StrCat(run["scenario"].get<std::string>(), " (round ",
                              run["round"].get<int>(), "): ", run["wall_s"].get<double>(), " s");
    if (run.contains("wall_s_max")) {
      line += StrCat(" median, ", run["wall_s_max"].get<double>(), " s max");
    }
    line += StrCat(", registry ", run["registry_blob_bytes"].get<uint64_t>() / 1e6, " MB in ",
                   run["registry_blob_requests"].get<uint64_t>(), " blob GETs");
    if (run.contains("peers_origin_bytes")) {
      line += StrCat("; peers: ", run["peers_origin_bytes"].get<double>() / 1e6,
                     " MB from the origin, ", run["peers_peer_bytes"].get<double>() / 1e6,
                     " MB from peers");
    }
    Log(line);
    run["naiad_binary"] = FileStamp(flags_.naiad);
    out_["runs_done"].push_back(std::move(run));
    return WriteFileAtomically(flags_.json_path, out_.dump(1));
  }

  void KeepSwarmLogs(const P2pCluster& swarm, int round, const std::string& name, bool failed) {
    if (flags_.logs_dir.empty() || (round != 1 && !failed)) return;
    std::string dest = StrCat(flags_.logs_dir, "/r", round, "-", name);
    absl::Status status = swarm.CopyLogsTo(dest);
    if (!status.ok()) Log(StrCat("could not keep the daemons' logs: ", status.ToString()));
    if (failed) Log(StrCat("daemon logs kept in ", dest));
  }

  void KeepFsLog(LazyNode& node, int round, const std::string& name) {
    if (flags_.logs_dir.empty() || round != 1) return;
    std::error_code ec;  // a missing log is no reason to stop the run
    std::filesystem::create_directories(flags_.logs_dir, ec);
    std::filesystem::copy_file(node.mount().log_path(),
                               StrCat(flags_.logs_dir, "/r", round, "-", name, "-naiad-fs.log"),
                               std::filesystem::copy_options::overwrite_existing, ec);
  }

  absl::Status Oci(P2pCluster& swarm, int round, int host, const std::string& round_dir) {
    const std::string dir = round_dir + "/oci";
    const std::string layout = dir + "/layout", rootfs = dir + "/rootfs", log = dir + "/log";
    RETURN_IF_ERROR(CreateDirectories(rootfs));
    RETURN_IF_ERROR(swarm.registry().ResetCounters());
    RETURN_IF_ERROR(Prepare());
    OtherCpu other;
    ASSIGN_OR_RETURN(OciStart oci, OciPullUnpackRun(swarm.net(), host, oci_ref_, image_.image.tag,
                                                    image_.command, layout, rootfs, log));
    json run = {{"scenario", "oci"},    {"round", round},       {"host", host},
                {"wall_s", oci.wall_s}, {"pull_s", oci.pull_s}, {"unpack_s", oci.unpack_s},
                {"cmd_s", oci.cmd_s},   {"output", oci.output}, {"other_cpu_s", other.Seconds()}};
    RETURN_IF_ERROR(AddRegistryCounts(swarm, run));
    RETURN_IF_ERROR(Record(std::move(run)));
    return RemoveTreeSafely(dir);
  }

  // One node: naiad fs (LazyNode) on `host` with `cache`, then the command. Returns the wall time.
  absl::StatusOr<double> Lazy(P2pCluster& swarm, int round, const std::string& scenario, int host,
                              const std::string& cache, bool through_peer,
                              const std::string& round_dir) {
    const std::string dir = StrCat(round_dir, "/", scenario);
    RETURN_IF_ERROR(CreateDirectories(dir));
    RETURN_IF_ERROR(CreateDirectories(cache));
    ASSIGN_OR_RETURN(json config, NodeConfig(swarm, cache, through_peer));
    RETURN_IF_ERROR(swarm.registry().ResetCounters());
    ASSIGN_OR_RETURN(Snapshot before, TakeSnapshot(swarm));
    RETURN_IF_ERROR(Prepare());
    OtherCpu other;
    const double busy_before = BusySeconds();
    Clock::time_point start = Clock::now();
    ASSIGN_OR_RETURN(std::unique_ptr<LazyNode> node,
                     LazyNode::Start({.config = std::move(config),
                                      .bootstrap = image_.rafs.bootstrap,
                                      .netns_path = swarm.net().NetnsPath(host),
                                      .dir = dir,
                                      .naiad = flags_.naiad,
                                      .log_level = flags_.fs_log_level}));
    const double mount_s = Since(start);
    absl::StatusOr<std::string> output = node->Run(image_.command);
    const double wall = Since(start);
    const double machine_cpu = BusySeconds() - busy_before;
    if (!output.ok()) {
      return Annotate(output.status(), StrCat(scenario, " on host ", host, "; naiad fs log:\n",
                                              Tail(node->mount().log_path())));
    }
    ASSIGN_OR_RETURN(LazyNode::Sources sources, node->BackendSources());
    json run = {{"scenario", scenario},
                {"round", round},
                {"host", host},
                {"wall_s", wall},
                {"mount_s", mount_s},
                {"cmd_s", wall - mount_s},
                {"output", LastLine(*output)},
                {"fs_origin_bytes", sources.origin},
                {"fs_mirror_bytes", sources.mirror},
                {"machine_cpu_s", machine_cpu}};
    RETURN_IF_ERROR(AddRegistryCounts(swarm, run));
    RETURN_IF_ERROR(node->Stop());
    run["other_cpu_s"] = other.Seconds();
    ASSIGN_OR_RETURN(Snapshot after, TakeSnapshot(swarm));
    AddPeerDeltas(swarm, before, after, through_peer ? host : -1, run);
    KeepFsLog(*node, round, scenario);
    node.reset();
    RETURN_IF_ERROR(Record(std::move(run)));
    RETURN_IF_ERROR(RemoveTreeSafely(dir));
    return wall;
  }

  // Every node of a fresh swarm mounts and starts the command at one instant.
  absl::Status AtOnce(P2pCluster& swarm, int round, const std::string& round_dir, double alone) {
    const int n = swarm.peer_count();
    struct Node {
      int host = 0;
      std::string dir;
      json config;
      absl::Status status;
      double mount_s = 0;
      double wall_s = 0;
      double busy_at_end = 0;  // the machine's BusySeconds() when the command ended
      std::string output;
      LazyNode::Sources sources;
    };
    std::vector<Node> nodes(n);
    for (int i = 0; i < n; ++i) {
      Node& node = nodes[i];
      node.host = swarm.peer_host(i);
      node.dir = StrCat(round_dir, "/at-once/node", node.host);
      const std::string cache = node.dir + "-cache";
      RETURN_IF_ERROR(CreateDirectories(node.dir));
      RETURN_IF_ERROR(CreateDirectories(cache));
      ASSIGN_OR_RETURN(node.config, NodeConfig(swarm, cache, /*through_peer=*/true));
    }
    RETURN_IF_ERROR(swarm.registry().ResetCounters());
    ASSIGN_OR_RETURN(Snapshot before, TakeSnapshot(swarm));
    RETURN_IF_ERROR(Prepare());
    OtherCpu other;
    const double busy_before = BusySeconds();
    // Each thread owns its node from start to stop (a daemon dies with the thread that started
    // it). `start` is written before Notify() and read after WaitForNotification().
    Clock::time_point start;
    absl::Notification go;
    std::vector<std::thread> threads;
    for (Node& node : nodes) {
      threads.emplace_back([&, this, n = &node] {
        go.WaitForNotification();
        absl::StatusOr<std::unique_ptr<LazyNode>> lazy =
            LazyNode::Start({.config = n->config,
                             .bootstrap = image_.rafs.bootstrap,
                             .netns_path = swarm.net().NetnsPath(n->host),
                             .dir = n->dir,
                             .naiad = flags_.naiad,
                             .log_level = flags_.fs_log_level});
        if (!lazy.ok()) {
          n->status = lazy.status();
          return;
        }
        n->mount_s = Since(start);
        absl::StatusOr<std::string> output = (*lazy)->Run(image_.command);
        n->wall_s = Since(start);
        n->busy_at_end = BusySeconds();
        if (!output.ok()) {
          n->status = Annotate(output.status(),
                               StrCat("naiad fs log:\n", Tail((*lazy)->mount().log_path())));
          return;
        }
        n->output = LastLine(*output);
        absl::StatusOr<LazyNode::Sources> sources = (*lazy)->BackendSources();
        if (sources.ok()) n->sources = *sources;
        n->status = sources.status();
        n->status.Update((*lazy)->Stop());
        if (n->host == swarm.peer_host(0)) KeepFsLog(**lazy, round, "at-once-first-node");
      });
    }
    start = Clock::now();
    go.Notify();
    for (std::thread& thread : threads) thread.join();
    const double other_cpu = other.Seconds();
    for (const Node& node : nodes) {
      if (!node.status.ok()) {
        return Annotate(node.status, StrCat("at-once: the node on host ", node.host));
      }
    }
    double busy_at_end = busy_before;
    for (const Node& node : nodes) busy_at_end = std::max(busy_at_end, node.busy_at_end);
    json run = {{"scenario", "at-once"},    {"round", round},
                {"nodes_started", n},       {"alone_s", alone},
                {"other_cpu_s", other_cpu}, {"machine_cpu_s", busy_at_end - busy_before}};
    RETURN_IF_ERROR(AddRegistryCounts(swarm, run));
    ASSIGN_OR_RETURN(Snapshot after, TakeSnapshot(swarm));
    AddPeerDeltas(swarm, before, after, -1, run);
    std::vector<double> walls, mounts, cmds;
    uint64_t fs_origin = 0, fs_mirror = 0;
    json per_node = json::array();
    for (const Node& node : nodes) {
      walls.push_back(node.wall_s);
      mounts.push_back(node.mount_s);
      cmds.push_back(node.wall_s - node.mount_s);
      fs_origin += node.sources.origin;
      fs_mirror += node.sources.mirror;
      const json& d = run["peer_deltas"][StrCat(node.host)];
      per_node.push_back({{"host", node.host},
                          {"wall_s", node.wall_s},
                          {"mount_s", node.mount_s},
                          {"cmd_s", node.wall_s - node.mount_s},
                          {"output", node.output},
                          {"fs_origin_bytes", node.sources.origin},
                          {"fs_mirror_bytes", node.sources.mirror},
                          {"peer_origin_bytes", d["origin_bytes"]},
                          {"peer_peer_bytes", d["peer_bytes"]}});
    }
    run["nodes"] = std::move(per_node);
    run["wall_s"] = Median(walls);
    run["wall_s_max"] = *std::max_element(walls.begin(), walls.end());
    run["wall_s_min"] = *std::min_element(walls.begin(), walls.end());
    run["mount_s"] = Median(mounts);
    run["mount_s_max"] = *std::max_element(mounts.begin(), mounts.end());
    run["cmd_s"] = Median(cmds);
    run["cmd_s_max"] = *std::max_element(cmds.begin(), cmds.end());
    run["fs_origin_bytes"] = fs_origin;
    run["fs_mirror_bytes"] = fs_mirror;
    RETURN_IF_ERROR(Record(std::move(run)));
    return RemoveTreeSafely(round_dir + "/at-once");
  }

  static double Median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  }

  static std::string LastLine(const std::string& text) {
    std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
    return lines.empty() ? std::string() : lines.back();
  }

  const Flags& flags_;
  Image& image_;
  std::string work_;
  json& out_;
  std::string oci_ref_;  // "<host:port>/<repo>:<tag>" in the current pair swarm's registry
};

// ---------------------------------------------------------------------------------------------

absl::Status Run(const Flags& flags) {
  if (::geteuid() != 0) return absl::PermissionDeniedError("run as root (namespaces, mounts, tc)");
  if (flags.nodes < 1) return absl::InvalidArgumentError("--nodes must be at least 1");
  Image image;
  Log(StrCat("test image ", flags.image, " (built once, then cached under ", TestImages::CacheDir(),
             ")"));
  ASSIGN_OR_RETURN(image.image, TestImages::Get(flags.image));
  ASSIGN_OR_RETURN(image.command, CommandFor(flags.image));
  image.repo = StrCat("bench/", flags.image);
  for (const testing::ImageLayer& layer : image.image.layers) image.oci_layer_bytes += layer.size;

  // Scratch space; removed (mounts first) at the end, or by the next run if this one dies.
  ASSIGN_OR_RETURN(TempDir work_dir, testing::CreateOwnedTempDir("naiad-bench-seed-path-"));
  struct Cleanup {
    std::string path;
    ~Cleanup() { testing::RemoveTreeSafely(path).IgnoreError(); }
  };
  Cleanup cleanup{work_dir.path()};
  const std::string& work = work_dir.path();
  Log(StrCat("scratch: ", work));
  Log(StrCat(flags.image, ": converting the layers to RAFS (naiad image create + merge)"));
  ASSIGN_OR_RETURN(image.rafs, testing::ConvertToRafs(image.image, work + "/convert", flags.naiad));
  for (uint64_t size : image.rafs.blob_sizes) image.rafs_blob_bytes += size;
  image.boot_bytes = std::filesystem::file_size(image.rafs.bootstrap);
  RETURN_IF_ERROR(CheckInterrupted());

  json out = {{"mbit", flags.mbit},
              {"runs", flags.runs},
              {"nodes", flags.nodes},
              {"fs_log_level", flags.fs_log_level},
              {"peer_log_level", flags.peer_log_level},
              {"image",
               {{"name", flags.image},
                {"command", absl::StrJoin(image.command, " ")},
                {"unpacked_bytes", image.image.unpacked_bytes},
                {"oci_layer_bytes", image.oci_layer_bytes},
                {"rafs_blob_bytes", image.rafs_blob_bytes},
                {"bootstrap_bytes", image.boot_bytes},
                {"manifest_digest", image.image.manifest_digest}}},
              {"runs_done", json::array()}};
  RETURN_IF_ERROR(WriteFileAtomically(flags.json_path, out.dump(1)));
  Bench bench(flags, image, work, out);
  for (int round = 1; round <= flags.runs; ++round) {
    RETURN_IF_ERROR(bench.Round(round));
    RETURN_IF_ERROR(CheckInterrupted());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace naiad::bench

int main(int argc, char** argv) {
  CLI::App app("Seed-path benchmark driver (bench/seed-path/run calls it)",
               "naiad_bench_seed_path");
  naiad::bench::Flags flags;
  app.add_option("--naiad", flags.naiad, "Path of the naiad binary")->required();
  app.add_option("--image", flags.image, "Test image recipe (python, node, ...)");
  app.add_option("--runs", flags.runs, "Rounds (median reported)")->check(CLI::Range(1, 100));
  app.add_option("--nodes", flags.nodes, "Nodes starting at once")->check(CLI::Range(1, 64));
  app.add_option("--mbit", flags.mbit, "Registry egress limit, Mbit/s");
  app.add_option("--json", flags.json_path, "Write every run here")->required();
  app.add_option("--max-wait", flags.max_wait, "Seconds to wait for other load before a run");
  app.add_option("--logs-dir", flags.logs_dir, "Keep the logs of round 1 (and of failures) here");
  app.add_option("--fs-log-level", flags.fs_log_level, "naiad fs --log-level");
  app.add_option("--peer-log-level", flags.peer_log_level, "--log-level of the swarm's daemons");
  app.add_flag("--oci,!--no-oci", flags.oci, "Skip the OCIv1 scenario");
  app.add_flag("--at-once,!--no-at-once", flags.at_once, "Skip the N-nodes-at-once scenario");
  CLI11_PARSE(app, argc, argv);
  flags.naiad = std::filesystem::absolute(flags.naiad).string();
  flags.json_path = std::filesystem::absolute(flags.json_path).string();
  naiad::bench::SetLogTag("bench/seed-path");
  naiad::bench::InstallInterruptHandlers();
  absl::Status status = naiad::bench::Run(flags);
  if (!status.ok()) {
    std::fprintf(stderr, "naiad_bench_seed_path: %s\n",
                 std::string(naiad::ToStd(status.ToString())).c_str());
    return 1;
  }
  return 0;
}
