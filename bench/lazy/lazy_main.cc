// naiad_bench_lazy: the measuring half of bench/lazy/run (which builds it, calls it and turns its
// JSON into tables, CSV and a chart). Never asserts times: see bench/lazy/README.md.
//
//   naiad_bench_lazy --naiad build/apps/naiad/naiad --images python,node --runs 3
//       --json /tmp/naiad-bench/lazy/raw.json
//
// Two network-namespace hosts: a registry (docker-registry) in host 0 behind an egress limit
// (100 Mbit/s), the client in host 1. Each test image is pushed as an OCI image and, converted
// with `naiad image create` per layer + `naiad image merge`, as RAFS blobs plus a bootstrap blob.
// Then, round by round and interleaved, each contender starts the image's command
// (`python3 -V`, `node --version`) in a chroot:
//   oci          skopeo copy docker:// -> oci: in host 1, tar -xzf every layer, chroot
//   naiad-cold   naiad get the bootstrap, naiad fs (empty blob cache, no prefetch) in host 1,
//                overlayfs over the mount, chroot
//   naiad-cold-prefetch   the same with fs_prefetch (prefetch_all) enabled
//   naiad-warm   naiad fs on naiad-cold's blob cache (bootstrap local), overlayfs, chroot
//   local        chroot into the tree oci unpacked, on local disk
// The page cache is dropped before every run. Afterwards, for each image, every file is read
// once through a naiad fs mount whose blob cache holds the whole image, and once from the local
// tree (page cache dropped before each). Every run is one object in the JSON output.
//
// Needs root. Everything lives in an owned temp dir ("$TMPDIR/naiad-bench-lazy-*"): a later run
// unmounts and removes the dirs of runs that died (test_env.h's stale-state protocol), and the
// cluster removes namespaces left by dead runs. SIGINT/SIGTERM stop the run and clean up.
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "bench/common/bench_util.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"
#include "test/testing/fs_mount.h"
#include "test/testing/netns_cluster.h"
#include "test/testing/registry_fixture.h"
#include "test/testing/test_env.h"
#include "test/testing/test_images.h"

