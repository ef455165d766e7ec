// naiad_bench_p2p: the measuring half of bench/p2p/run (which builds it, calls it and turns its
// JSON into tables, CSV and a chart). Never asserts times: see bench/p2p/README.md.
//
//   naiad_bench_p2p --naiad build/apps/naiad/naiad --sizes-mib 256 --peers 4,8,16 --mbit 50
//       --json /tmp/naiad-bench/p2p/raw.json --logs-dir /tmp/naiad-bench/p2p/logs
//
// For each blob size and each peer count N: a NetnsCluster of N + 2 hosts, every one of them
// limited to --mbit of egress (tbf). Host 0 is the origin: the registry (docker-registry) holding
// the blob, and for the contenders that need one, Naiad's scheduler or BitTorrent's tracker.
// Host 1 is Naiad's seed peer (idle for the other contenders). Hosts 2..N+1 are the peers. Each
// contender starts from fresh state, and all N downloads start at one instant:
//   direct      curl of the blob URL from each peer host straight to the registry
//   naiad       naiad scheduler (host 0) + naiad peer --seed (host 1) + naiad peer on each peer
//               host, started and ready before the instant; then curl through each host's own
//               proxy (http://<host>:65001/v2/<repo>/blobs/<digest>)
//   bittorrent  opentracker (host 0) + aria2c seeding the blob on host 0, started and announced
//               before the instant; then aria2c with the .torrent on each peer host, which keep
//               seeding until every peer is complete
// Recorded per run: each peer's completion time from the common instant, every host's eth0 tx
// bytes over the run (host 0's is the origin's), what the registry served (its access log), CPU
// busy % of the machine over the run, each copy's sha256, and for Naiad each daemon's /metrics,
// for BitTorrent each aria2c's uploadLength (JSON-RPC). Every run is one object in the JSON.
//
// Needs root. Scratch lives in an owned temp dir ("$TMPDIR/naiad-bench-p2p-*") that a later run
// removes if this one dies; NetnsCluster::Create removes namespaces left by dead runs, and the
// cluster's destructor kills whatever still runs inside its namespaces. SIGINT/SIGTERM stop the
// run and clean up.
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "bench/common/bench_util.h"
#include "nlohmann/json.hpp"
#include "test/testing/netns_cluster.h"
#include "test/testing/p2p_cluster.h"
#include "test/testing/registry_fixture.h"
#include "test/testing/test_env.h"

namespace naiad::bench {
namespace {

using Json = nlohmann::json;
using testing::NetnsCluster;
using testing::RegistryFixture;

constexpr int kOriginHost = 0;     // registry, scheduler, tracker, BitTorrent's origin seeder
constexpr int kSeedHost = 1;       // Naiad's seed peer
constexpr int kFirstPeerHost = 2;  // peers on hosts 2..N+1
constexpr char kRepo[] = "bench/p2p";
constexpr int kRegistryPort = 5000;
constexpr int kSchedulerPort = 8002;
constexpr int kSchedulerMetricsPort = 8000;
constexpr int kProxyPort = 65001;
constexpr int kUploadPort = 65002;
constexpr int kHealthPort = 40901;
constexpr int kTrackerPort = 6969;
constexpr int kBtPort = 6881;
constexpr int kAria2RpcPort = 6800;

struct Flags {
  std::string naiad;
  std::string sizes_mib = "256";
  std::string peers = "4,8,16";
  double mbit = 50;
  std::string contenders = "direct,naiad,bittorrent";
  std::string json_path;
  std::string logs_dir;
  double max_wait = 60;
  int bt_piece_kib = 1024;
  int bt_max_peers = 55;
  std::string naiad_log_level = "info";
  int naiad_concurrent_pieces = 0;  // 0: the peer's default
  // The shared build lock, held while these contenders run (nobody builds meanwhile).
  std::string lock_path;
  std::string lock_contenders = "naiad,bittorrent";
};

double WallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

absl::StatusOr<std::vector<int>> ParseInts(const std::string& text, const std::string& what) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      return absl::InvalidArgumentError(StrCat(what, ": \"", part, "\" is not a positive number"));
    }
    out.push_back(v);
  }
  if (out.empty()) return absl::InvalidArgumentError(StrCat(what, ": empty"));
  return out;
}

// Takes an exclusive flock on `path` (waiting for other holders); released when the fd closes.
absl::StatusOr<UniqueFd> TakeLock(const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_RDWR | O_CREAT, 0666));
  bool said = false;
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) return ErrnoError(errno, StrCat("flock ", path));
    RETURN_IF_ERROR(CheckInterrupted());
    if (!said) Log(StrCat("waiting for ", path, " (a build or another benchmark holds it)"));
    said = true;
    ::usleep(200 * 1000);
  }
  return fd;
}

// "<mtime> <size>" of a file: tells binaries rebuilt between runs apart.
std::string FileStamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  char when[32];
  std::tm tm{};
  ::gmtime_r(&st.st_mtime, &tm);
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return StrCat(when, " ", st.st_size);
}

// ---------------------------------------------------------------------------------------------
// Machine state

// CPU seconds of our reaped descendants: the daemons, curls and aria2c of a run once reaped.
double ChildrenCpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_CHILDREN, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// ---------------------------------------------------------------------------------------------
// The blob and its torrent

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::string Sha1(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), md, &length, EVP_sha1(), nullptr);
  return {reinterpret_cast<const char*>(md), length};
}

