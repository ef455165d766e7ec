#include "base/simulated_clock.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace naiad {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);

TEST(SimulatedClock, MovesOnlyWhenTold) {
  SimulatedClock clock(kStart);
  EXPECT_EQ(clock.Now(), kStart);
  absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(clock.Now(), kStart);
  clock.Advance(absl::Seconds(3));
  EXPECT_EQ(clock.Now(), kStart + absl::Seconds(3));
  clock.SetTime(kStart - absl::Hours(1));
  EXPECT_EQ(clock.Now(), kStart - absl::Hours(1));
  EXPECT_EQ(SimulatedClock().Now(), absl::FromUnixSeconds(1704067200));
}

TEST(SimulatedClock, NonPositiveSleepReturnsAtOnce) {
  SimulatedClock clock(kStart);
  clock.SleepFor(absl::ZeroDuration());
  clock.SleepFor(-absl::Seconds(1));
  EXPECT_EQ(clock.Now(), kStart);
  EXPECT_EQ(clock.sleepers(), 0);
}

TEST(SimulatedClock, SleepBlocksUntilAdvancedPastWakeTime) {
  SimulatedClock clock(kStart);
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    clock.SleepFor(absl::Seconds(10));
    woke = true;
  });
  clock.WaitForSleepers(1);
  clock.Advance(absl::Seconds(9));
  absl::SleepFor(absl::Milliseconds(20));  // give a wrongly woken sleeper time to show it
  EXPECT_FALSE(woke);
  EXPECT_EQ(clock.sleepers(), 1);
  clock.Advance(absl::Seconds(1));
  sleeper.join();
  EXPECT_TRUE(woke);
  EXPECT_EQ(clock.sleepers(), 0);
}

TEST(SimulatedClock, SleepersWakeInDeadlineOrder) {
  SimulatedClock clock(kStart);
  absl::Mutex mu;
  std::vector<int> order;
  std::vector<std::thread> threads;
  for (int seconds : {30, 10, 20}) {
    threads.emplace_back([&, seconds] {
      clock.SleepFor(absl::Seconds(seconds));
      absl::MutexLock lock(&mu);
      order.push_back(seconds);
    });
  }
  clock.WaitForSleepers(3);
  for (size_t woken = 1; woken <= 3; ++woken) {
    clock.Advance(absl::Seconds(10));  // wakes exactly one sleeper; wait until it has recorded
    absl::MutexLock lock(&mu);
    auto recorded = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return order.size() >= woken; };
    mu.Await(absl::Condition(&recorded));
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(order, (std::vector<int>{10, 20, 30}));
}

TEST(SimulatedClock, SetTimeWakesSleepers) {
  SimulatedClock clock(kStart);
  std::thread sleeper([&] { clock.SleepFor(absl::Minutes(5)); });
  clock.WaitForSleepers(1);
  clock.SetTime(kStart + absl::Hours(1));
  sleeper.join();
  EXPECT_EQ(clock.Now(), kStart + absl::Hours(1));
}

TEST(SimulatedClock, AutoAdvanceMovesTheClockInsteadOfBlocking) {
  SimulatedClock clock(kStart);
  clock.SetAutoAdvance(true);
  clock.SleepFor(absl::Seconds(2));
  clock.SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(clock.Now(), kStart + absl::Milliseconds(2500));
  EXPECT_EQ(clock.sleepers(), 0);
}

}  // namespace
}  // namespace naiad