namespace naiad::bench {
namespace {

using json = nlohmann::json;
using testing::NetnsCluster;
using testing::RegistryFixture;
using testing::RemoveTreeSafely;
using testing::TestImage;
using testing::TestImages;

constexpr int kRegistryHost = 0;
constexpr int kClientHost = 1;

struct Flags {
  std::string naiad;
  std::string images = "python,node";
  int runs = 3;
  double mbit = 100;
  std::string json_path;
  bool prefetch_variant = true;
  bool throughput = true;
  double max_wait = 60;
  std::string logs_dir;  // naiad fs logs of the first round go here, if set
};

absl::StatusOr<json> ParseJsonAfterBrace(const std::string& text, const std::string& what) {
  size_t brace = text.find('{');
  json j = brace == std::string::npos ? json() : json::parse(text.substr(brace), nullptr, false);
  if (brace == std::string::npos || j.is_discarded())
    return absl::InternalError(StrCat("no JSON from ", what));
  return j;
}

// ---------------------------------------------------------------------------------------------
// Images

struct BenchImage {
  TestImage image;
  std::vector<std::string> command;  // run in the chroot
  std::string repo;                  // "bench/<name>"
  std::string oci_ref;               // "<host:port>/bench/<name>:<tag>"
  std::string local_boot;            // the merged bootstrap, where it was built
  std::string boot_digest;           // sha256:<hex> of the bootstrap blob in the registry
  uint64_t boot_bytes = 0;
  std::vector<std::string> blob_digests;
  uint64_t rafs_blob_bytes = 0;
  uint64_t oci_layer_bytes = 0;
  std::string local_tree;  // the tree the last oci run unpacked (contender "local")
};

// Pushes the OCI image, converts its layers to RAFS and pushes the blobs and the bootstrap.
absl::Status PushImage(const Flags& flags, BenchImage& b, RegistryFixture& registry,
                       const std::string& dir) {
  b.repo = StrCat("bench/", b.image.name);
  ASSIGN_OR_RETURN(b.oci_ref, b.image.PushTo(registry, b.repo));
  for (const testing::ImageLayer& layer : b.image.layers) b.oci_layer_bytes += layer.size;
  std::string blobs = dir + "/blobs";
  RETURN_IF_ERROR(CreateDirectories(blobs));
  std::vector<std::string> boots;
  for (size_t i = 0; i < b.image.layers.size(); ++i) {
    std::string source =
        StrCat(b.image.layout_dir, "/blobs/sha256/", b.image.layers[i].digest.substr(7));
    std::string boot = StrCat(dir, "/layer", i, ".boot");
    std::vector<std::string> argv = {
        flags.naiad,          "image",      "create",   source, "-t", "targz-rafs", "-D", blobs,
        "--blob-inline-meta", "--features", "blob-toc", "-B",   boot};
    ASSIGN_OR_RETURN(std::string out, RunCommandOk(argv, {.timeout = absl::Minutes(20)}));
    ASSIGN_OR_RETURN(json report, ParseJsonAfterBrace(out, "naiad image create"));
    ASSIGN_OR_RETURN(Digest pushed,
                     registry.PushBlobFile(b.repo, report["blob_path"].get<std::string>()));
    b.blob_digests.push_back(pushed.ToString());
    b.rafs_blob_bytes += report["blob_size"].get<uint64_t>();
    boots.push_back(boot);
  }
  b.local_boot = dir + "/image.boot";
  std::vector<std::string> merge = {flags.naiad,
                                    "image",
                                    "merge",
                                    "-B",
                                    b.local_boot,
                                    "--blob-digests",
                                    absl::StrJoin(b.blob_digests, ",")};
  merge.insert(merge.end(), boots.begin(), boots.end());
  RETURN_IF_ERROR(RunCommandOk(merge, {.timeout = absl::Minutes(10)}).status());
  ASSIGN_OR_RETURN(Digest boot_digest, registry.PushBlobFile(b.repo, b.local_boot));
  b.boot_digest = boot_digest.ToString();
  b.boot_bytes = std::filesystem::file_size(b.local_boot);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// naiad fs

json FsConfig(const RegistryFixture& registry, const std::string& repo,
              const std::string& cache_dir, bool prefetch) {
  json config = {{"device",
                  {{"backend",
                    {{"type", "registry"},
                     {"config",
                      {{"scheme", "http"},
                       {"host", registry.host_port()},
                       {"repo", repo},
                       {"timeout", 30},
                       {"connect_timeout", 10},
                       {"retry_limit", 2}}}}},
                   {"cache", {{"type", "blobcache"}, {"config", {{"work_dir", cache_dir}}}}}}},
                 {"mode", "direct"},
                 {"digest_validate", false},
                 {"fs_prefetch", {{"enable", prefetch}}}};
  if (prefetch) {
    config["fs_prefetch"]["threads_count"] = 4;
    config["fs_prefetch"]["prefetch_all"] = true;
  }
  return config;
}

// One `naiad fs` daemon in the client host, with overlayfs on top if asked. The daemon is started
// here rather than with testing::FsMount so that the time to mount is measured at a 1 ms
// granularity and the daemon logs at info level (debug logging would be part of the timing).
class NaiadMount {
 public:
  static absl::StatusOr<std::unique_ptr<NaiadMount>> Start(const NetnsCluster& cluster,
                                                           const Flags& flags,
                                                           const std::string& dir,
                                                           const std::string& boot,
                                                           const json& config) {
    std::unique_ptr<NaiadMount> m(new NaiadMount());
    m->dir_ = dir;
    m->mountpoint_ = dir + "/mnt";
    m->apisock_ = dir + "/api.sock";
    m->log_ = dir + "/naiad-fs.log";
    RETURN_IF_ERROR(CreateDirectories(m->mountpoint_));
    std::string config_path = dir + "/config.json";
    RETURN_IF_ERROR(WriteFileAtomically(config_path, config.dump(2)));
    ASSIGN_OR_RETURN(m->process_,
                     cluster.Spawn(kClientHost,
                                   {flags.naiad, "fs", "--config", config_path, "--bootstrap", boot,
                                    "--mountpoint", m->mountpoint_, "--apisock", m->apisock_,
                                    "--log-level", "info"},
                                   {.output_path = m->log_}));
    Clock::time_point start = Clock::now();
    while (!testing::IsMounted(m->mountpoint_)) {
      RETURN_IF_ERROR(CheckInterrupted());
      if (!m->process_.running()) {
        return absl::FailedPreconditionError(
            StrCat("naiad fs exited before mounting; log ", m->log_, ":\n", Tail(m->log_)));
      }
      if (Since(start) > 60) {
        return absl::DeadlineExceededError(
            StrCat("naiad fs did not mount within 60 s; log ", m->log_, ":\n", Tail(m->log_)));
      }
      ::usleep(1000);
    }
    return m;
  }

  ~NaiadMount() { Stop().IgnoreError(); }

  // overlayfs with the mount as lowerdir; upper and work next to it on local disk.
  absl::StatusOr<std::string> Overlay() {
    std::string upper = dir_ + "/upper", work = dir_ + "/work", merged = dir_ + "/merged";
    for (const std::string& d : {upper, work, merged}) RETURN_IF_ERROR(CreateDirectories(d));
    std::string options = StrCat("lowerdir=", mountpoint_, ",upperdir=", upper, ",workdir=", work);
    if (::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()) != 0) {
      return ErrnoError(errno, StrCat("mount overlay on ", merged, " (", options, ")"));
    }
    overlay_ = merged;
    return merged;
  }

  absl::StatusOr<json> Api(const std::string& path) const {
    net::HttpClient client({.timeout = absl::Seconds(10), .unix_socket_path = apisock_});
    ASSIGN_OR_RETURN(net::HttpResponse response, client.Get(StrCat("http://localhost", path)));
    if (response.status != 200) {
      return absl::UnavailableError(StrCat("GET ", path, ": HTTP ", response.status));
    }
    json j = json::parse(response.body, nullptr, false);
    if (j.is_discarded()) return absl::DataLossError(StrCat("GET ", path, ": not JSON"));
    return j;
  }

  // Unmounts the overlay, SIGTERMs the daemon; it must exit 0 and leave nothing mounted.
  absl::Status Stop() {
    absl::Status result;
    if (!overlay_.empty()) {
      if (::umount2(overlay_.c_str(), 0) != 0 && ::umount2(overlay_.c_str(), MNT_DETACH) != 0) {
        result.Update(ErrnoError(errno, StrCat("umount ", overlay_)));
      }
      overlay_.clear();
    }
    if (process_.pid() > 0 && process_.running()) {
      absl::StatusOr<int> code = process_.Stop(absl::Seconds(20));
      if (!code.ok()) {
        result.Update(code.status());
      } else if (*code != 0) {
        result.Update(absl::InternalError(
            StrCat("naiad fs exited with ", *code, " on SIGTERM; log ", log_, ":\n", Tail(log_))));
      }
    }
    if (!mountpoint_.empty() && testing::IsMounted(mountpoint_)) {
      ::umount2(mountpoint_.c_str(), MNT_DETACH);
      result.Update(absl::InternalError(StrCat("naiad fs left ", mountpoint_, " mounted")));
    }
    return result;
  }

  const std::string& mountpoint() const { return mountpoint_; }

 private:
  NaiadMount() = default;

  std::string dir_, mountpoint_, apisock_, log_, overlay_;
  Subprocess process_;
};

// ---------------------------------------------------------------------------------------------
// Reading a whole tree

struct TreeRead {
  uint64_t files = 0;
  uint64_t bytes = 0;
  double seconds = 0;
};

// Reads every regular file under `root` once, in directory order, 1 MiB at a time.
absl::StatusOr<TreeRead> ReadTree(const std::string& root) {
  TreeRead result;
  std::vector<char> buf(1 << 20);
  Clock::time_point start = Clock::now();
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return ErrnoError(ec.value(), StrCat("walking ", root));
    if (it->symlink_status(ec).type() != std::filesystem::file_type::regular) continue;
    int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoError(errno, StrCat("open ", it->path().string()));
    while (true) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0) {
        int err = errno;
        ::close(fd);
        return ErrnoError(err, StrCat("read ", it->path().string()));
      }
      if (n == 0) break;
      result.bytes += static_cast<uint64_t>(n);
    }
    ::close(fd);
    ++result.files;
    RETURN_IF_ERROR(CheckInterrupted());
  }
  if (ec) return ErrnoError(ec.value(), StrCat("walking ", root));
  result.seconds = Since(start);
  return result;
}