struct Blob {
  std::string path;
  uint64_t size = 0;
  Digest digest;
  uint32_t piece_length = 0;  // BitTorrent's
  std::string piece_sha1s;    // 20 bytes per piece
};

// Deterministic pseudo-random (incompressible) bytes, with the sha256 and the torrent's piece
// hashes computed on the way.
absl::StatusOr<Blob> MakeBlob(const std::string& path, uint64_t size, uint32_t piece_length) {
  Blob blob{.path = path, .size = size, .piece_length = piece_length};
  ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  std::mt19937_64 random(size);
  Sha256 sha256;
  std::string piece(piece_length, '\0');
  for (uint64_t offset = 0; offset < size; offset += piece_length) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(piece_length, size - offset));
    for (size_t i = 0; i < n; i += 8) {
      uint64_t v = random();
      std::memcpy(&piece[i], &v, std::min<size_t>(8, n - i));
    }
    std::string_view data(piece.data(), n);
    RETURN_IF_ERROR(WriteFull(fd.get(), data));
    sha256.Update(data);
    blob.piece_sha1s += Sha1(data);
  }
  blob.digest = sha256.Finish();
  return blob;
}

std::string Bencoded(std::string_view s) { return StrCat(s.size(), ":", s); }

// The info dictionary of a single-file torrent named "blob" (keys in sorted order).
std::string InfoDict(const Blob& blob) {
  return StrCat("d6:lengthi", blob.size, "e4:name", Bencoded("blob"), "12:piece lengthi",
                blob.piece_length, "e6:pieces", Bencoded(blob.piece_sha1s), "e");
}

std::string Torrent(const Blob& blob, const std::string& announce) {
  return StrCat("d8:announce", Bencoded(announce), "4:info", InfoDict(blob), "e");
}

