// File: base/simulated_clock.h
//
// A Clock whose time moves only when a test says so (test-only; library naiad::base_testing).
//
//   SimulatedClock clock;
//   Fetcher fetcher(&clock, ...);          // retries after clock->SleepFor(backoff)
//   std::thread t([&] { fetcher.Run(); });
//   clock.WaitForSleepers(1);              // the fetcher is now blocked in SleepFor()
//   clock.Advance(absl::Seconds(30));      // ...and wakes once 30s of simulated time passed
//
// For single-threaded code (a retry loop called from the test itself), SetAutoAdvance(true)
// makes SleepFor(d) advance the clock by d and return instead of blocking.
//
// All methods are thread-safe.
#pragma once

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/env.h"

namespace naiad {

class SimulatedClock : public Clock {
 public:
  // Starts at `start` (by default 2024-01-01T00:00:00Z).
  explicit SimulatedClock(absl::Time start = absl::FromUnixSeconds(1704067200)) : now_(start) {}

  absl::Time Now() override;
  // Returns once the clock reads at least Now() + d: at once if d <= 0 or in auto-advance mode
  // (which advances the clock by d), otherwise when other threads have advanced it that far.
  void SleepFor(absl::Duration d) override;

  // Moves the clock by `d` (backwards if negative) and wakes sleepers whose time has come.
  void Advance(absl::Duration d);
  // Sets the clock, forwards or backwards, waking sleepers whose time has come.
  void SetTime(absl::Time t);
  void SetAutoAdvance(bool on);

  // How many threads are blocked in SleepFor().
  int sleepers() const;
  // Blocks until at least `n` threads are blocked in SleepFor().
  void WaitForSleepers(int n);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  bool auto_advance_ ABSL_GUARDED_BY(mu_) = false;
  int sleepers_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace naiad