// ---------------------------------------------------------------------------------------------
// The contenders

class Bench {
 public:
  Bench(const Flags& flags, NetnsCluster& cluster, RegistryFixture& registry, std::string work)
      : flags_(flags), cluster_(cluster), registry_(registry), work_(std::move(work)) {}

  absl::Status RunRound(BenchImage& b, int round) {
    RETURN_IF_ERROR(Oci(b, round));
    std::string cache = StrCat(work_, "/", b.image.name, "/cache-r", round);
    RETURN_IF_ERROR(NaiadStart(b, round, "naiad-cold", cache, /*prefetch=*/false,
                               /*fetch_boot=*/true));
    if (flags_.prefetch_variant) {
      std::string pcache = StrCat(work_, "/", b.image.name, "/cache-prefetch-r", round);
      RETURN_IF_ERROR(NaiadStart(b, round, "naiad-cold-prefetch", pcache, /*prefetch=*/true,
                                 /*fetch_boot=*/true));
      RETURN_IF_ERROR(RemoveAll(pcache));
    }
    RETURN_IF_ERROR(NaiadStart(b, round, "naiad-warm", cache, /*prefetch=*/false,
                               /*fetch_boot=*/false));
    RETURN_IF_ERROR(RemoveAll(cache));
    return Local(b, round);
  }

