#include "base/simulated_clock.h"

namespace naiad {

absl::Time SimulatedClock::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

void SimulatedClock::SleepFor(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return;
  absl::MutexLock lock(&mu_);
  if (auto_advance_) {
    now_ += d;
    return;
  }
  absl::Time wake = now_ + d;
  ++sleepers_;
  auto awake = [this, wake]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return now_ >= wake; };
  mu_.Await(absl::Condition(&awake));
  --sleepers_;
}

void SimulatedClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
}

void SimulatedClock::SetTime(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

void SimulatedClock::SetAutoAdvance(bool on) {
  absl::MutexLock lock(&mu_);
  auto_advance_ = on;
}

int SimulatedClock::sleepers() const {
  absl::MutexLock lock(&mu_);
  return sleepers_;
}

void SimulatedClock::WaitForSleepers(int n) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return sleepers_ >= n; };
  mu_.Await(absl::Condition(&enough));
}

}  // namespace naiad
