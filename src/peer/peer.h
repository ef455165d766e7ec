// File: peer/peer.h
//
// `naiad peer` assembled: piece store + downloads + the proxy server (65001) + the health and
// metrics server (40901: GET /server/ping, GET /metrics in Prometheus text format) + periodic GC.
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
#include "peer/proxy.h"
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
  // The Prometheus text of GET /metrics.
  std::string MetricsText() const;

 private:
  Peer() = default;
  void CollectGarbageLoop();

  PeerConfig config_;
  PeerMetrics metrics_;
  std::unique_ptr<piece::PieceStore> store_;
  std::unique_ptr<Downloads> downloads_;
  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<net::HttpServer> proxy_server_;
  std::unique_ptr<net::HttpServer> health_server_;
  std::thread gc_thread_;
  absl::Notification stop_;
};

}  // namespace naiad::peer