  // Fills a blob cache with the whole image (prefetch + one read of every file), then reads every
  // file through a warm mount and from the local tree, `runs` times each.
  absl::Status Throughput(BenchImage& b) {
    std::string cache = StrCat(work_, "/", b.image.name, "/cache-full");
    {
      std::string dir = StrCat(work_, "/", b.image.name, "/fill");
      RETURN_IF_ERROR(CreateDirectories(dir));
      RETURN_IF_ERROR(DropCaches());
      RETURN_IF_ERROR(registry_.ResetCounters());
      ASSIGN_OR_RETURN(auto mount, NaiadMount::Start(cluster_, flags_, dir, b.local_boot,
                                                     FsConfig(registry_, b.repo, cache, true)));
      ASSIGN_OR_RETURN(TreeRead read, ReadTree(mount->mountpoint()));
      json run = {{"image", b.image.name},   {"contender", "naiad-fill (cold, prefetch)"},
                  {"section", "fill"},       {"round", 0},
                  {"wall_s", read.seconds},  {"files", read.files},
                  {"read_bytes", read.bytes}};
      RETURN_IF_ERROR(AddMetrics(*mount, run));
      RETURN_IF_ERROR(mount->Stop());
      RETURN_IF_ERROR(AddRegistryCounts(run));
      Record(std::move(run));
      RETURN_IF_ERROR(RemoveTreeSafely(dir));
    }
    for (int round = 1; round <= flags_.runs; ++round) {
      std::string dir = StrCat(work_, "/", b.image.name, "/tput-r", round);
      RETURN_IF_ERROR(CreateDirectories(dir));
      RETURN_IF_ERROR(registry_.ResetCounters());
      RETURN_IF_ERROR(Prepare());
      OtherCpu other;
      Clock::time_point start = Clock::now();
      ASSIGN_OR_RETURN(auto mount, NaiadMount::Start(cluster_, flags_, dir, b.local_boot,
                                                     FsConfig(registry_, b.repo, cache, false)));
      double mount_s = Since(start);
      ASSIGN_OR_RETURN(TreeRead read, ReadTree(mount->mountpoint()));
      json run = {{"image", b.image.name}, {"contender", "naiad-warm"}, {"section", "throughput"},
                  {"round", round},        {"wall_s", read.seconds},    {"mount_s", mount_s},
                  {"files", read.files},   {"read_bytes", read.bytes}};
      RETURN_IF_ERROR(AddMetrics(*mount, run));
      RETURN_IF_ERROR(mount->Stop());
      run["other_cpu_s"] = other.Seconds();
      RETURN_IF_ERROR(AddRegistryCounts(run));
      Record(std::move(run));
      RETURN_IF_ERROR(RemoveTreeSafely(dir));

      RETURN_IF_ERROR(Prepare());
      OtherCpu other_local;
      ASSIGN_OR_RETURN(TreeRead local, ReadTree(b.local_tree));
      Record({{"image", b.image.name},
              {"contender", "local"},
              {"section", "throughput"},
              {"round", round},
              {"wall_s", local.seconds},
              {"files", local.files},
              {"read_bytes", local.bytes},
              {"other_cpu_s", other_local.Seconds()}});
    }
    return RemoveAll(cache);
  }