std::string PercentEncoded(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back('%');
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

// A long-running process of a contender (daemon, tracker, aria2c).
struct Daemon {
  std::string name;
  int host = 0;
  std::string log;
  Subprocess process;
};

// One of the N downloads, polled until it completes or fails.
struct Download {
  int host = 0;
  std::string name;  // "peer0"
  std::string log;
  std::string output;     // the copy, sha256-checked afterwards
  std::string done_file;  // BitTorrent: the completion hook writes the time here
  Subprocess process;
  bool finished = false;
  std::optional<double> seconds;
  std::string failure;
  std::optional<bool> sha256_ok;
};

// ---------------------------------------------------------------------------------------------

class Bench {
 public:
  Bench(const Flags& flags, NetnsCluster& cluster, RegistryFixture& registry, const Blob& blob,
        int peers, std::string work, std::string logs)
      : flags_(flags),
        cluster_(cluster),
        registry_(registry),
        blob_(blob),
        peers_(peers),
        work_(std::move(work)),
        logs_(std::move(logs)) {}

  absl::StatusOr<Json> Run(const std::string& contender) {
    if (contender == "direct") return Direct();
    if (contender == "naiad") return Naiad();
    if (contender == "bittorrent") return BitTorrent();
    return absl::InvalidArgumentError(StrCat("unknown contender ", contender));
  }

 private:
  struct Window {
    Clock::time_point start;
    double start_wall = 0;
    double busy = 0;
    double children_cpu = 0;
    std::vector<uint64_t> tx;
  };

  std::string Ip(int host) const { return cluster_.Address(host); }
  std::string Url(int host, int port, std::string_view path) const {
    return StrCat("http://", Ip(host), ":", port, path);
  }
  std::string BlobPath() const { return StrCat("/v2/", kRepo, "/blobs/", blob_.digest.ToString()); }
  // The time N copies take through the origin's link alone, with margin: past it, a run failed.
  double Timeout() const {
    return 1.5 * peers_ * static_cast<double>(blob_.size) * 8 / (flags_.mbit * 1e6) + 120;
  }

  absl::StatusOr<uint64_t> TxBytes(int host) const {
    ASSIGN_OR_RETURN(std::string out,
                     RunCommandOk({"ip", "-n", cluster_.NetnsName(host), "-s", "-j", "link", "show",
                                   "dev", NetnsCluster::kInterface}));
    Json j = Json::parse(out, nullptr, false);
    if (j.is_discarded() || !j.is_array() || j.empty() || !j[0].contains("stats64")) {
      return absl::InternalError(StrCat("cannot parse `ip -s -j link` of host ", host, ": ", out));
    }
    return j[0]["stats64"]["tx"]["bytes"].get<uint64_t>();
  }

  absl::StatusOr<std::vector<uint64_t>> TxAll() const {
    std::vector<uint64_t> tx;
    for (int h = 0; h < cluster_.host_count(); ++h) {
      ASSIGN_OR_RETURN(uint64_t b, TxBytes(h));
      tx.push_back(b);
    }
    return tx;
  }

  absl::StatusOr<std::string> HttpGet(int host, const std::string& url) const {
    return cluster_.ExecOk(host, {"curl", "-sS", "--noproxy", "*", "-f", "--max-time", "10", url},
                           {.timeout = absl::Seconds(20)});
  }

  // Polls `url` from inside `host` until it answers 200 (and `accept(body)`), or fails.
  absl::Status WaitFor(int host, const std::string& url, Daemon* daemon, double timeout_s,
                       const std::function<bool(const std::string&)>& accept = nullptr) {
    Clock::time_point start = Clock::now();
    std::string last;
    while (true) {
      RETURN_IF_ERROR(CheckInterrupted());
      absl::StatusOr<std::string> body = HttpGet(host, url);
      if (body.ok() && (!accept || accept(*body))) return absl::OkStatus();
      last = body.ok() ? body->substr(0, 300) : body.status().ToString();
      if (daemon != nullptr && !daemon->process.running()) {
        return absl::FailedPreconditionError(StrCat(daemon->name, " on host ", daemon->host,
                                                    " exited; log ", daemon->log, ":\n",
                                                    Tail(daemon->log)));
      }
      if (Since(start) > timeout_s) {
        return absl::DeadlineExceededError(StrCat(
            url, " not ready within ", timeout_s, " s; last answer: ", last,
            daemon != nullptr ? "; log:\n" : "", daemon != nullptr ? Tail(daemon->log) : ""));
      }
      ::usleep(100 * 1000);
    }
  }

  absl::StatusOr<Daemon> StartDaemon(const std::string& name, int host,
                                     const std::vector<std::string>& argv,
                                     const std::string& cwd = "") {
    Daemon d{.name = name, .host = host, .log = StrCat(logs_, "/", name, ".log")};
    {
      std::ofstream out(d.log, std::ios::app);
      out << "$ " << CommandLineForDisplay(argv) << "\n";
    }
    ASSIGN_OR_RETURN(d.process, cluster_.Spawn(host, argv, {.cwd = cwd, .output_path = d.log}));
    return d;
  }

  // SIGTERM to all at once, then waits; returns each one's exit code by name.
  static Json StopAll(std::vector<Daemon>& daemons, absl::Duration grace) {
    Json exits = Json::object();
    for (Daemon& d : daemons) {
      if (d.process.running()) d.process.Signal(SIGTERM).IgnoreError();
    }
    for (Daemon& d : daemons) {
      absl::StatusOr<int> code = d.process.Wait(grace);
      if (!code.ok()) {
        d.process.Signal(SIGKILL).IgnoreError();
        d.process.Wait(absl::Seconds(5)).IgnoreError();
        exits[d.name] = "killed: no exit within the grace period of SIGTERM";
      } else {
        exits[d.name] = *code;
      }
    }
    return exits;
  }

  // Before a run: dirty pages written back (the previous run's copies), other load settled.
  void Prepare() const {
    ::sync();
    WaitQuiet(flags_.max_wait);
  }

  absl::StatusOr<Window> OpenWindow() {
    RETURN_IF_ERROR(CheckInterrupted());
    Window w;
    RETURN_IF_ERROR(registry_.ResetCounters());
    ASSIGN_OR_RETURN(w.tx, TxAll());
    w.busy = BusySeconds();
    w.children_cpu = ChildrenCpuSeconds();
    w.start_wall = WallNow();
    w.start = Clock::now();
    return w;
  }

  absl::Status CloseWindow(const Window& w, Json& run) {
    double wall = Since(w.start);
    double busy = BusySeconds() - w.busy;
    ASSIGN_OR_RETURN(std::vector<uint64_t> tx, TxAll());
    long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
    run["window_s"] = wall;
    run["cpu_busy_pct"] = 100 * busy / (static_cast<double>(cores) * wall);
    Json host_tx = Json::array();
    for (size_t h = 0; h < tx.size(); ++h) host_tx.push_back(tx[h] - w.tx[h]);
    run["host_tx_bytes"] = host_tx;
    run["origin_tx_bytes"] = host_tx[kOriginHost];
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

  // Polls every download until each has completed or failed, or the run's timeout passed.
  absl::Status WaitAll(std::vector<Download>& downloads, const Window& w, const std::string& what) {
    const double timeout = Timeout();
    double next_progress = 30;
    while (true) {
      RETURN_IF_ERROR(CheckInterrupted());
      int left = 0;
      for (Download& d : downloads) {
        if (d.finished) continue;
        if (!d.done_file.empty()) {
          if (std::filesystem::exists(d.done_file)) {
            double seen = Since(w.start);
            absl::StatusOr<std::string> text = ReadFileToString(d.done_file);
            double at = 0;
            // The hook's wall-clock time of completion; the polling time if it cannot be read.
            if (text.ok() && absl::SimpleAtod(absl::StripAsciiWhitespace(*text), &at)) {
              d.seconds = std::min(seen, at - w.start_wall);
            } else {
              d.seconds = seen;
            }
            d.finished = true;
          } else if (!d.process.running()) {
            absl::StatusOr<int> code = d.process.Wait(absl::ZeroDuration());
            d.failure = StrCat("exited (", code.ok() ? StrCat(*code) : code.status().ToString(),
                               ") before completing; log ", d.log);
            d.finished = true;
          }
        } else if (!d.process.running()) {
          double t = Since(w.start);
          absl::StatusOr<int> code = d.process.Wait(absl::ZeroDuration());
          if (code.ok() && *code == 0) {
            d.seconds = t;
          } else {
            d.failure =
                StrCat("curl exited with ", code.ok() ? StrCat(*code) : code.status().ToString(),
                       ": ", Tail(d.log, 500));
          }
          d.finished = true;
        }
        if (d.finished) {
          Log(StrCat("  ", what, " ", d.name, " (host ", d.host,
                     "): ", d.seconds ? StrCat("complete at ", *d.seconds, " s") : d.failure));
        } else {
          ++left;
        }
      }
      if (left == 0) return absl::OkStatus();
      double now = Since(w.start);
      if (now > timeout) {
        for (Download& d : downloads) {
          if (d.finished) continue;
          d.failure = StrCat("not complete after ", timeout, " s");
          d.finished = true;
          Log(StrCat("  ", what, " ", d.name, ": ", d.failure));
        }
        return absl::OkStatus();
      }
      if (now > next_progress) {
        Log(StrCat("  ", what, ": ", downloads.size() - left, "/", downloads.size(),
                   " complete after ", static_cast<int>(now), " s"));
        next_progress += 30;
      }
      ::usleep(5 * 1000);
    }
  }

  // Kills downloads still running, checks every copy, and records them.
  static void Finish(std::vector<Download>& downloads, const Digest& want, Json& run) {
    for (Download& d : downloads) {
      if (d.process.running()) d.process.Stop(absl::Seconds(3)).IgnoreError();
    }
    Json peers = Json::array();
    int complete = 0;
    for (Download& d : downloads) {
      if (d.seconds) {
        absl::StatusOr<Digest> got = Digest::Sha256OfFile(d.output);
        d.sha256_ok = got.ok() && *got == want;
        if (!*d.sha256_ok) {
          d.failure = got.ok() ? StrCat("sha256 mismatch: ", got->ToString())
                               : StrCat("cannot hash the copy: ", got.status().ToString());
          Log(StrCat("  ", d.name, ": ", d.failure));
        } else {
          ++complete;
        }
      }
      Json p = {{"name", d.name}, {"host", d.host}, {"failure", d.failure}};
      p["seconds"] = d.seconds ? Json(*d.seconds) : Json(nullptr);
      p["sha256_ok"] = d.sha256_ok ? Json(*d.sha256_ok) : Json(nullptr);
      peers.push_back(p);
    }
    run["peer_results"] = peers;
    run["complete_ok"] = complete;
    std::vector<double> times;
    for (const Download& d : downloads) {
      if (d.seconds) times.push_back(*d.seconds);
    }
    std::sort(times.begin(), times.end());
    if (!times.empty()) {
      run["max_s"] = times.back();
      size_t n = times.size();
      run["median_s"] = n % 2 == 1 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
    }
  }

  Json NewRun(const std::string& contender) const {
    return {{"contender", contender},
            {"peers", peers_},
            {"size_bytes", blob_.size},
            {"mbit", flags_.mbit},
            {"hosts", cluster_.host_count()}};
  }

  void Summary(const Json& run) const {
    std::string line = StrCat(run["contender"].get<std::string>(), " N=", peers_, ": ");
    if (run.contains("max_s")) {
      line += StrCat("max ", run["max_s"].get<double>(), " s, median ",
                     run["median_s"].get<double>(), " s");
    }
    line += StrCat(", ", run["complete_ok"].get<int>(), "/", peers_, " verified copies, origin tx ",
                   static_cast<double>(run["origin_tx_bytes"].get<uint64_t>()) /
                       static_cast<double>(blob_.size),
                   " x blob, registry ",
                   static_cast<double>(run["registry_blob_bytes"].get<uint64_t>()) /
                       static_cast<double>(blob_.size),
                   " x blob, CPU ", static_cast<int>(run["cpu_busy_pct"].get<double>()), "% busy (",
                   run["own_cpu_s"].get<double>(), " CPU s ours)");
    Log(line);
  }

  // ---- (a) every peer from the registry

  absl::StatusOr<Json> Direct() {
    const std::string dir = work_ + "/direct";
    RETURN_IF_ERROR(CreateDirectories(dir));
    const std::string url = registry_.BlobUrl(kRepo, blob_.digest);
    std::vector<Download> downloads(peers_);
    Prepare();
    ASSIGN_OR_RETURN(Window w, OpenWindow());
    for (int i = 0; i < peers_; ++i) {
      Download& d = downloads[i];
      d.host = kFirstPeerHost + i;
      d.name = StrCat("peer", i);
      d.log = StrCat(logs_, "/curl-", d.name, ".log");
      d.output = StrCat(dir, "/", d.name, ".blob");
      ASSIGN_OR_RETURN(d.process,
                       cluster_.Spawn(d.host,
                                      {"curl", "-sS", "--noproxy", "*", "-f", "--max-time",
                                       StrCat(static_cast<int>(Timeout())), "-o", d.output, url},
                                      {.output_path = d.log}));
    }
    RETURN_IF_ERROR(WaitAll(downloads, w, "direct"));
    Json run = NewRun("direct");
    RETURN_IF_ERROR(CloseWindow(w, run));
    Finish(downloads, blob_.digest, run);
    // Every process of the run has been reaped by now.
    run["own_cpu_s"] = ChildrenCpuSeconds() - w.children_cpu;
    Summary(run);
    RETURN_IF_ERROR(RemoveAll(dir));
    return run;
  }

  // ---- (b) Naiad: scheduler + seed peer + one peer per host, clients through the proxies

  std::string PeerYaml(const std::string& dir, const std::string& name, int host) const {
    const std::string ip = Ip(host);
    std::string yaml = StrCat(
        "dataDir: ", dir, "/", name, "/data\n", "proxy:\n", "  tcpListen: {listen: ", ip,
        ", port: ", kProxyPort, "}\n", "  registryMirror: {url: ", registry_.url(), "}\n",
        "health:\n", "  tcpListen: {listen: ", ip, ", port: ", kHealthPort, "}\n", "upload:\n",
        "  tcpListen: {listen: ", ip, ", port: ", kUploadPort, "}\n", "scheduler:\n",
        "  netAddrs: [{type: tcp, addr: \"", Ip(kOriginHost), ":", kSchedulerPort, "\"}]\n",
        "  keepAliveInterval: 1s\n", "host:\n", "  hostname: ", name, "\n", "  advertiseIP: ", ip,
        "\n", "download:\n", "  unixSocket: ", dir, "/", name, "/peer.sock\n");
    if (flags_.naiad_concurrent_pieces > 0) {
      StrAppend(&yaml, "  concurrentPieceCount: ", flags_.naiad_concurrent_pieces, "\n");
    }
    return yaml;
  }

  absl::StatusOr<Json> Naiad() {
    const std::string dir = work_ + "/naiad";
    RETURN_IF_ERROR(CreateDirectories(dir));
    std::vector<Daemon> peers_and_seed;
    std::vector<Daemon> scheduler;
    Json run = NewRun("naiad");
    run["naiad_binary"] = FileStamp(flags_.naiad);
    {
      ASSIGN_OR_RETURN(Daemon d, StartDaemon("scheduler", kOriginHost,
                                             {flags_.naiad, "scheduler", "--address",
                                              Ip(kOriginHost), "--port", StrCat(kSchedulerPort),
                                              "--metrics-port", StrCat(kSchedulerMetricsPort),
                                              "--host-ttl", "3s", "--keepalive-interval", "1s",
                                              "--log-level", flags_.naiad_log_level}));
      scheduler.push_back(std::move(d));
    }
    RETURN_IF_ERROR(WaitFor(kOriginHost, Url(kOriginHost, kSchedulerMetricsPort, "/healthy"),
                            &scheduler[0], 30));
    std::vector<std::pair<std::string, int>> hosts = {{"seed", kSeedHost}};
    for (int i = 0; i < peers_; ++i) hosts.emplace_back(StrCat("peer", i), kFirstPeerHost + i);
    for (const auto& [name, host] : hosts) {
      RETURN_IF_ERROR(CreateDirectories(StrCat(dir, "/", name)));
      const std::string config = StrCat(dir, "/", name, "/peer.yaml");
      const std::string yaml = PeerYaml(dir, name, host);
      RETURN_IF_ERROR(WriteFileAtomically(config, yaml));
      RETURN_IF_ERROR(WriteFileAtomically(StrCat(logs_, "/", name, ".yaml"), yaml));
      std::vector<std::string> argv = {flags_.naiad, "peer",        "--config",
                                       config,       "--log-level", flags_.naiad_log_level};
      if (host == kSeedHost) argv.emplace_back("--seed");
      ASSIGN_OR_RETURN(Daemon d, StartDaemon(name, host, argv));
      peers_and_seed.push_back(std::move(d));
    }
    for (Daemon& d : peers_and_seed) {
      RETURN_IF_ERROR(WaitFor(d.host, Url(d.host, kHealthPort, "/server/ping"), &d, 30));
    }
    // Every peer and the seed announced: the scheduler knows N + 1 hosts.
    const std::string scheduler_metrics = Url(kOriginHost, kSchedulerMetricsPort, "/metrics");
    RETURN_IF_ERROR(
        WaitFor(kOriginHost, scheduler_metrics, &scheduler[0], 30, [&](const std::string& text) {
          absl::StatusOr<double> n = testing::PrometheusValue(text, "naiad_scheduler_hosts");
          return n.ok() && *n >= peers_ + 1;
        }));
    Prepare();
    std::vector<Download> downloads(peers_);
    ASSIGN_OR_RETURN(Window w, OpenWindow());
    for (int i = 0; i < peers_; ++i) {
      Download& d = downloads[i];
      d.host = kFirstPeerHost + i;
      d.name = StrCat("peer", i);
      d.log = StrCat(logs_, "/curl-", d.name, ".log");
      d.output = StrCat(dir, "/", d.name, ".blob");
      ASSIGN_OR_RETURN(d.process,
                       cluster_.Spawn(d.host,
                                      {"curl", "-sS", "--noproxy", "*", "-f", "--max-time",
                                       StrCat(static_cast<int>(Timeout())), "-o", d.output,
                                       Url(d.host, kProxyPort, BlobPath())},
                                      {.output_path = d.log}));
    }
    RETURN_IF_ERROR(WaitAll(downloads, w, "naiad"));
    RETURN_IF_ERROR(CloseWindow(w, run));
    // What each daemon says it did.
    Json metrics = Json::object();
    for (Daemon& d : peers_and_seed) {
      absl::StatusOr<std::string> text = HttpGet(d.host, Url(d.host, kHealthPort, "/metrics"));
      if (!text.ok()) {
        metrics[d.name] = {{"error", text.status().ToString()}};
        continue;
      }
      WriteFileAtomically(StrCat(logs_, "/", d.name, ".metrics"), *text).IgnoreError();
      Json m = {{"host", d.host}};
      for (const char* name :
           {"origin_bytes_total", "origin_requests_total", "origin_failures_total",
            "peer_bytes_total", "peer_pieces_total", "peer_failures_total", "back_to_source_total",
            "scheduler_syncs_total", "scheduler_errors_total", "origin_fallbacks_total",
            "seed_tasks_total", "upload_bytes_total", "upload_pieces_total",
            "upload_rejected_busy_total", "served_bytes_total"}) {
        absl::StatusOr<double> v = testing::PrometheusValue(*text, StrCat("naiad_peer_", name));
        if (v.ok()) m[name] = *v;
      }
      metrics[d.name] = m;
    }
    run["naiad_metrics"] = metrics;
    absl::StatusOr<std::string> text = HttpGet(kOriginHost, scheduler_metrics);
    if (text.ok()) {
      WriteFileAtomically(StrCat(logs_, "/scheduler.metrics"), *text).IgnoreError();
      Json m = Json::object();
      for (const char* name : {"origin_leases_granted_total", "origin_leases_expired_total",
                               "sync_calls_total", "seed_triggers_total", "hosts_expired_total"}) {
        absl::StatusOr<double> v =
            testing::PrometheusValue(*text, StrCat("naiad_scheduler_", name));
        if (v.ok()) m[name] = *v;
      }
      run["scheduler_metrics"] = m;
    }
    Finish(downloads, blob_.digest, run);
    // The peers first (they say goodbye to the scheduler), then the scheduler.
    Json exits = StopAll(peers_and_seed, absl::Seconds(10));
    exits.update(StopAll(scheduler, absl::Seconds(10)));
    run["daemon_exits"] = exits;
    for (const auto& [name, code] : exits.items()) {
      if (code != 0) Log(StrCat("  naiad ", name, " did not exit cleanly: ", code.dump()));
    }
    // Every process of the run has been reaped by now.
    run["own_cpu_s"] = ChildrenCpuSeconds() - w.children_cpu;
    Summary(run);
    RETURN_IF_ERROR(RemoveAll(dir));
    return run;
  }

  // ---- (c) BitTorrent: opentracker + aria2c seeding on the origin host, aria2c on each peer

  std::vector<std::string> Aria2Argv(const std::string& dir, const std::string& torrent) const {
    return {"aria2c",
            StrCat("--dir=", dir),
            StrCat("--log=", dir, "/aria2.log"),
            "--log-level=notice",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=true",
            "--disable-ipv6=true",
            StrCat("--listen-port=", kBtPort),
            "--bt-tracker-connect-timeout=5",
            "--bt-tracker-timeout=10",
            StrCat("--bt-max-peers=", flags_.bt_max_peers),
            "--file-allocation=none",
            "--seed-ratio=0",
            "--enable-rpc=true",
            StrCat("--rpc-listen-port=", kAria2RpcPort),
            "--rpc-listen-all=false",
            torrent};
  }

  // aria2c's JSON-RPC on 127.0.0.1 inside `host`: the active download's uploadLength.
  absl::StatusOr<uint64_t> Aria2Uploaded(int host) const {
    static constexpr char kTellActive[] =
        R"({"jsonrpc":"2.0","id":"b","method":"aria2.tellActive","params":[["uploadLength"]]})";
    ASSIGN_OR_RETURN(
        std::string out,
        cluster_.ExecOk(host,
                        {"curl", "-sS", "--noproxy", "*", "-f", "--max-time", "10", "-d",
                         kTellActive, StrCat("http://127.0.0.1:", kAria2RpcPort, "/jsonrpc")},
                        {.timeout = absl::Seconds(20)}));
    Json j = Json::parse(out, nullptr, false);
    if (j.is_discarded() || !j.contains("result") || j["result"].empty()) {
      return absl::InternalError(StrCat("aria2.tellActive on host ", host, ": ", out));
    }
    uint64_t v = 0;
    if (!absl::SimpleAtoi(j["result"][0]["uploadLength"].get<std::string>(), &v)) {
      return absl::InternalError(StrCat("bad uploadLength: ", out));
    }
    return v;
  }

  absl::StatusOr<Json> BitTorrent() {
    const std::string dir = work_ + "/bittorrent";
    const std::string tracker_dir = dir + "/tracker";
    RETURN_IF_ERROR(CreateDirectories(tracker_dir));
    const std::string announce = Url(kOriginHost, kTrackerPort, "/announce");
    const std::string info_hash = Sha1(InfoDict(blob_));
    const std::string torrent = dir + "/blob.torrent";
    RETURN_IF_ERROR(WriteFileAtomically(torrent, Torrent(blob_, announce)));
    // Debian's opentracker only tracks whitelisted info hashes; it reads the list after chrooting
    // to -d.
    const std::string whitelist = tracker_dir + "/whitelist";
    RETURN_IF_ERROR(WriteFileAtomically(whitelist, Hex(info_hash) + "\n"));
    const std::string hook = dir + "/on-complete.sh";
    RETURN_IF_ERROR(WriteFileAtomically(
        hook,
        "#!/bin/sh\n# aria2c --on-bt-download-complete: GID, number of files, first path\n"
        "date +%s.%N > \"$3.done.tmp\" && mv \"$3.done.tmp\" \"$3.done\"\n"));
    std::filesystem::permissions(hook, std::filesystem::perms::owner_all);
    Json run = NewRun("bittorrent");
    run["bt_piece_bytes"] = blob_.piece_length;

    std::vector<Daemon> tracker;
    std::vector<Daemon> seeders;  // the origin's aria2c, then the peers'
    {
      ASSIGN_OR_RETURN(
          Daemon d, StartDaemon("opentracker", kOriginHost,
                                {"opentracker", "-i", Ip(kOriginHost), "-p", StrCat(kTrackerPort),
                                 "-P", StrCat(kTrackerPort), "-d", tracker_dir, "-w", "/whitelist"},
                                tracker_dir));
      tracker.push_back(std::move(d));
    }
    const std::string scrape =
        StrCat(Url(kOriginHost, kTrackerPort, "/scrape"), "?info_hash=", PercentEncoded(info_hash));
    RETURN_IF_ERROR(WaitFor(kOriginHost, scrape, &tracker[0], 30));
    // The origin seeds from a hard link of the blob, after checking it (-V).
    const std::string origin_dir = dir + "/origin";
    RETURN_IF_ERROR(CreateDirectories(origin_dir));
    std::filesystem::create_hard_link(blob_.path, origin_dir + "/blob");
    {
      std::vector<std::string> argv = Aria2Argv(origin_dir, torrent);
      argv.insert(argv.end() - 1, {"--check-integrity=true", "--bt-seed-unverified=false"});
      ASSIGN_OR_RETURN(Daemon d, StartDaemon("aria2-origin", kOriginHost, argv));
      seeders.push_back(std::move(d));
    }
    // Ready when the tracker lists one complete copy: the origin announced itself as a seeder.
    RETURN_IF_ERROR(WaitFor(kOriginHost, scrape, &seeders[0], 120, [](const std::string& body) {
      size_t at = body.find("8:completei");
      return at != std::string::npos && body.compare(at + 11, 2, "0e") != 0;
    }));
    Prepare();
    std::vector<Download> downloads(peers_);
    ASSIGN_OR_RETURN(Window w, OpenWindow());
    for (int i = 0; i < peers_; ++i) {
      Download& d = downloads[i];
      d.host = kFirstPeerHost + i;
      d.name = StrCat("peer", i);
      const std::string peer_dir = StrCat(dir, "/", d.name);
      RETURN_IF_ERROR(CreateDirectories(peer_dir));
      d.log = peer_dir + "/aria2.log";
      d.output = peer_dir + "/blob";
      d.done_file = peer_dir + "/blob.done";
      std::vector<std::string> argv = Aria2Argv(peer_dir, torrent);
      // Keep seeding (for an hour at most) until the run ends.
      argv.insert(argv.end() - 1,
                  {"--seed-time=60", "--allow-overwrite=true", "--check-integrity=false",
                   StrCat("--on-bt-download-complete=", hook)});
      ASSIGN_OR_RETURN(d.process,
                       cluster_.Spawn(d.host, argv, {.output_path = peer_dir + "/aria2.out"}));
    }
    RETURN_IF_ERROR(WaitAll(downloads, w, "bittorrent"));
    RETURN_IF_ERROR(CloseWindow(w, run));
    Json uploaded = Json::object();
    {
      absl::StatusOr<uint64_t> v = Aria2Uploaded(kOriginHost);
      if (v.ok()) {
        run["origin_upload_bytes"] = *v;
      } else {
        Log(StrCat("  ", v.status().ToString()));
      }
    }
    for (Download& d : downloads) {
      absl::StatusOr<uint64_t> v = Aria2Uploaded(d.host);
      uploaded[d.name] = v.ok() ? Json(*v) : Json(v.status().ToString());
    }
    run["aria2_upload_bytes"] = uploaded;
    // Stop every aria2c: the peers' are in `downloads`, still seeding.
    for (Download& d : downloads) {
      if (d.process.running()) d.process.Signal(SIGTERM).IgnoreError();
    }
    Finish(downloads, blob_.digest, run);
    StopAll(seeders, absl::Seconds(10));
    StopAll(tracker, absl::Seconds(5));
    // Keep the aria2c logs.
    for (const std::string& name : [&] {
           std::vector<std::string> names = {"origin"};
           for (int i = 0; i < peers_; ++i) names.push_back(StrCat("peer", i));
           return names;
         }()) {
      std::error_code ec;
      std::filesystem::copy_file(StrCat(dir, "/", name, "/aria2.log"),
                                 StrCat(logs_, "/", name, ".aria2.log"),
                                 std::filesystem::copy_options::overwrite_existing, ec);
    }
    // Every process of the run has been reaped by now.
    run["own_cpu_s"] = ChildrenCpuSeconds() - w.children_cpu;
    Summary(run);
    RETURN_IF_ERROR(RemoveAll(dir));
    return run;
  }

  const Flags& flags_;
  NetnsCluster& cluster_;
  RegistryFixture& registry_;
  const Blob& blob_;
  int peers_;
  std::string work_;
  std::string logs_;
};

// ---------------------------------------------------------------------------------------------

absl::Status Run(const Flags& flags) {
  if (::geteuid() != 0) return absl::PermissionDeniedError("run as root (namespaces, tc)");
  ASSIGN_OR_RETURN(std::vector<int> sizes, ParseInts(flags.sizes_mib, "--sizes-mib"));
  ASSIGN_OR_RETURN(std::vector<int> peer_counts, ParseInts(flags.peers, "--peers"));
  std::vector<std::string> contenders = absl::StrSplit(flags.contenders, ',', absl::SkipEmpty());
  for (const std::string& c : contenders) {
    if (c != "direct" && c != "naiad" && c != "bittorrent") {
      return absl::InvalidArgumentError(StrCat("unknown contender \"", c, "\""));
    }
  }
  ASSIGN_OR_RETURN(TempDir work_dir, testing::CreateOwnedTempDir("naiad-bench-p2p-"));
  const std::string& work = work_dir.path();
  Log(StrCat("scratch: ", work));
  Json out = {{"mbit", flags.mbit},
              {"sizes_mib", sizes},
              {"peers", peer_counts},
              {"contenders", contenders},
              {"runs_done", Json::array()}};
  auto write = [&]() { return WriteFileAtomically(flags.json_path, out.dump(1)); };
  RETURN_IF_ERROR(write());

  for (int mib : sizes) {
    const uint64_t size = static_cast<uint64_t>(mib) << 20;
    Log(StrCat("making a ", mib, " MiB blob (pseudo-random bytes)"));
    ASSIGN_OR_RETURN(Blob blob, MakeBlob(StrCat(work, "/blob-", mib), size,
                                         static_cast<uint32_t>(flags.bt_piece_kib) * 1024));
    for (int n : peer_counts) {
      RETURN_IF_ERROR(CheckInterrupted());
      Log(StrCat(mib, " MiB, N=", n, ": cluster of ", n + 2, " hosts, each sending at most ",
                 flags.mbit, " Mbit/s"));
      ASSIGN_OR_RETURN(std::unique_ptr<NetnsCluster> cluster, NetnsCluster::Create(n + 2));
      for (int h = 0; h < n + 2; ++h) RETURN_IF_ERROR(cluster->SetEgressLimit(h, flags.mbit));
      ASSIGN_OR_RETURN(std::unique_ptr<RegistryFixture> registry,
                       RegistryFixture::Start({.address = cluster->Address(kOriginHost),
                                               .port = kRegistryPort,
                                               .netns_path = cluster->NetnsPath(kOriginHost)}));
      ASSIGN_OR_RETURN(Digest pushed, registry->PushBlobFile(kRepo, blob.path));
      if (pushed != blob.digest) return absl::InternalError("the registry computed another digest");
      for (const std::string& contender : contenders) {
        const std::string logs = StrCat(flags.logs_dir, "/", mib, "m-n", n, "/", contender);
        RETURN_IF_ERROR(RemoveAll(logs));  // an earlier run's logs into the same --out
        RETURN_IF_ERROR(CreateDirectories(logs));
        const std::string run_dir = StrCat(work, "/run");
        RETURN_IF_ERROR(CreateDirectories(run_dir));
        UniqueFd lock;
        const std::vector<std::string> locked =
            absl::StrSplit(flags.lock_contenders, ',', absl::SkipEmpty());
        if (!flags.lock_path.empty() &&
            std::find(locked.begin(), locked.end(), contender) != locked.end()) {
          ASSIGN_OR_RETURN(lock, TakeLock(flags.lock_path));
        }
        Log(StrCat(mib, " MiB, N=", n, ": ", contender, lock.valid() ? " (build lock held)" : ""));
        Bench bench(flags, *cluster, *registry, blob, n, run_dir, logs);
        absl::StatusOr<Json> run = bench.Run(contender);
        RETURN_IF_ERROR(CheckInterrupted());
        if (!run.ok()) {
          // A contender that cannot be run is recorded, and the others still run.
          Log(StrCat("  ", contender, " failed: ", run.status().ToString()));
          run = Json{{"contender", contender},
                     {"peers", n},
                     {"size_bytes", size},
                     {"mbit", flags.mbit},
                     {"error", run.status().ToString()}};
        }
        (*run)["build_lock_held"] = lock.valid();
        lock.Reset();  // others may build between contenders
        (*run)["size_mib"] = mib;
        (*run)["logs"] = logs;
        out["runs_done"].push_back(*run);
        RETURN_IF_ERROR(write());
        RETURN_IF_ERROR(testing::RemoveTreeSafely(run_dir));
      }
      registry.reset();
      RETURN_IF_ERROR(cluster->Destroy());
    }
    RETURN_IF_ERROR(RemoveAll(blob.path));
  }
  return write();
}

}  // namespace
}  // namespace naiad::bench

