// File: peer/peer.h
//
// `naiad peer` assembled: piece store + downloads + the proxy server (65001) + the health and
// metrics server (40901: GET /server/ping, GET /metrics in Prometheus text format) + the upload
// service other peers fetch pieces from (65002) + periodic GC; with schedulers configured
// (scheduler.netAddrs), the host is announced to them and kept alive, and downloads go through
// the swarm. A seed peer (seedPeer.enable, `--seed`) also fetches tasks when a scheduler asks.
//
//   ASSIGN_OR_RETURN(auto peer, Peer::Start(config));
//   ... serve until Stop() ...
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "net/http_server.h"
#include "peer/config.h"
#include "peer/downloads.h"
#include "peer/piece_client.h"
#include "peer/proxy.h"
#include "peer/scheduler_client.h"
#include "peer/upload.h"
#include "piece/piece_store.h"

namespace naiad::peer {

class Peer {
 public:
  static absl::StatusOr<std::unique_ptr<Peer>> Start(const PeerConfig& config);
  ~Peer();

  void Stop();
  // Blocks until Stop().
  void Wait();

  uint16_t proxy_port() const { return proxy_server_->port(); }
  uint16_t health_port() const { return health_server_->port(); }
  uint16_t upload_port() const { return upload_server_->port(); }
  // "<ip>-<hostname>-<upload port>" ("-seed" appended for a seed peer).
  const std::string& host_id() const { return host_.id(); }
  // The Prometheus text of GET /metrics.
  std::string MetricsText() const;

 private:
  Peer() = default;
  void CollectGarbageLoop();
  absl::Status StartSwarm();
  // Announces the host to the schedulers; returns the keepalive interval to use next.
  absl::Duration Announce();
  void KeepAliveLoop();

  PeerConfig config_;
  PeerMetrics metrics_;
  std::unique_ptr<piece::PieceStore> store_;
  std::unique_ptr<SchedulerClient> scheduler_;  // null: no swarm
  std::unique_ptr<PieceClient> piece_client_;
  std::unique_ptr<UploadService> upload_;
  std::unique_ptr<Downloads> downloads_;
  schedv1::Host host_;
  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<net::HttpServer> proxy_server_;
  std::unique_ptr<net::HttpServer> health_server_;
  std::unique_ptr<net::HttpServer> upload_server_;
  std::unique_ptr<net::HttpServer> local_server_;  // the local API (unix socket), if served
  std::thread gc_thread_;
  std::thread keepalive_thread_;
  absl::Notification stop_;
};

}  // namespace naiad::peer