  const json& runs() const { return runs_; }

 private:
  // Before every timed run: dirty pages flushed, page cache dropped, other load settled.
  absl::Status Prepare() {
    RETURN_IF_ERROR(DropCaches());
    WaitQuiet(flags_.max_wait);
    RETURN_IF_ERROR(CheckInterrupted());
    return DropCaches();
  }

  void Record(json run) {
    std::string line =
        StrCat(run["image"].get<std::string>(), " ", run["contender"].get<std::string>(), " (",
               run["section"].get<std::string>(), ", round ", run["round"].get<int>(), "): ");
    line += StrCat(run["wall_s"].get<double>(), " s");
    if (run.contains("registry_blob_bytes")) {
      line += StrCat(", registry ", run["registry_blob_bytes"].get<uint64_t>() / 1000000.0,
                     " MB in ", run["registry_blob_requests"].get<uint64_t>(), " blob GETs");
    }
    if (run.contains("data_read")) {
      line += StrCat(", read ", run["data_read"].get<uint64_t>() / 1000000.0, " MB");
    }
    Log(line);
    runs_.push_back(std::move(run));
  }

  absl::Status AddRegistryCounts(json& run) {
    ASSIGN_OR_RETURN(uint64_t blob_bytes,
                     registry_.BytesServed(RegistryFixture::Traffic::kBlobGets));
    ASSIGN_OR_RETURN(uint64_t blob_requests,
                     registry_.RequestCount(RegistryFixture::Traffic::kBlobGets));
    ASSIGN_OR_RETURN(uint64_t all_bytes, registry_.BytesServed(RegistryFixture::Traffic::kAll));
    ASSIGN_OR_RETURN(uint64_t all_requests, registry_.RequestCount(RegistryFixture::Traffic::kAll));
    run["registry_blob_bytes"] = blob_bytes;
    run["registry_blob_requests"] = blob_requests;
    run["registry_all_bytes"] = all_bytes;
    run["registry_all_requests"] = all_requests;
    return absl::OkStatus();
  }

