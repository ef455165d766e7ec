#include "scheduler/scheduler_service.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "naiad/scheduler/v1/scheduler.grpc.pb.h"

namespace naiad::scheduler {

namespace {

// The one place an absl::Status becomes a grpc::Status: the canonical codes are the same.
grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(ToStd(status.message())));
}

// "address:port", with an IPv6 address in brackets.
std::string HostPort(const std::string& address, uint16_t port) {
  if (address.find(':') != std::string::npos) return StrCat("[", address, "]:", port);
  return StrCat(address, ":", port);
}

uint32_t Milliseconds(absl::Duration d) {
  const int64_t ms = absl::ToInt64Milliseconds(d);
  return static_cast<uint32_t>(std::clamp<int64_t>(ms, 0, std::numeric_limits<uint32_t>::max()));
}

absl::StatusOr<HostType> FromProto(v1::HostType type, std::string_view field) {
  switch (type) {
    case v1::HOST_TYPE_NORMAL:
      return HostType::kNormal;
    case v1::HOST_TYPE_SEED:
      return HostType::kSeed;
    default:
      return absl::InvalidArgumentError(
          StrCat(field, " ", static_cast<int>(type), " is not a HostType"));
  }
}

v1::HostType ToProto(HostType type) {
  return type == HostType::kSeed ? v1::HOST_TYPE_SEED : v1::HOST_TYPE_NORMAL;
}

absl::StatusOr<Host> FromProto(const v1::Host& in) {
  Host host{.id = in.id(),
            .hostname = in.hostname(),
            .ip = in.ip(),
            .upload_port = in.upload_port(),
            .proxy_port = in.proxy_port(),
            .upload_active = in.upload_active(),
            .upload_limit = in.upload_limit(),
            .upload_rate_limit = in.upload_rate_limit(),
            .idc = in.idc(),
            .location = in.location()};
  ASSIGN_OR_RETURN(host.type, FromProto(in.type(), "host.type"));
  return host;
}

TaskInfo FromProto(const v1::TaskInfo& in) {
  TaskInfo task{.task_id = in.task_id(),
                .url = in.url(),
                .content_length = in.content_length(),
                .piece_size = in.piece_size(),
                .digest = in.digest()};
  task.origin_headers.insert(in.origin_headers().begin(), in.origin_headers().end());
  return task;
}

void ToProto(const TaskInfo& task, v1::TaskInfo* out) {
  out->set_task_id(task.task_id);
  out->set_url(task.url);
  out->set_content_length(task.content_length);
  out->set_piece_size(task.piece_size);
  out->set_digest(task.digest);
  out->mutable_origin_headers()->insert(task.origin_headers.begin(), task.origin_headers.end());
}

absl::StatusOr<PieceReport> FromProto(const v1::PieceReport& in, int index) {
  PieceReport report{.number = in.number(),
                     .crc32c = in.crc32c(),
                     .parent_id = in.parent_id(),
                     .cost_us = in.cost_us()};
  switch (in.source()) {
    case v1::PIECE_SOURCE_ORIGIN:
      report.source = PieceSource::kOrigin;
      break;
    case v1::PIECE_SOURCE_PEER:
      report.source = PieceSource::kPeer;
      break;
    default:
      return absl::InvalidArgumentError(StrCat(
          "pieces[", index, "].source ", static_cast<int>(in.source()), " is not a PieceSource"));
  }
  return report;
}

absl::StatusOr<SyncRequest> FromProto(const v1::SyncTaskRequest& in) {
  if (!in.has_task()) return absl::InvalidArgumentError("task is missing");
  SyncRequest request{.host_id = in.host_id(),
                      .task = FromProto(in.task()),
                      .complete = in.complete(),
                      .want_origin = {in.want_origin().begin(), in.want_origin().end()},
                      .failed_parents = {in.failed_parents().begin(), in.failed_parents().end()},
                      .released = {in.released().begin(), in.released().end()},
                      .max_origin_grants = in.max_origin_grants(),
                      .fetching = {in.fetching().begin(), in.fetching().end()},
                      .whole = in.whole()};
  request.pieces.reserve(in.pieces_size());
  for (int i = 0; i < in.pieces_size(); ++i) {
    ASSIGN_OR_RETURN(PieceReport report, FromProto(in.pieces(i), i));
    request.pieces.push_back(std::move(report));
  }
  return request;
}

void ToProto(const Parent& parent, v1::Parent* out) {
  out->set_host_id(parent.host_id);
  out->set_ip(parent.ip);
  out->set_upload_port(parent.upload_port);
  out->set_type(ToProto(parent.type));
  out->set_fetching(parent.fetching);
  out->set_bitmap(parent.bitmap);
  out->set_complete(parent.complete);
  out->set_score(parent.score);
}

