#include "scheduler/seed_trigger.h"

#include <utility>

#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "nlohmann/json.hpp"

namespace naiad::scheduler {
namespace {

constexpr size_t kErrorBodyChars = 200;

// "http://ip:port", with an IPv6 address in brackets.
std::string BaseUrl(const Host& host) {
  if (host.ip.find(':') != std::string::npos) {
    return StrCat("http://[", host.ip, "]:", host.upload_port);
  }
  return StrCat("http://", host.ip, ":", host.upload_port);
}

}  // namespace

std::string SeedRequestJson(const TaskInfo& task) {
  nlohmann::json headers = nlohmann::json::object();
  for (const auto& [name, value] : task.origin_headers) headers[name] = value;
  const nlohmann::json body = {
      {"task_id", task.task_id},
      {"url", task.url},
      {"content_length", task.content_length},
      {"piece_size", task.piece_size},
      {"digest", task.digest},
      {"headers", headers},
  };
  // Invalid UTF-8 is replaced instead of throwing.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

HttpSeedTrigger::HttpSeedTrigger(absl::Duration timeout)
    : client_(net::HttpClientOptions{.connect_timeout = timeout, .timeout = timeout}) {}

absl::Status HttpSeedTrigger::Trigger(const Host& seed, const TaskInfo& task) {
  const std::string url = StrCat(BaseUrl(seed), "/v1/seed");
  net::HttpRequest request{.method = "POST", .url = url, .body = SeedRequestJson(task)};
  request.follow_redirects = false;
  RETURN_IF_ERROR(request.headers.Add("Content-Type", "application/json"));
  ASSIGN_OR_RETURN(net::HttpResponse response, client_.Send(request));
  if (response.status / 100 == 2) return absl::OkStatus();
  const std::string context = StrCat("POST ", url, ": HTTP ", response.status, " ",
                                     response.body.substr(0, kErrorBodyChars));
  absl::Status status = net::HttpStatusToStatus(response.status, context);
  return status.ok() ? absl::UnavailableError(context) : status;
}

SeedDispatcher::SeedDispatcher(SeedTrigger* trigger, FailureFn on_failure, size_t max_pending)
    : trigger_(trigger), on_failure_(std::move(on_failure)), max_pending_(max_pending) {
  worker_ = std::thread([this] { Work(); });
}

SeedDispatcher::~SeedDispatcher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  worker_.join();
}

void SeedDispatcher::Enqueue(SeedDecision decision) {
  {
    absl::MutexLock lock(&mu_);
    if (pending_.size() < max_pending_) {
      pending_.push_back(std::move(decision));
      return;
    }
  }
  on_failure_(decision, absl::ResourceExhaustedError("too many seed triggers pending"));
}

void SeedDispatcher::WaitIdle() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](SeedDispatcher* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
        return self->pending_.empty() && !self->running_;
      },
      this));
}

void SeedDispatcher::Work() {
  while (true) {
    SeedDecision decision;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](SeedDispatcher* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stop_ || !self->pending_.empty();
          },
          this));
      if (stop_) return;
      decision = std::move(pending_.front());
      pending_.pop_front();
      running_ = true;
    }
    absl::Status status = trigger_->Trigger(decision.seed, decision.task);
    if (status.ok()) {
      LogInfo("seed triggered", {{"task", decision.task.task_id}, {"seed", decision.seed.id}});
    } else {
      LogWarn("seed trigger failed", {{"task", decision.task.task_id},
                                      {"seed", decision.seed.id},
                                      {"error", status.ToString()}});
      on_failure_(decision, status);
    }
    absl::MutexLock lock(&mu_);
    running_ = false;
  }
}

}  // namespace naiad::scheduler