  static absl::Status AddMetrics(const NaiadMount& mount, json& run) {
    ASSIGN_OR_RETURN(json fs, mount.Api("/api/v1/metrics"));
    ASSIGN_OR_RETURN(json backend, mount.Api("/api/v1/metrics/backend"));
    ASSIGN_OR_RETURN(json cache, mount.Api("/api/v1/metrics/blobcache"));
    ASSIGN_OR_RETURN(json prefetch, mount.Api("/api/v1/metrics/prefetch"));
    run["data_read"] = fs["data_read"];
    run["fuse_reads"] = fs["nr_reads"];
    run["api_backend_bytes"] = backend["read_amount_total"];
    run["api_backend_requests"] = backend["read_count"];
    run["api_backend_errors"] = backend["read_errors"];
    run["cache_hits"] = cache.value("cache_hits", 0);
    run["cache_misses"] = cache.value("cache_misses", 0);
    run["prefetch_done_bytes"] = prefetch.value("done_bytes", 0);
    return absl::OkStatus();
  }

  // Runs the image's command in a chroot; returns its output (an error if it fails).
  absl::StatusOr<std::string> Chroot(const BenchImage& b, const std::string& root,
                                     const std::string& log) {
    return ChrootRun(root, b.command, log);
  }

  absl::Status Oci(BenchImage& b, int round) {
    std::string dir = StrCat(work_, "/", b.image.name, "/oci-r", round);
    std::string layout = dir + "/layout", rootfs = dir + "/rootfs", log = dir + "/log";
    RETURN_IF_ERROR(CreateDirectories(rootfs));
    RETURN_IF_ERROR(registry_.ResetCounters());
    RETURN_IF_ERROR(Prepare());
    OtherCpu other;
    ASSIGN_OR_RETURN(OciStart oci, OciPullUnpackRun(cluster_, kClientHost, b.oci_ref, b.image.tag,
                                                    b.command, layout, rootfs, log));
    json run = {{"image", b.image.name},    {"contender", "oci"},
                {"section", "start"},       {"round", round},
                {"wall_s", oci.wall_s},     {"pull_s", oci.pull_s},
                {"unpack_s", oci.unpack_s}, {"cmd_s", oci.cmd_s},
                {"output", oci.output},     {"other_cpu_s", other.Seconds()}};
    RETURN_IF_ERROR(AddRegistryCounts(run));
    Record(std::move(run));
    // Keep this round's tree as the local-disk contender's tree; drop the previous one.
    RETURN_IF_ERROR(RemoveAll(layout));
    if (!b.local_tree.empty())
      RETURN_IF_ERROR(RemoveTreeSafely(std::filesystem::path(b.local_tree).parent_path()));
    b.local_tree = rootfs;
    return absl::OkStatus();
  }

  absl::Status NaiadStart(BenchImage& b, int round, const std::string& name,
                          const std::string& cache, bool prefetch, bool fetch_boot) {
    std::string dir = StrCat(work_, "/", b.image.name, "/", name, "-r", round);
    std::string log = dir + "/log";
    RETURN_IF_ERROR(CreateDirectories(dir));
    RETURN_IF_ERROR(CreateDirectories(cache));
    RETURN_IF_ERROR(registry_.ResetCounters());
    RETURN_IF_ERROR(Prepare());
    OtherCpu other;
    Clock::time_point start = Clock::now();
    std::string boot = b.local_boot;
    double boot_s = 0;
    if (fetch_boot) {
      // What a snapshotter does first: fetch the bootstrap (verified against its digest).
      boot = dir + "/image.boot";
      RETURN_IF_ERROR(RunLogged(cluster_.Wrap(kClientHost, {flags_.naiad, "get", "-q", "--direct",
                                                            StrCat(registry_.url(), "/v2/", b.repo,
                                                                   "/blobs/", b.boot_digest),
                                                            "-O", boot, "--digest", b.boot_digest}),
                                log));
      boot_s = Since(start);
    }
    Clock::time_point mount_start = Clock::now();
    ASSIGN_OR_RETURN(auto mount, NaiadMount::Start(cluster_, flags_, dir + "/fs", boot,
                                                   FsConfig(registry_, b.repo, cache, prefetch)));
    ASSIGN_OR_RETURN(std::string merged, mount->Overlay());
    double mount_s = Since(mount_start);
    Clock::time_point cmd_start = Clock::now();
    ASSIGN_OR_RETURN(std::string output, Chroot(b, merged, log));
    double cmd_s = Since(cmd_start);
    double wall = Since(start);
    json run = {{"image", b.image.name}, {"contender", name}, {"section", "start"},
                {"round", round},        {"wall_s", wall},    {"boot_fetch_s", boot_s},
                {"mount_s", mount_s},    {"cmd_s", cmd_s},    {"output", output}};
    // Counted at the command's exit (a prefetching daemon goes on fetching after it).
    RETURN_IF_ERROR(AddMetrics(*mount, run));
    RETURN_IF_ERROR(AddRegistryCounts(run));
    RETURN_IF_ERROR(mount->Stop());
    run["other_cpu_s"] = other.Seconds();
    Record(std::move(run));
    if (!flags_.logs_dir.empty() && round == 1) {
      RETURN_IF_ERROR(CreateDirectories(flags_.logs_dir));
      std::error_code ec;  // a missing log is no reason to stop the run
      std::filesystem::copy_file(dir + "/fs/naiad-fs.log",
                                 StrCat(flags_.logs_dir, "/", b.image.name, "-", name, ".log"),
                                 std::filesystem::copy_options::overwrite_existing, ec);
    }
    return RemoveTreeSafely(dir);
  }