void ToProto(const SyncResult& result, v1::SyncTaskResponse* out) {
  for (const Parent& parent : result.parents) ToProto(parent, out->add_parents());
  out->mutable_origin_granted()->Add(result.origin_granted.begin(), result.origin_granted.end());
  out->set_lease_timeout_ms(Milliseconds(result.lease_timeout));
  out->mutable_crc32c()->Add(result.crc32c.begin(), result.crc32c.end());
  out->set_crc32c_known(result.crc32c_known);
  out->set_origin_in_progress(result.origin_in_progress);
  out->set_seed_active(result.seed_active);
}

void ToProto(const TaskStat& stat, v1::StatTaskResponse* out) {
  ToProto(stat.task, out->mutable_task());
  for (const TaskStat::Holder& holder : stat.holders) {
    v1::StatTaskResponse::Holder* h = out->add_holders();
    h->set_host_id(holder.host_id);
    h->set_pieces(holder.pieces);
    h->set_complete(holder.complete);
  }
  out->set_origin_leases_granted(stat.origin_leases_granted);
  out->set_origin_leases_expired(stat.origin_leases_expired);
  out->mutable_leased_now()->Add(stat.leased_now.begin(), stat.leased_now.end());
  out->set_seed_host_id(stat.seed_host_id);
}

}  // namespace

// The gRPC face of a SchedulerState: each method translates, calls the state and converts the
// status. Seed triggers go to the dispatcher, so no call waits on a seed.
class SchedulerService final : public v1::Scheduler::Service {
 public:
  SchedulerService(SchedulerState* state, SeedDispatcher* dispatcher,
                   absl::Duration keepalive_interval)
      : state_(state), dispatcher_(dispatcher), keepalive_interval_(keepalive_interval) {}

  grpc::Status AnnounceHost(grpc::ServerContext* /*context*/,
                            const v1::AnnounceHostRequest* request,
                            v1::AnnounceHostResponse* response) override {
    return ToGrpcStatus([&]() -> absl::Status {
      if (!request->has_host()) return absl::InvalidArgumentError("host is missing");
      ASSIGN_OR_RETURN(Host host, FromProto(request->host()));
      ASSIGN_OR_RETURN(AnnounceResult result, state_->AnnounceHost(host));
      response->set_keepalive_interval_ms(Milliseconds(keepalive_interval_));
      response->set_new_host(result.new_host);
      return absl::OkStatus();
    }());
  }

  grpc::Status LeaveHost(grpc::ServerContext* /*context*/, const v1::LeaveHostRequest* request,
                         v1::LeaveHostResponse* /*response*/) override {
    return ToGrpcStatus(state_->LeaveHost(request->host_id()));
  }

  grpc::Status SyncTask(grpc::ServerContext* /*context*/, const v1::SyncTaskRequest* request,
                        v1::SyncTaskResponse* response) override {
    return ToGrpcStatus([&]() -> absl::Status {
      ASSIGN_OR_RETURN(SyncRequest sync, FromProto(*request));
      ASSIGN_OR_RETURN(SyncResult result, state_->SyncTask(sync));
      if (result.seed_to_trigger) dispatcher_->Enqueue(*std::move(result.seed_to_trigger));
      ToProto(result, response);
      return absl::OkStatus();
    }());
  }

  grpc::Status LeaveTask(grpc::ServerContext* /*context*/, const v1::LeaveTaskRequest* request,
                         v1::LeaveTaskResponse* /*response*/) override {
    return ToGrpcStatus(state_->LeaveTask(request->host_id(), request->task_id()));
  }

  grpc::Status StatTask(grpc::ServerContext* /*context*/, const v1::StatTaskRequest* request,
                        v1::StatTaskResponse* response) override {
    return ToGrpcStatus([&]() -> absl::Status {
      ASSIGN_OR_RETURN(TaskStat stat, state_->StatTask(request->task_id()));
      ToProto(stat, response);
      return absl::OkStatus();
    }());
  }

 private:
  SchedulerState* const state_;
  SeedDispatcher* const dispatcher_;
  const absl::Duration keepalive_interval_;
};

