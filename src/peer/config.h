// File: peer/config.h
//
// The configuration of `naiad peer`, in the shape of Dragonfly's dfdaemon.yaml (the seed's
// helm values under `dfdaemon.config` are exactly this), so existing files load unchanged:
//
//   proxy:
//     defaultFilter: 'Expires&Signature&ns'
//     tcpListen: {listen: 0.0.0.0, port: 65001}
//     registryMirror: {dynamic: true, url: https://index.docker.io}
//     proxies:
//     - regx: blobs/sha256.*
//   download: {prefetch: true}
//
// Unknown keys are warnings (dfdaemon has many Naiad does not need); invalid values are errors
// naming the key path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/config.h"

namespace naiad::peer {

struct TcpListenConfig {
  std::string listen = "0.0.0.0";
  int port = 0;

  template <typename V>
  void Fields(V& v) {
    v("listen", listen);
    v("port", port, Range(0, 65535));
  }
};

struct RegistryMirrorConfig {
  std::string url = "https://index.docker.io";
  bool dynamic = false;  // X-Dragonfly-Registry chooses the registry per request
  bool insecure = false;
  std::vector<std::string> certs;
  bool direct = false;  // never through the swarm

  template <typename V>
  void Fields(V& v) {
    v("url", url);
    v("dynamic", dynamic);
    v("insecure", insecure);
    v("certs", certs);
    v("direct", direct);
  }
};

struct ProxyRule {
  std::string regx;
  bool use_https = false;
  bool direct = false;
  std::string redirect;

  template <typename V>
  void Fields(V& v) {
    v("regx", regx, Required());
    v("useHTTPS", use_https);
    v("direct", direct);
    v("redirect", redirect);
  }
};

struct ProxySecurity {
  bool insecure = false;
  std::vector<std::string> ca_cert;

  template <typename V>
  void Fields(V& v) {
    v("insecure", insecure);
    v("cacert", ca_cert);
  }
};

struct WhiteListEntry {
  std::string host;
  std::string regx;
  std::vector<int> ports;

  template <typename V>
  void Fields(V& v) {
    v("host", host);
    v("regx", regx);
    v("ports", ports);
  }
};

struct ProxyConfig {
  std::string default_filter;
  ProxySecurity security;
  TcpListenConfig tcp_listen{.listen = "0.0.0.0", .port = 65001};
  RegistryMirrorConfig registry_mirror;
  std::vector<ProxyRule> proxies;
  std::vector<WhiteListEntry> white_list;
  int max_concurrency = 0;  // 0: unlimited; beyond it, 429

  template <typename V>
  void Fields(V& v) {
    v("defaultFilter", default_filter);
    v("security", security);
    v("tcpListen", tcp_listen);
    v("registryMirror", registry_mirror);
    v("proxies", proxies);
    v("whiteList", white_list);
    v("maxConcurrency", max_concurrency, Range(0, 1000000));
  }
};

struct HealthConfig {
  std::string path = "/server/ping";
  TcpListenConfig tcp_listen{.listen = "0.0.0.0", .port = 40901};

  template <typename V>
  void Fields(V& v) {
    v("path", path);
    v("tcpListen", tcp_listen);
  }
};

struct DownloadConfig {
  bool prefetch = false;      // a ranged request also fetches the whole task in the background
  int concurrent_pieces = 4;  // Naiad: ranged origin requests in flight per task
  absl::Duration piece_timeout = absl::Seconds(30);
  // Naiad: the local API socket (`naiad get`); empty disables it.
  std::string unix_socket = "/run/naiad/peer.sock";

  template <typename V>
  void Fields(V& v) {
    v("prefetch", prefetch);
    v("concurrentPieceCount", concurrent_pieces, Range(1, 64));
    v("pieceDownloadTimeout", piece_timeout);
    v("unixSocket", unix_socket);
  }
};

struct StorageConfig {
  absl::Duration task_expire_time = absl::Hours(6);
  uint64_t disk_gc_threshold = 0;  // bytes of task data kept; 0 = unlimited