  absl::Status Local(BenchImage& b, int round) {
    RETURN_IF_ERROR(Prepare());
    OtherCpu other;
    Clock::time_point start = Clock::now();
    ASSIGN_OR_RETURN(std::string output,
                     Chroot(b, b.local_tree, StrCat(work_, "/", b.image.name, "/local-r", round)));
    double wall = Since(start);
    Record({{"image", b.image.name},
            {"contender", "local"},
            {"section", "start"},
            {"round", round},
            {"wall_s", wall},
            {"cmd_s", wall},
            {"output", output},
            {"other_cpu_s", other.Seconds()}});
    return absl::OkStatus();
  }

  const Flags& flags_;
  NetnsCluster& cluster_;
  RegistryFixture& registry_;
  std::string work_;
  json runs_ = json::array();
};

// ---------------------------------------------------------------------------------------------

absl::Status Run(const Flags& flags) {
  if (::geteuid() != 0) return absl::PermissionDeniedError("run as root (namespaces, mounts, tc)");
  std::vector<std::string> names = absl::StrSplit(flags.images, ',', absl::SkipEmpty());
  std::vector<BenchImage> images;
  for (const std::string& name : names) {
    Log(StrCat("test image ", name, " (built once, then cached under ", TestImages::CacheDir(),
               ")"));
    BenchImage b;
    ASSIGN_OR_RETURN(b.image, TestImages::Get(name));
    ASSIGN_OR_RETURN(b.command, CommandFor(name));
    images.push_back(std::move(b));
    RETURN_IF_ERROR(CheckInterrupted());
  }

  // Scratch space; removed (mounts first) at the end, or by the next run if this one dies.
  ASSIGN_OR_RETURN(TempDir work_dir, testing::CreateOwnedTempDir("naiad-bench-lazy-"));
  // Mounts come down before TempDir's destructor removes the tree.
  struct Cleanup {
    std::string path;
    ~Cleanup() { testing::RemoveTreeSafely(path).IgnoreError(); }
  };
  Cleanup cleanup{work_dir.path()};
  const std::string& work = work_dir.path();
  Log(StrCat("scratch: ", work));

  Log(StrCat("cluster: registry in host 0 (egress ", flags.mbit, " Mbit/s), client in host 1"));
  ASSIGN_OR_RETURN(std::unique_ptr<NetnsCluster> cluster, NetnsCluster::Create(2));
  RETURN_IF_ERROR(cluster->SetEgressLimit(kRegistryHost, flags.mbit));
  ASSIGN_OR_RETURN(std::unique_ptr<RegistryFixture> registry,
                   RegistryFixture::Start({.address = cluster->Address(kRegistryHost),
                                           .port = 5000,
                                           .netns_path = cluster->NetnsPath(kRegistryHost)}));
  Log(StrCat("registry at ", registry->url()));

  json out = {{"mbit", flags.mbit}, {"runs", flags.runs}, {"images", json::array()}};
  for (BenchImage& b : images) {
    std::string dir = StrCat(work, "/", b.image.name);
    RETURN_IF_ERROR(CreateDirectories(dir + "/convert"));
    Log(StrCat(b.image.name, ": pushing the OCI image, converting to RAFS, pushing the blobs"));
    RETURN_IF_ERROR(PushImage(flags, b, *registry, dir + "/convert"));
    json layers = json::array();
    for (const testing::ImageLayer& l : b.image.layers) layers.push_back(l.size);
    out["images"].push_back({{"name", b.image.name},
                             {"command", absl::StrJoin(b.command, " ")},
                             {"unpacked_bytes", b.image.unpacked_bytes},
                             {"oci_layer_bytes", b.oci_layer_bytes},
                             {"oci_layers", layers},
                             {"rafs_blob_bytes", b.rafs_blob_bytes},
                             {"bootstrap_bytes", b.boot_bytes},
                             {"manifest_digest", b.image.manifest_digest}});
    RETURN_IF_ERROR(CheckInterrupted());
  }

  Bench bench(flags, *cluster, *registry, work);
  auto write = [&]() -> absl::Status {
    out["runs_done"] = bench.runs();
    return WriteFileAtomically(flags.json_path, out.dump(1));
  };
  for (int round = 1; round <= flags.runs; ++round) {
    for (BenchImage& b : images) {
      Log(StrCat("round ", round, "/", flags.runs, ": ", b.image.name));
      RETURN_IF_ERROR(bench.RunRound(b, round));
      RETURN_IF_ERROR(write());
    }
  }
  if (flags.throughput) {
    for (BenchImage& b : images) {
      Log(StrCat(b.image.name, ": warm sequential read of every file, naiad fs vs local disk"));
      RETURN_IF_ERROR(bench.Throughput(b));
      RETURN_IF_ERROR(write());
    }
  }
  return write();
}

}  // namespace
}  // namespace naiad::bench

