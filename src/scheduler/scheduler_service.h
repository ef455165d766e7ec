// File: scheduler/scheduler_service.h
//
// `naiad scheduler` assembled: the gRPC service naiad.scheduler.v1.Scheduler
// (api/naiad/scheduler/v1/scheduler.proto) over a SchedulerState, the seed dispatcher, a
// metrics/health HTTP server (GET /metrics in Prometheus text, GET /healthy) and a thread that
// sweeps expired hosts and leases every `sweep_interval`.
//
//   ASSIGN_OR_RETURN(auto server, SchedulerServer::Start({.port = 0, .metrics_port = 0}));
//   auto channel = grpc::CreateChannel(StrCat("127.0.0.1:", server->port()), ...);
//   ...
//   server->Shutdown();
//
// gRPC stays inside scheduler_service.cc: this header does not include it, and absl::Status
// becomes grpc::Status in one function there (the codes are the same; the message is kept).
//
// Thread-safe. The destructor calls Shutdown().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "net/http_server.h"
#include "scheduler/scheduler_state.h"
#include "scheduler/seed_trigger.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace naiad::scheduler {

class SchedulerService;

struct SchedulerServerOptions {
  std::string address = "0.0.0.0";              // for both the gRPC and the metrics server
  uint16_t port = 8002;                         // 0 picks a free port: see SchedulerServer::port()
  std::optional<uint16_t> metrics_port = 8000;  // nullopt: no metrics server; 0 picks
  // Returned to hosts in AnnounceHostResponse: how often they announce themselves.
  absl::Duration keepalive_interval = absl::Seconds(5);
  absl::Duration sweep_interval = absl::Seconds(1);
  SchedulerOptions state;
  // Not owned; must outlive the server. nullptr: an HttpSeedTrigger owned by the server.
  SeedTrigger* seed_trigger = nullptr;
};

class SchedulerServer {
 public:
  // Unavailable when an address cannot be listened on.
  static absl::StatusOr<std::unique_ptr<SchedulerServer>> Start(SchedulerServerOptions options);
  ~SchedulerServer();
  SchedulerServer(const SchedulerServer&) = delete;
  SchedulerServer& operator=(const SchedulerServer&) = delete;

  // Stops accepting calls, lets calls in flight finish (up to 2 s), stops the metrics server,
  // the sweeper and the seed dispatcher. Idempotent.
  void Shutdown();

  uint16_t port() const { return port_; }
  uint16_t metrics_port() const;  // 0 without a metrics server
  SchedulerState& state() { return *state_; }
  // The Prometheus text of GET /metrics.
  std::string MetricsText() const;
  // Blocks until every seed trigger decided so far has been sent (for tests).
  void WaitForSeedTriggers();

 private:
  SchedulerServer() = default;
  absl::Status StartGrpc();
  absl::Status StartMetrics();
  void SweepLoop();

  SchedulerServerOptions options_;
  std::unique_ptr<SchedulerState> state_;
  std::unique_ptr<SeedTrigger> own_trigger_;
  std::unique_ptr<SeedDispatcher> dispatcher_;
  std::unique_ptr<SchedulerService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<net::HttpServer> metrics_server_;
  uint16_t port_ = 0;
  std::thread sweeper_;
  absl::Notification stop_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace naiad::scheduler