  template <typename V>
  void Fields(V& v) {
    v("taskExpireTime", task_expire_time);
    v("diskGCThreshold", disk_gc_threshold);
  }
};

// Go dfdaemon's `upload` section: the service other peers fetch pieces from.
struct UploadConfig {
  TcpListenConfig tcp_listen{.listen = "0.0.0.0", .port = 65002};
  // Bytes per second for all uploads together: "100Mi", "50MB", "1048576"; empty or 0 unlimited.
  std::string rate_limit;
  int concurrent_limit = 200;          // Naiad: uploads served at once (Dragonfly's load limit)
  int per_peer_concurrent_limit = 16;  // Naiad: uploads at once to one requesting peer

  template <typename V>
  void Fields(V& v) {
    v("tcpListen", tcp_listen);
    v("rateLimit", rate_limit);
    v("concurrentLimit", concurrent_limit, Range(1, 100000));
    v("perPeerConcurrentLimit", per_peer_concurrent_limit, Range(1, 100000));
  }
};

struct NetAddr {
  std::string type = "tcp";
  std::string addr;  // "host:port"

  template <typename V>
  void Fields(V& v) {
    v("type", type);
    v("addr", addr, Required());
  }
};

// Go dfdaemon's `scheduler` section (no manager: the schedulers are listed).
struct SchedulerClientConfig {
  std::vector<NetAddr> net_addrs;  // empty: no swarm, every task comes from the origin
  // A scheduler call that takes longer fails over to the origin for that task.
  absl::Duration schedule_timeout = absl::Seconds(2);
  bool disable_auto_back_source = false;
  // Naiad: AnnounceHost period until the scheduler says otherwise.
  absl::Duration keepalive_interval = absl::Seconds(5);

  template <typename V>
  void Fields(V& v) {
    v("netAddrs", net_addrs);
    v("scheduleTimeout", schedule_timeout);
    v("disableAutoBackSource", disable_auto_back_source);
    v("keepAliveInterval", keepalive_interval);
  }
};

// Go dfdaemon's `host` section: how this node presents itself to the scheduler.
struct HostConfig {
  std::string hostname;      // empty: gethostname()
  std::string advertise_ip;  // empty: the address of the interface that reaches the scheduler
  std::string idc;
  std::string location;

  template <typename V>
  void Fields(V& v) {
    v("hostname", hostname);
    v("advertiseIP", advertise_ip);
    v("idc", idc);
    v("location", location);
  }
};

struct SeedPeerConfig {
  bool enable = false;  // also `naiad peer --seed`

  template <typename V>
  void Fields(V& v) {
    v("enable", enable);
  }
};

struct PeerConfig {
  std::string data_dir = "/var/lib/naiad/peer";
  absl::Duration gc_interval = absl::Minutes(1);
  bool verbose = false;
  ProxyConfig proxy;
  HealthConfig health;
  DownloadConfig download;
  StorageConfig storage;
  UploadConfig upload;
  SchedulerClientConfig scheduler;
  HostConfig host;
  SeedPeerConfig seed_peer;

  template <typename V>
  void Fields(V& v) {
    v("dataDir", data_dir);
    v("gcInterval", gc_interval);
    v("verbose", verbose);
    v("proxy", proxy);
    v("health", health);
    v("download", download);
    v("storage", storage);
    v("upload", upload);
    v("scheduler", scheduler);
    v("host", host);
    v("seedPeer", seed_peer);
  }
  absl::Status Validate() const;

  // defaultFilter split on '&'.
  std::vector<std::string> FilteredParams() const;
};

// Loads a dfdaemon-style YAML (or JSON) file; warnings (unknown keys) go to `warnings`.
absl::StatusOr<PeerConfig> LoadPeerConfig(const std::string& path,
                                          std::vector<std::string>* warnings = nullptr);
absl::StatusOr<PeerConfig> ParsePeerConfig(std::string_view yaml,
                                           std::vector<std::string>* warnings = nullptr);

}  // namespace naiad::peer