int main(int argc, char** argv) {
  CLI::App app("Lazy-start benchmark driver (bench/lazy/run calls it)", "naiad_bench_lazy");
  naiad::bench::Flags flags;
  app.add_option("--naiad", flags.naiad, "Path of the naiad binary")->required();
  app.add_option("--images", flags.images, "Comma-separated test image recipes");
  app.add_option("--runs", flags.runs, "Rounds (median reported)")->check(CLI::Range(1, 100));
  app.add_option("--mbit", flags.mbit, "Registry egress limit, Mbit/s");
  app.add_option("--json", flags.json_path, "Write every run here")->required();
  app.add_option("--max-wait", flags.max_wait, "Seconds to wait for other load before a run");
  app.add_flag("--prefetch-variant,!--no-prefetch-variant", flags.prefetch_variant,
               "Skip the naiad-cold-prefetch contender");
  app.add_flag("--throughput,!--no-throughput", flags.throughput,
               "Skip the warm read-everything part");
  app.add_option("--logs-dir", flags.logs_dir, "Keep naiad fs logs of round 1 here");
  CLI11_PARSE(app, argc, argv);
  flags.naiad = std::filesystem::absolute(flags.naiad).string();
  naiad::bench::SetLogTag("bench/lazy");
  naiad::bench::InstallInterruptHandlers();
  absl::Status status = naiad::bench::Run(flags);
  if (!status.ok()) {
    std::fprintf(stderr, "naiad_bench_lazy: %s\n",
                 std::string(naiad::ToStd(status.ToString())).c_str());
    return 1;
  }
  return 0;
}
