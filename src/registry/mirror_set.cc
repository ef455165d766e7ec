#include "registry/mirror_set.h"

#include <algorithm>
#include <utility>

#include "base/logging.h"

namespace naiad::registry {
namespace {

constexpr absl::Duration kMinPingTimeout = absl::Milliseconds(200);
constexpr absl::Duration kMaxPingTimeout = absl::Seconds(5);

}  // namespace

MirrorSet::MirrorSet(std::vector<HealthCheckedSource> sources, net::HttpClient* ping_client)
    : sources_(std::move(sources)), ping_client_(ping_client) {
  absl::Time now = absl::Now();
  bool any_ping = false;
  {
    absl::MutexLock lock(&mu_);
    states_.resize(sources_.size());
    for (size_t i = 0; i < sources_.size(); ++i) {
      states_[i].last_used = now;
      states_[i].next_ping = now + sources_[i].interval;
      any_ping = any_ping || !sources_[i].ping_url.empty();
    }
  }
  if (any_ping) checker_ = std::thread([this] { CheckerLoop(); });
}

MirrorSet::~MirrorSet() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  cancel_.Cancel();
  if (checker_.joinable()) checker_.join();
}

bool MirrorSet::Healthy(size_t i) const {
  absl::MutexLock lock(&mu_);
  return states_[i].healthy;
}

bool MirrorSet::UseIfHealthy(size_t i) {
  absl::MutexLock lock(&mu_);
  State& state = states_[i];
  absl::Time now = absl::Now();
  if (now - state.last_used > sources_[i].pause_after_idle) wake_ = true;  // resume checking
  state.last_used = now;
  return state.healthy;
}

void MirrorSet::RecordSuccess(size_t i) {
  absl::MutexLock lock(&mu_);
  states_[i].failures = 0;
  states_[i].last_used = absl::Now();
}

bool MirrorSet::RecordFailure(size_t i) {
  absl::MutexLock lock(&mu_);
  State& state = states_[i];
  state.last_used = absl::Now();
  if (!state.healthy) return false;
  if (++state.failures < sources_[i].failure_limit) return false;
  state.healthy = false;
  state.next_ping = absl::Now() + sources_[i].interval;
  wake_ = true;
  LogWarn("registry source marked unhealthy",
          {{"source", sources_[i].name}, {"failures", state.failures}});
  return true;
}

void MirrorSet::MarkUnhealthy(size_t i) {
  absl::MutexLock lock(&mu_);
  State& state = states_[i];
  state.last_used = absl::Now();
  if (!state.healthy) return;
  state.healthy = false;
  state.next_ping = absl::Now() + sources_[i].interval;
  wake_ = true;
  LogWarn("registry source marked unhealthy", {{"source", sources_[i].name}});
}

uint64_t MirrorSet::pings() const {
  absl::MutexLock lock(&mu_);
  return pings_;
}

bool MirrorSet::PingOnce(size_t i) {
  const HealthCheckedSource& source = sources_[i];
  net::HttpRequest request{
      .url = source.ping_url,
      .timeout = std::clamp(source.interval, kMinPingTimeout, kMaxPingTimeout),
      .cancel = &cancel_,
  };
  absl::StatusOr<net::HttpResponse> response = ping_client_->Send(request);
  return response.ok() && response->status < 500;
}

void MirrorSet::CheckerLoop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    absl::Time now = absl::Now();
    absl::Time next = absl::InfiniteFuture();
    std::vector<size_t> due;
    for (size_t i = 0; i < sources_.size(); ++i) {
      const HealthCheckedSource& source = sources_[i];
      State& state = states_[i];
      if (source.ping_url.empty() || (state.healthy && !source.ping_when_healthy)) continue;
      // Idle sources are not pinged; the next request that uses one records traffic again.
      if (now - state.last_used > source.pause_after_idle) continue;
      if (state.next_ping <= now) {
        due.push_back(i);
        state.next_ping = now + source.interval;
      }
      next = std::min(next, state.next_ping);
    }
    if (!due.empty()) {
      std::vector<std::pair<size_t, bool>> results;
      mu_.Unlock();
      for (size_t i : due) results.emplace_back(i, PingOnce(i));
      mu_.Lock();
      for (auto [i, ok] : results) {
        ++pings_;
        State& state = states_[i];
        if (ok && !state.healthy) {
          LogInfo("registry source healthy again", {{"source", sources_[i].name}});
        } else if (!ok && state.healthy) {
          LogWarn("registry source failed its health check", {{"source", sources_[i].name}});
        }
        state.healthy = ok;
        if (ok) state.failures = 0;
      }
      continue;
    }
    wake_ = false;
    // With nothing to ping the loop sleeps until a source turns unhealthy (wake_) or stops.
    mu_.AwaitWithDeadline(absl::Condition(
                              +[](MirrorSet* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                return self->stopping_ || self->wake_;
                              },
                              this),
                          next);
  }
}

}  // namespace naiad::registry
