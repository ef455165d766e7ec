// File: test/testing/p2p_cluster.h
//
// A swarm of real `naiad` daemons on a NetnsCluster, for the peer-to-peer tests: host 0 runs the
// registry (RegistryFixture), host 1 `naiad scheduler`, host 2 the seed peer (`naiad peer --seed`),
// and the following hosts one `naiad peer` each, configured with the dfdaemon-style YAML users
// write. Clients fetch through a peer's proxy with curl running inside the peer's host.
//
//   ASSERT_OK_AND_ASSIGN(auto swarm, P2pCluster::Start({.peers = 8}));
//   ASSERT_OK_AND_ASSIGN(Digest digest, swarm->registry().PushBlobFile("test/p2p", path));
//   ASSERT_OK(swarm->net().SetEgressLimit(P2pCluster::kRegistryHost, 100));
//   std::vector<Fetch> fetches;
//   for (int i = 0; i < swarm->peer_count(); ++i) {
//     ASSERT_OK_AND_ASSIGN(fetches.emplace_back(),
//                          swarm->StartFetch(swarm->peer_host(i),
//                                            swarm->BlobUrl(swarm->peer_host(i), repo, digest)));
//   }
//   for (Fetch& f : fetches) ASSERT_OK_AND_ASSIGN(FetchResult r, f.Wait());
//   ASSERT_OK_AND_ASSIGN(double up, swarm->PeerMetric(swarm->peer_host(0),
//                                                     "naiad_peer_upload_bytes_total"));
//   ASSERT_OK(swarm->Kill(swarm->peer_host(0)));   // SIGKILL
//   EXPECT_OK(swarm->Stop());                       // SIGTERM; every daemon must exit cleanly
//
// Ports are the daemons' defaults on every host (proxy 65001, upload 65002, health 40901,
// scheduler 8002 with metrics on 8000); each host has its own address. Data directories, the
// peers' local API sockets (download.unixSocket: never the machine's /run/naiad) and every
// daemon's output live in the cluster's temporary directory; Logs() returns the logs' tails for
// failure messages, CopyLogsTo() keeps them whole.
//
// Thread-compatible, like NetnsCluster: use it from the test's main thread (daemons and curl
// processes are tied to the thread that starts them, see base/subprocess.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/subprocess.h"
#include "test/testing/netns_cluster.h"
#include "test/testing/registry_fixture.h"

namespace naiad::testing {

enum class SchedulerMode {
  kRunning,      // `naiad scheduler` runs on host 1 and the peers use it
  kUnreachable,  // the peers are configured with host 1:8002, where nothing listens
  kNone,         // the peers have no scheduler section: no swarm, every piece from the origin
};

struct P2pClusterOptions {
  int peers = 4;
  bool seed_peer = true;
  SchedulerMode scheduler = SchedulerMode::kRunning;
  int concurrent_piece_count = 4;  // download.concurrentPieceCount of every peer
  bool prefetch = false;           // download.prefetch of every peer and the seed
  // Configure the peers with the seed's dfdaemon section (docs/design/seed-path.md): proxy and
  // health on 0.0.0.0, so that a node's own `naiad fs` reaches them at 127.0.0.1 as the seed's
  // nydusd config says; registryMirror.dynamic (the X-Dragonfly-Registry header names the
  // registry), proxies [blobs/sha256.*], defaultFilter, security.insecure. Otherwise the
  // proxy and health ports listen on the host's address only.
  bool seed_style_config = false;
  // Appended to every peer's YAML (top-level keys the cluster does not set, e.g. "gcInterval:
  // 1s\n").
  std::string extra_peer_yaml;
  std::string naiad;  // the binary; empty: the one in this build tree
  // The daemons' --log-level; empty: $NAIAD_P2P_LOG_LEVEL, or "info".
  std::string log_level;
  absl::Duration ready_timeout = absl::Seconds(60);
};

// What one curl through a proxy got.
struct FetchResult {
  int host = 0;
  std::string url;
  std::string range;    // the Range header sent, if any
  int curl_exit = -1;   // 0: the transfer completed (curl's exit code otherwise)
  int http_status = 0;  // of the last response; 0 if none
  std::string headers;  // the last response's header block
  std::string body_path;
  std::string curl_log;  // curl's stderr (with -sS: its error message)

  // The value of a response header (case-insensitive name), if present.
  std::optional<std::string> Header(std::string_view name) const;
  // "host 3 GET <url> [Range ...]: curl exit 0, HTTP 200; <curl log>"
  std::string Describe() const;
};

// A curl process started by P2pCluster::StartFetch().
class Fetch {
 public:
  Fetch() = default;
  // Waits for curl to finish. DeadlineExceeded (curl killed) after `timeout`.
  absl::StatusOr<FetchResult> Wait(absl::Duration timeout = absl::Minutes(15));
  bool running() { return process_.running(); }

