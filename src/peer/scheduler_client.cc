#include "peer/scheduler_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <functional>
#include <optional>

#include "base/logging.h"
#include "base/strings.h"
#include "naiad/scheduler/v1/scheduler.grpc.pb.h"

namespace naiad::peer {
namespace {

// The one place where gRPC statuses become absl ones.
absl::Status FromGrpc(const grpc::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  auto code = static_cast<absl::StatusCode>(status.error_code());
  return absl::Status(code, StrCat("scheduler ", what, ": ", status.error_message()));
}

class GrpcSchedulerClient final : public SchedulerClient {
 public:
  GrpcSchedulerClient(std::vector<std::string> addresses, absl::Duration timeout)
      : addresses_(std::move(addresses)), timeout_(timeout) {
    for (const std::string& address : addresses_) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
      auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
      stubs_.push_back(schedv1::Scheduler::NewStub(channel));
    }
  }

  absl::StatusOr<absl::Duration> AnnounceHost(const schedv1::Host& host) override {
    schedv1::AnnounceHostRequest request;
    *request.mutable_host() = host;
    absl::Status last = absl::UnavailableError("no scheduler configured");
    std::optional<absl::Duration> interval;
    for (auto& stub : stubs_) {
      grpc::ClientContext context;
      SetDeadline(context);
      schedv1::AnnounceHostResponse response;
      absl::Status status = FromGrpc(stub->AnnounceHost(&context, request, &response), "announce");
      if (!status.ok()) {
        last = status;
        continue;
      }
      if (response.new_host()) CountNewHostAnswer();
      absl::Duration asked = absl::Milliseconds(response.keepalive_interval_ms());
      if (asked > absl::ZeroDuration()) interval = std::min(interval.value_or(asked), asked);
    }
    if (!interval.has_value()) return last;
    return *interval;
  }

  void LeaveHost(const std::string& host_id) override {
    schedv1::LeaveHostRequest request;
    request.set_host_id(host_id);
    for (auto& stub : stubs_) {
      grpc::ClientContext context;
      SetDeadline(context);
      schedv1::LeaveHostResponse response;
      stub->LeaveHost(&context, request, &response).ok();  // best effort: we are going away
    }
  }

  absl::StatusOr<schedv1::SyncTaskResponse> SyncTask(
      const schedv1::SyncTaskRequest& request) override {
    grpc::ClientContext context;
    SetDeadline(context);
    schedv1::SyncTaskResponse response;
    absl::Status status =
        FromGrpc(StubFor(request.task().task_id()).SyncTask(&context, request, &response), "sync");
    if (!status.ok()) return status;
    return response;
  }

  absl::StatusOr<schedv1::StatTaskResponse> StatTask(const std::string& task_id) override {
    schedv1::StatTaskRequest request;
    request.set_task_id(task_id);
    grpc::ClientContext context;
    SetDeadline(context);
    schedv1::StatTaskResponse response;
    absl::Status status = FromGrpc(StubFor(task_id).StatTask(&context, request, &response), "stat");
    if (!status.ok()) return status;
    return response;
  }

  void LeaveTask(const std::string& host_id, const std::string& task_id) override {
    schedv1::LeaveTaskRequest request;
    request.set_host_id(host_id);
    request.set_task_id(task_id);
    grpc::ClientContext context;
    SetDeadline(context);
    schedv1::LeaveTaskResponse response;
    StubFor(task_id).LeaveTask(&context, request, &response).ok();  // best effort
  }

 private:
  void SetDeadline(grpc::ClientContext& context) const {
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  }

  // Rendezvous hashing: the scheduler with the highest hash of (task, address).
  schedv1::Scheduler::Stub& StubFor(const std::string& task_id) {
    size_t best = 0;
    size_t best_hash = 0;
    for (size_t i = 0; i < addresses_.size(); ++i) {
      size_t hash = std::hash<std::string>{}(StrCat(task_id, "/", addresses_[i]));
      if (i == 0 || hash > best_hash) {
        best = i;
        best_hash = hash;
      }
    }
    return *stubs_[best];
  }

  const std::vector<std::string> addresses_;
  const absl::Duration timeout_;
  std::vector<std::unique_ptr<schedv1::Scheduler::Stub>> stubs_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SchedulerClient>> SchedulerClient::Connect(
    const std::vector<std::string>& addresses, absl::Duration timeout) {
  if (addresses.empty()) return absl::InvalidArgumentError("no scheduler address given");
  for (const std::string& address : addresses) {
    if (address.empty() || address.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(
          StrCat("scheduler address \"", address, "\" is not host:port"));
    }
  }
  return std::make_unique<GrpcSchedulerClient>(addresses, timeout);
}

}  // namespace naiad::peer