int main(int argc, char** argv) {
  CLI::App app("Peer-to-peer distribution benchmark driver (bench/p2p/run calls it)",
               "naiad_bench_p2p");
  naiad::bench::Flags flags;
  app.add_option("--naiad", flags.naiad, "Path of the naiad binary")->required();
  app.add_option("--sizes-mib", flags.sizes_mib, "Blob sizes in MiB, comma-separated");
  app.add_option("--peers", flags.peers, "Peer counts N, comma-separated");
  app.add_option("--mbit", flags.mbit, "Egress limit of every host, Mbit/s");
  app.add_option("--contenders", flags.contenders, "direct,naiad,bittorrent (in this order)");
  app.add_option("--json", flags.json_path, "Write every run here")->required();
  app.add_option("--logs-dir", flags.logs_dir, "Daemon logs and metrics go here")->required();
  app.add_option("--max-wait", flags.max_wait, "Seconds to wait for other load before a run");
  app.add_option("--bt-piece-kib", flags.bt_piece_kib, "BitTorrent piece length, KiB")
      ->check(CLI::Range(16, 16384));
  app.add_option("--bt-max-peers", flags.bt_max_peers, "aria2c --bt-max-peers");
  app.add_option("--naiad-log-level", flags.naiad_log_level, "--log-level of the naiad daemons");
  app.add_option("--naiad-concurrent-pieces", flags.naiad_concurrent_pieces,
                 "download.concurrentPieceCount of every peer (0: the default)");
  app.add_option("--lock", flags.lock_path,
                 "Hold this flock (the build lock) while the --lock-contenders run");
  app.add_option("--lock-contenders", flags.lock_contenders,
                 "Contenders that run under --lock (comma-separated)");
  CLI11_PARSE(app, argc, argv);
  flags.naiad = std::filesystem::absolute(flags.naiad).string();
  flags.logs_dir = std::filesystem::absolute(flags.logs_dir).string();
  naiad::bench::SetLogTag("bench/p2p");
  naiad::bench::InstallInterruptHandlers();
  absl::Status status = naiad::bench::Run(flags);
  if (!status.ok()) {
    std::fprintf(stderr, "naiad_bench_p2p: %s\n",
                 std::string(naiad::ToStd(status.ToString())).c_str());
    return 1;
  }
  return 0;
}