 private:
  friend class P2pCluster;
  Subprocess process_;
  FetchResult result_;
  std::string headers_path_;
  std::string log_path_;
};

struct FetchOptions {
  std::string range;                           // a Range header value ("bytes=0-1023"); empty: none
  absl::Duration timeout = absl::Minutes(10);  // curl --max-time
};

class P2pCluster {
 public:
  static constexpr int kRegistryHost = 0;  // the registry (the origin), alone behind its link
  // The scheduler, on a host of its own: in a cluster it sits on the LAN with the peers, not
  // behind the origin's link (where its answers would queue behind blob bytes).
  static constexpr int kSchedulerHost = 1;
  static constexpr uint16_t kProxyPort = 65001;
  static constexpr uint16_t kUploadPort = 65002;
  static constexpr uint16_t kHealthPort = 40901;
  static constexpr uint16_t kSchedulerPort = 8002;
  static constexpr uint16_t kSchedulerMetricsPort = 8000;

  // Creates the namespaces, starts the registry, the scheduler, the seed and the peers, and waits
  // until each answers its health check.
  static absl::StatusOr<std::unique_ptr<P2pCluster>> Start(P2pClusterOptions options);
  ~P2pCluster();
  P2pCluster(const P2pCluster&) = delete;
  P2pCluster& operator=(const P2pCluster&) = delete;

  NetnsCluster& net() { return *net_; }
  RegistryFixture& registry() { return *registry_; }
  const std::string& dir() const { return dir_.path(); }
  const P2pClusterOptions& options() const { return options_; }

  int peer_count() const { return options_.peers; }
  // The host peer i (0-based) runs on.
  int peer_host(int i) const { return first_peer_host() + i; }
  // The seed peer's host; -1 without one.
  int seed_host() const { return options_.seed_peer ? 2 : -1; }
  std::string Address(int host) const { return net_->Address(host); }

  // "http://<host's address>:65001/v2/<repo>/blobs/<digest>": a blob through that host's proxy.
  std::string BlobUrl(int host, std::string_view repo, const Digest& digest) const;
  // "http://<host's address>:<port>"
  std::string HostUrl(int host, uint16_t port) const;

  // Starts `curl` inside `host` fetching `url` into a file in dir().
  absl::StatusOr<Fetch> StartFetch(int host, const std::string& url,
                                   const FetchOptions& options = {});

  // One GET with curl inside `host`: the body (an error for a transport failure or a status other
  // than 200).
  absl::StatusOr<std::string> HttpGet(int host, const std::string& url) const;
  // A counter or gauge of the peer (or seed) on `host`, from its GET /metrics (summed over label
  // sets); NotFound if it has no such metric.
  absl::StatusOr<double> PeerMetric(int host, std::string_view name) const;
  absl::StatusOr<double> SchedulerMetric(std::string_view name) const;
  // Whether the peer on `host` answers GET /server/ping with 200.
  bool PeerHealthy(int host) const;

  // SIGKILL to the daemon on `host` (a peer or the seed), reaped before returning.
  absl::Status Kill(int host);
  absl::Status KillScheduler();
  // Whether the daemon on `host` (a peer or the seed) is still running.
  bool Running(int host);
  // Starts the peer (or seed) on `host` again after Kill(), with the same config and data
  // directory (its piece store is recovered), and waits until it answers its health check.
  absl::Status Restart(int host);

  // The tail of every daemon's output and of the registry's log.
  std::string Logs(size_t bytes_per_daemon = 6000) const;
  // Copies every daemon's whole log and the registry's into `dir` (created), for a look after the
  // test: the cluster's own directory is removed with it.
  absl::Status CopyLogsTo(const std::string& dir) const;

  // SIGTERM to every daemon still running (at once), then waits for each. An error lists the
  // daemons that exited on their own before (crashed) or did not exit 0 on SIGTERM; those
  // killed with Kill() are not errors. Idempotent; the destructor calls it.
  absl::Status Stop();

 private:
  struct Daemon {
    std::string name;  // "scheduler", "seed", "peer3"
    int host = 0;
    bool seed = false;
    std::string log_path;
    Subprocess process;
    bool killed = false;   // by Kill(): its death is expected
    bool stopped = false;  // by Stop()
  };

  explicit P2pCluster(P2pClusterOptions options) : options_(std::move(options)) {}

  int first_peer_host() const { return options_.seed_peer ? 3 : 2; }
  absl::Status StartScheduler();
  absl::Status StartPeer(const std::string& name, int host, bool seed);
  absl::Status SpawnPeer(Daemon& daemon);
  // The peer's YAML (dfdaemon's shape).
  std::string PeerConfig(const std::string& name, int host) const;
  absl::Status WaitUntilReady(Daemon& daemon, const std::string& url);
  Daemon* DaemonOn(int host, bool scheduler);
  std::string Tail(const Daemon& daemon, size_t bytes) const;

  P2pClusterOptions options_;
  std::string naiad_;
  TempDir dir_;
  // Destroyed last: the destructor stops the daemons and the registry first.
  std::unique_ptr<NetnsCluster> net_;
  std::unique_ptr<RegistryFixture> registry_;
  std::vector<Daemon> daemons_;
  int next_fetch_ = 0;
};

// The value of metric `name` in Prometheus text exposition format (the sum over its label sets);
// NotFound if no sample has that name.
absl::StatusOr<double> PrometheusValue(std::string_view text, std::string_view name);

}  // namespace naiad::testing