absl::StatusOr<std::unique_ptr<SchedulerServer>> SchedulerServer::Start(
    SchedulerServerOptions options) {
  std::unique_ptr<SchedulerServer> server(new SchedulerServer());
  server->options_ = std::move(options);
  server->state_ = std::make_unique<SchedulerState>(server->options_.state);
  SeedTrigger* trigger = server->options_.seed_trigger;
  if (trigger == nullptr) {
    server->own_trigger_ = std::make_unique<HttpSeedTrigger>();
    trigger = server->own_trigger_.get();
  }
  SchedulerState* state = server->state_.get();
  server->dispatcher_ = std::make_unique<SeedDispatcher>(
      trigger, [state](const SeedDecision& decision, const absl::Status& /*status*/) {
        state->SeedTriggerFailed(decision.task.task_id, decision.seed.id);
      });
  server->service_ = std::make_unique<SchedulerService>(state, server->dispatcher_.get(),
                                                        server->options_.keepalive_interval);
  RETURN_IF_ERROR(server->StartGrpc());
  RETURN_IF_ERROR(server->StartMetrics());
  SchedulerServer* self = server.get();
  server->sweeper_ = std::thread([self] { self->SweepLoop(); });
  LogInfo("scheduler started", {{"address", server->options_.address},
                                {"port", server->port()},
                                {"metrics_port", server->metrics_port()}});
  return server;
}

SchedulerServer::~SchedulerServer() { Shutdown(); }

absl::Status SchedulerServer::StartGrpc() {
  grpc::ServerBuilder builder;
  int selected_port = 0;
  const std::string address = HostPort(options_.address, options_.port);
  // gRPC sets SO_REUSEPORT by default, which would let a second scheduler share the port
  // silently; a port in use must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &selected_port);
  builder.RegisterService(service_.get());
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || selected_port == 0) {
    return absl::UnavailableError(StrCat("scheduler: cannot listen on ", address));
  }
  port_ = static_cast<uint16_t>(selected_port);
  return absl::OkStatus();
}

absl::Status SchedulerServer::StartMetrics() {
  if (!options_.metrics_port) return absl::OkStatus();
  net::HttpServerOptions http{.address = options_.address, .port = *options_.metrics_port};
  http.threads = 2;
  ASSIGN_OR_RETURN(metrics_server_,
                   net::HttpServer::Start(http, [this](const net::ServerRequest& request,
                                                       net::ResponseWriter& writer) {
                     net::HttpHeaders headers;
                     if (request.path == "/healthy") {
                       writer.Respond(200, headers, "OK").IgnoreError();
                     } else if (request.path == "/metrics") {
                       headers.Add("Content-Type", "text/plain; version=0.0.4").IgnoreError();
                       writer.Respond(200, headers, MetricsText()).IgnoreError();
                     } else {
                       writer.Respond(404, headers, "").IgnoreError();
                     }
                   }));
  return absl::OkStatus();
}

void SchedulerServer::Shutdown() {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (sweeper_.joinable()) sweeper_.join();
  if (grpc_server_ != nullptr) {
    grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  if (metrics_server_ != nullptr) metrics_server_->Shutdown(absl::Seconds(1));
  dispatcher_.reset();
  LogInfo("scheduler stopped");
}

uint16_t SchedulerServer::metrics_port() const {
  return metrics_server_ != nullptr ? metrics_server_->port() : 0;
}

void SchedulerServer::WaitForSeedTriggers() {
  if (dispatcher_ != nullptr) dispatcher_->WaitIdle();
}

void SchedulerServer::SweepLoop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.sweep_interval)) state_->Sweep();
}

std::string SchedulerServer::MetricsText() const {
  const SchedulerCounters c = state_->Counters();
  std::string text;
  auto metric = [&text](std::string_view type, std::string_view name, std::string_view help,
                        uint64_t value) {
    StrAppend(&text, "# HELP naiad_scheduler_", name, " ", help, "\n# TYPE naiad_scheduler_", name,
              " ", type, "\nnaiad_scheduler_", name, " ", value, "\n");
  };
  metric("gauge", "hosts", "Live hosts (announced and not expired).", c.hosts);
  metric("gauge", "seed_hosts", "Live seed peers.", c.seed_hosts);
  metric("gauge", "tasks", "Tasks known.", c.tasks);
  metric("gauge", "origin_leases_active", "Origin leases held now.", c.leases_active);
  metric("counter", "announce_calls_total", "AnnounceHost calls.", c.announce_calls);
  metric("counter", "sync_calls_total", "SyncTask calls.", c.sync_calls);
  metric("counter", "hosts_expired_total", "Hosts dropped for not announcing themselves.",
         c.hosts_expired);
  metric("counter", "origin_leases_granted_total", "Pieces granted for an origin fetch.",
         c.leases_granted);
  metric("counter", "origin_leases_expired_total",
         "Origin leases handed over after their holder stalled or went away.", c.leases_expired);
  metric("counter", "origin_leases_renewed_total",
         "Origin lease deadlines moved because their holder was still fetching.", c.leases_renewed);
  metric("counter", "seed_triggers_total", "Seed peers asked to fetch a task.", c.seed_triggers);
  metric("counter", "seed_trigger_failures_total", "Seed peers that could not be asked.",
         c.seed_trigger_failures);
  return text;
}

}  // namespace naiad::scheduler
