#include "scheduler/scheduler_state.h"

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "base/simulated_clock.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::scheduler {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::_;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint32_t kPieceSize = 4 << 20;
constexpr uint32_t kPieces = 8;

TaskInfo MakeTask(char c = 'a') {
  const std::string id(64, c);
  return {.task_id = id,
          .url = StrCat("http://registry/v2/lib/python/blobs/sha256:", id),
          .content_length = uint64_t{kPieces} * kPieceSize - 100,
          .piece_size = kPieceSize,
          .digest = StrCat("sha256:", id),
          .origin_headers = {{"Authorization", "Bearer x"}}};
}

Host MakeHost(const std::string& id, HostType type = HostType::kNormal) {
  return {.id = id,
          .hostname = id,
          .ip = "10.0.0.1",
          .upload_port = 65002,
          .type = type,
          .upload_active = 0,
          .upload_limit = 10};
}

PieceReport Origin(uint32_t n, uint32_t crc = 0) {
  return {.number = n, .crc32c = crc, .source = PieceSource::kOrigin};
}

std::vector<std::string> ParentIds(const SyncResult& result) {
  std::vector<std::string> ids;
  for (const Parent& p : result.parents) ids.push_back(p.host_id);
  return ids;
}

class SchedulerStateTest : public ::testing::Test {
 protected:
  explicit SchedulerStateTest(SchedulerOptions options = {})
      : state_([&] {
          options.clock = &clock_;
          return options;
        }()) {}

  void Announce(const std::string& id, HostType type = HostType::kNormal) {
    ASSERT_OK(state_.AnnounceHost(MakeHost(id, type)));
  }
  void Announce(const Host& host) { ASSERT_OK(state_.AnnounceHost(host)); }

  // A SyncTask of `host` on task 'a' that must succeed.
  SyncResult Sync(const std::string& host, SyncRequest request = {}) {
    request.host_id = host;
    if (request.task.task_id.empty()) request.task = MakeTask();
    absl::StatusOr<SyncResult> result = state_.SyncTask(request);
    EXPECT_OK(result);
    return result.ok() ? *std::move(result) : SyncResult{};
  }

  TaskStat Stat(char c = 'a') {
    absl::StatusOr<TaskStat> stat = state_.StatTask(std::string(64, c));
    EXPECT_OK(stat);
    return stat.ok() ? *std::move(stat) : TaskStat{};
  }

  SimulatedClock clock_;
  SchedulerState state_;
};

TEST_F(SchedulerStateTest, OriginLeaseIsSingleFlight) {
  Announce("a");
  Announce("b");
  SyncResult a = Sync("a", {.want_origin = {0, 1}});
  EXPECT_THAT(a.origin_granted, ElementsAre(0, 1));
  EXPECT_FALSE(a.origin_in_progress);
  EXPECT_EQ(a.lease_timeout, absl::Seconds(30));
  SyncResult b = Sync("b", {.want_origin = {1, 0, 2, 2}});
  EXPECT_THAT(b.origin_granted, ElementsAre(2));
  EXPECT_TRUE(b.origin_in_progress);
  // Asking again for one's own lease keeps it.
  EXPECT_THAT(Sync("a", {.want_origin = {0}}).origin_granted, ElementsAre(0));
  TaskStat stat = Stat();
  EXPECT_THAT(stat.leased_now, ElementsAre(0, 1, 2));
  EXPECT_EQ(stat.origin_leases_granted, 3u);
  EXPECT_EQ(state_.Counters().leases_active, 3u);
}

TEST_F(SchedulerStateTest, GrantsAtMostMaxOriginGrantsInTheOrderAsked) {
  Announce("a");
  Announce("b");
  EXPECT_THAT(Sync("a", {.want_origin = {5, 2}}).origin_granted, ElementsAre(5, 2));
  // b lists more candidates than it can fetch: the ones a leased are skipped over.
  SyncResult b = Sync("b", {.want_origin = {5, 2, 7, 1, 3}, .max_origin_grants = 2});
  EXPECT_THAT(b.origin_granted, ElementsAre(7, 1));
  // The limit counts the answer's pieces in the order asked, leases already held included.
  EXPECT_THAT(Sync("b", {.want_origin = {3, 7, 1}, .max_origin_grants = 2}).origin_granted,
              ElementsAre(3, 7));
}

TEST_F(SchedulerStateTest, LeaseHolderIsAParentWithTheFetchingBitmap) {
  Announce("a");
  Announce("b");
  ASSERT_THAT(Sync("a", {.want_origin = {3}}).origin_granted, ElementsAre(3));
  SyncResult b = Sync("b");
  ASSERT_THAT(ParentIds(b), ElementsAre("a"));
  EXPECT_TRUE(BitmapHas(b.parents[0].fetching, 3));
  EXPECT_FALSE(BitmapHas(b.parents[0].fetching, 2));
  EXPECT_FALSE(BitmapHas(b.parents[0].bitmap, 3));
  Sync("a", {.pieces = {Origin(3)}});  // fetched: held, no longer fetching
  b = Sync("b");
  ASSERT_THAT(ParentIds(b), ElementsAre("a"));
  EXPECT_TRUE(BitmapHas(b.parents[0].bitmap, 3));
  EXPECT_FALSE(BitmapHas(b.parents[0].fetching, 3));
}

TEST_F(SchedulerStateTest, OriginLeaseIsSingleFlightUnderConcurrentCalls) {
  constexpr int kHosts = 8;
  for (int i = 0; i < kHosts; ++i) Announce(StrCat("h", i));
  std::vector<std::vector<uint32_t>> granted(kHosts);
  std::vector<std::thread> threads;
  for (int i = 0; i < kHosts; ++i) {
    threads.emplace_back([this, i, &granted] {
      for (int round = 0; round < 50; ++round) {
        absl::StatusOr<SyncResult> result =
            state_.SyncTask({.host_id = StrCat("h", i),
                             .task = MakeTask(),
                             .want_origin = {0, 1, 2, 3, 4, 5, 6, 7}});
        if (!result.ok()) continue;
        for (uint32_t piece : result->origin_granted) {
          if (std::find(granted[i].begin(), granted[i].end(), piece) == granted[i].end()) {
            granted[i].push_back(piece);
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<int> holders(kPieces, 0);
  for (const auto& pieces : granted) {
    for (uint32_t piece : pieces) ++holders[piece];
  }
  EXPECT_THAT(holders, ::testing::Each(1));
  EXPECT_EQ(Stat().origin_leases_granted, kPieces);
}

TEST_F(SchedulerStateTest, ReportedPieceEndsLeaseAndComesFromTheHolder) {
  Announce("a");
  Announce("b");
  ASSERT_THAT(Sync("a", {.want_origin = {0}}).origin_granted, ElementsAre(0));
  Sync("a", {.pieces = {Origin(0, 0x1234)}});
  SyncResult b = Sync("b", {.want_origin = {0}});
  EXPECT_THAT(b.origin_granted, IsEmpty());
  EXPECT_FALSE(b.origin_in_progress);
  ASSERT_THAT(ParentIds(b), ElementsAre("a"));
  EXPECT_TRUE(BitmapHas(b.parents[0].bitmap, 0));
  EXPECT_FALSE(BitmapHas(b.parents[0].bitmap, 1));
  EXPECT_EQ(b.parents[0].bitmap.size(), 1u);
  EXPECT_TRUE(BitmapHas(b.crc32c_known, 0));
  EXPECT_EQ(b.crc32c[0], 0x1234u);
  EXPECT_THAT(Stat().leased_now, IsEmpty());
  EXPECT_EQ(Stat().origin_leases_expired, 0u);
}

TEST_F(SchedulerStateTest, ReleasedLeaseGoesToTheNextHost) {
  Announce("a");
  Announce("b");
  ASSERT_THAT(Sync("a", {.want_origin = {3}}).origin_granted, ElementsAre(3));
  Sync("b", {.released = {3}});  // not b's lease: ignored
  EXPECT_THAT(Sync("b", {.want_origin = {3}}).origin_granted, IsEmpty());
  Sync("a", {.released = {3}});
  EXPECT_THAT(Sync("b", {.want_origin = {3}}).origin_granted, ElementsAre(3));
  EXPECT_EQ(Stat().origin_leases_expired, 0u);
}

TEST_F(SchedulerStateTest, LeaseTimeoutHandsThePieceOver) {
  Announce("a");
  Announce("b");
  ASSERT_THAT(Sync("a", {.want_origin = {0}}).origin_granted, ElementsAre(0));
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(Sync("a", {.want_origin = {0}}).origin_granted, ElementsAre(0));  // no extension
  clock_.Advance(absl::Seconds(10));
  Announce("a");
  Announce("b");
  EXPECT_THAT(Sync("b", {.want_origin = {0}}).origin_granted, IsEmpty());
  clock_.Advance(absl::Seconds(10));  // 30 s after the grant
  SyncResult b = Sync("b", {.want_origin = {0}});
  EXPECT_THAT(b.origin_granted, ElementsAre(0));
  TaskStat stat = Stat();
  EXPECT_EQ(stat.origin_leases_granted, 2u);
  EXPECT_EQ(stat.origin_leases_expired, 1u);
  EXPECT_THAT(stat.leased_now, ElementsAre(0));
  // The stalled host has lost it.
  EXPECT_THAT(Sync("a", {.want_origin = {0}}).origin_granted, IsEmpty());
}

TEST_F(SchedulerStateTest, ARenewedLeaseOutlivesTheTimeoutAnUnrenewedOneIsHandedOver) {
  Announce("a");
  Announce("b");
  ASSERT_THAT(Sync("a", {.want_origin = {0, 1}}).origin_granted, ElementsAre(0, 1));
  // a is still fetching piece 0 over a slow link and says so every 10 s; piece 1 it does not
  // list (that fetch stalled).
  for (int i = 0; i < 6; ++i) {
    clock_.Advance(absl::Seconds(10));
    Announce("b");
    Sync("a", {.fetching = {0}});
  }
  // 60 s after the grant: piece 0 is still a's, piece 1 went to the next host to ask.
  SyncResult b = Sync("b", {.want_origin = {0, 1}});
  EXPECT_THAT(b.origin_granted, ElementsAre(1));
  EXPECT_TRUE(b.origin_in_progress);
  TaskStat stat = Stat();
  EXPECT_EQ(stat.origin_leases_expired, 1u);
  EXPECT_THAT(stat.leased_now, ElementsAre(0, 1));
  EXPECT_EQ(state_.Counters().leases_renewed, 6u);
  Sync("b", {.pieces = {Origin(1)}});
  // a's lease on 0 lasts lease_timeout from its last renewal, no longer (a stays alive).
  for (absl::Duration step : {absl::Seconds(10), absl::Seconds(10), absl::Seconds(9)}) {
    clock_.Advance(step);
    Announce("a");
    Announce("b");
  }
  EXPECT_THAT(Sync("b", {.want_origin = {0}}).origin_granted, IsEmpty());
  clock_.Advance(absl::Seconds(1));
  EXPECT_THAT(Sync("b", {.want_origin = {0}}).origin_granted, ElementsAre(0));
  EXPECT_EQ(Stat().origin_leases_expired, 2u);
}

TEST_F(SchedulerStateTest, RenewingALeaseOneDoesNotHoldChangesNothing) {
  Announce("a");
  Announce("b");
  auto wait = [this](absl::Duration d) {
    clock_.Advance(d);
    Announce("a");
    Announce("b");
  };
  ASSERT_THAT(Sync("a", {.want_origin = {0}}).origin_granted, ElementsAre(0));
  wait(absl::Seconds(10));
  wait(absl::Seconds(10));
  // b lists a's lease and a piece nobody leased: nothing is renewed, nothing granted to b.
  SyncResult b = Sync("b", {.fetching = {0, 5}});
  EXPECT_THAT(b.origin_granted, IsEmpty());
  EXPECT_EQ(state_.Counters().leases_renewed, 0u);
  EXPECT_THAT(Stat().leased_now, ElementsAre(0));
  wait(absl::Seconds(10));  // 30 s after a's grant: expired as if b had said nothing
  EXPECT_EQ(Stat().origin_leases_expired, 1u);
  EXPECT_THAT(Sync("b", {.want_origin = {0, 5}}).origin_granted, ElementsAre(0, 5));
  // The leases are b's now: a, whose lease expired, neither wins it back nor extends b's by
  // listing the piece.
  Sync("a", {.fetching = {0}});
  EXPECT_EQ(state_.Counters().leases_renewed, 0u);
  EXPECT_THAT(Sync("a", {.want_origin = {0}}).origin_granted, IsEmpty());
  wait(absl::Seconds(10));
  wait(absl::Seconds(10));
  wait(absl::Seconds(10));  // 30 s after b's grant
  EXPECT_THAT(Sync("a", {.want_origin = {0}}).origin_granted, ElementsAre(0));
  EXPECT_EQ(Stat().origin_leases_expired, 3u);
}

TEST_F(SchedulerStateTest, FetchingIsValidated) {
  Announce("a");
  EXPECT_THAT(state_.SyncTask({.host_id = "a", .task = MakeTask(), .fetching = {1, kPieces}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fetching[1] 8")));
}

TEST_F(SchedulerStateTest, SweepExpiresLeases) {
  Announce("a");
  ASSERT_THAT(Sync("a", {.want_origin = {0, 1}}).origin_granted, ElementsAre(0, 1));
  for (int i = 0; i < 2; ++i) {
    clock_.Advance(absl::Seconds(14));
    Announce("a");
  }
  state_.Sweep();
  EXPECT_EQ(state_.Counters().leases_active, 2u);
  clock_.Advance(absl::Seconds(2));
  state_.Sweep();
  EXPECT_EQ(state_.Counters().leases_expired, 2u);
  EXPECT_EQ(state_.Counters().leases_active, 0u);
  EXPECT_EQ(state_.Counters().hosts, 1u);
}

TEST_F(SchedulerStateTest, HostExpiryDropsItsLeasesAndParentEntries) {
  Announce("a");
  Announce("b");
  Sync("a", {.pieces = {Origin(1)}, .want_origin = {0}});
  ASSERT_THAT(ParentIds(Sync("b")), ElementsAre("a"));
  clock_.Advance(absl::Seconds(10));
  Announce("b");
  clock_.Advance(absl::Seconds(5));  // a silent for 15 s
  SyncResult b = Sync("b", {.want_origin = {0, 1}});
  EXPECT_THAT(b.origin_granted, ElementsAre(0, 1));
  EXPECT_THAT(b.parents, IsEmpty());
  TaskStat stat = Stat();
  ASSERT_EQ(stat.holders.size(), 1u);
  EXPECT_EQ(stat.holders[0].host_id, "b");
  EXPECT_EQ(stat.origin_leases_expired, 1u);
  EXPECT_EQ(state_.Counters().hosts, 1u);
  EXPECT_EQ(state_.Counters().hosts_expired, 1u);
  EXPECT_THAT(state_.SyncTask({.host_id = "a", .task = MakeTask()}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("host not announced")));
}

TEST_F(SchedulerStateTest, SyncTaskKeepsAHostAlive) {
  Announce("a");
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Seconds(10));
    Sync("a");
  }
  state_.Sweep();
  EXPECT_EQ(state_.Counters().hosts, 1u);
}

TEST_F(SchedulerStateTest, LeaveHostHandsItsLeasesOver) {
  Announce("a");
  Announce("b");
  ASSERT_THAT(Sync("a", {.want_origin = {0}}).origin_granted, ElementsAre(0));
  ASSERT_OK(state_.LeaveHost("a"));
  ASSERT_OK(state_.LeaveHost("a"));  // again: nothing to do
  EXPECT_THAT(Sync("b", {.want_origin = {0}}).origin_granted, ElementsAre(0));
  EXPECT_EQ(Stat().origin_leases_expired, 1u);
  EXPECT_EQ(state_.Counters().hosts_expired, 0u);
}

TEST_F(SchedulerStateTest, LeaveTaskReleasesLeasesAndStopsBeingAParent) {
  Announce("a");
  Announce("b");
  Sync("a", {.pieces = {Origin(1)}, .want_origin = {0}});
  ASSERT_OK(state_.LeaveTask("a", MakeTask().task_id));
  SyncResult b = Sync("b", {.want_origin = {0, 1}});
  EXPECT_THAT(b.origin_granted, ElementsAre(0, 1));
  EXPECT_THAT(b.parents, IsEmpty());
  EXPECT_EQ(Stat().origin_leases_expired, 0u);
  EXPECT_OK(state_.LeaveTask("nobody", MakeTask('b').task_id));
}

TEST_F(SchedulerStateTest, CompleteHolderHoldsEveryPiece) {
  Announce("a");
  Announce("b");
  Sync("a", {.complete = true});
  SyncResult b = Sync("b", {.want_origin = {7}});
  EXPECT_THAT(b.origin_granted, IsEmpty());
  ASSERT_EQ(b.parents.size(), 1u);
  EXPECT_TRUE(b.parents[0].complete);
  for (uint32_t n = 0; n < kPieces; ++n) EXPECT_TRUE(BitmapHas(b.parents[0].bitmap, n)) << n;
  EXPECT_EQ(Stat().holders[0].pieces, kPieces);
}

TEST_F(SchedulerStateTest, SeedChosenForANewTaskOnce) {
  Announce("s1", HostType::kSeed);
  Announce("s2", HostType::kSeed);
  Announce("a");
  Announce("b");
  SyncResult a = Sync("a", {.whole = true});
  ASSERT_TRUE(a.seed_to_trigger.has_value());
  const Host s1 = MakeHost("s1", HostType::kSeed);
  const Host s2 = MakeHost("s2", HostType::kSeed);
  const Host* expected = RendezvousSeed(MakeTask().task_id, {&s1, &s2});
  EXPECT_EQ(a.seed_to_trigger->seed.id, expected->id);
  EXPECT_EQ(a.seed_to_trigger->task.url, MakeTask().url);
  EXPECT_EQ(a.seed_to_trigger->task.origin_headers.at("Authorization"), "Bearer x");
  EXPECT_TRUE(a.seed_active);
  // The seed is a parent before it holds anything.
  ASSERT_THAT(ParentIds(a), ElementsAre(expected->id));
  EXPECT_EQ(a.parents[0].type, HostType::kSeed);
  EXPECT_FALSE(a.parents[0].complete);
  EXPECT_EQ(Stat().seed_host_id, expected->id);
  EXPECT_FALSE(Sync("a", {.whole = true}).seed_to_trigger.has_value());
  EXPECT_FALSE(Sync("b", {.whole = true}).seed_to_trigger.has_value());
  EXPECT_TRUE(Sync("b").seed_active);
  EXPECT_EQ(state_.Counters().seed_triggers, 1u);
}

TEST_F(SchedulerStateTest, SeedChosenAgainWhenItDies) {
  Announce("s1", HostType::kSeed);
  Announce("s2", HostType::kSeed);
  Announce("a");
  SyncResult first = Sync("a", {.whole = true});
  ASSERT_TRUE(first.seed_to_trigger.has_value());
  const std::string chosen = first.seed_to_trigger->seed.id;
  const std::string other = chosen == "s1" ? "s2" : "s1";
  Sync(chosen, {.pieces = {Origin(0)}, .whole = true});
  ASSERT_OK(state_.LeaveHost(chosen));
  SyncResult second = Sync("a", {.whole = true});
  ASSERT_TRUE(second.seed_to_trigger.has_value());
  EXPECT_EQ(second.seed_to_trigger->seed.id, other);
  // And when the new one goes silent.
  clock_.Advance(absl::Seconds(10));
  Announce("a");
  clock_.Advance(absl::Seconds(6));
  SyncResult third = Sync("a", {.whole = true});
  EXPECT_FALSE(third.seed_to_trigger.has_value());  // no live seed left
  EXPECT_FALSE(third.seed_active);
  Announce("s3", HostType::kSeed);
  SyncResult fourth = Sync("a", {.whole = true});
  ASSERT_TRUE(fourth.seed_to_trigger.has_value());
  EXPECT_EQ(fourth.seed_to_trigger->seed.id, "s3");
}

TEST_F(SchedulerStateTest, SeedsOwnCallsNeverTrigger) {
  Announce("s1", HostType::kSeed);
  Announce("s2", HostType::kSeed);
  SyncResult s = Sync("s2", {.whole = true});
  EXPECT_FALSE(s.seed_to_trigger.has_value());
  EXPECT_TRUE(s.seed_active);
  // A seed fetching the task on its own is the task's seed: normal hosts trigger nothing more.
  Announce("a");
  SyncResult a = Sync("a", {.whole = true});
  EXPECT_FALSE(a.seed_to_trigger.has_value());
  EXPECT_THAT(ParentIds(a), ElementsAre("s2"));
  EXPECT_EQ(state_.Counters().seed_triggers, 0u);
}

TEST_F(SchedulerStateTest, RangeReadersTriggerNoSeedAWholeDownloadDoes) {
  Announce("s1", HostType::kSeed);
  Announce("a");
  Announce("b");
  // Lazy readers: the task exists, nobody downloads all of it, no seed fetches it.
  SyncResult a = Sync("a", {.want_origin = {2}});
  EXPECT_FALSE(a.seed_to_trigger.has_value());
  EXPECT_FALSE(a.seed_active);
  EXPECT_THAT(a.origin_granted, ElementsAre(2));
  EXPECT_FALSE(Sync("b", {.want_origin = {5}}).seed_to_trigger.has_value());
  EXPECT_FALSE(Sync("a").seed_active);
  EXPECT_EQ(Stat().seed_host_id, "");
  EXPECT_EQ(state_.Counters().seed_triggers, 0u);
  // b starts a whole download of the same task: now the seed is asked, once.
  SyncResult b = Sync("b", {.whole = true});
  ASSERT_TRUE(b.seed_to_trigger.has_value());
  EXPECT_EQ(b.seed_to_trigger->seed.id, "s1");
  EXPECT_TRUE(b.seed_active);
  EXPECT_TRUE(Sync("a").seed_active);  // the range readers see it too
  EXPECT_FALSE(Sync("b", {.whole = true}).seed_to_trigger.has_value());
  EXPECT_EQ(state_.Counters().seed_triggers, 1u);
}

TEST_F(SchedulerStateTest, ASeedReadingRangesIsNotTheTasksSeedOneHoldingItIs) {
  Announce("s1", HostType::kSeed);
  Announce("a");
  Sync("s1", {.want_origin = {1}});  // its own proxy's lazy reader
  EXPECT_EQ(Stat().seed_host_id, "");
  EXPECT_FALSE(Sync("a").seed_active);
  // A seed telling a restarted scheduler that it holds a task is that task's seed again.
  Sync("s1", {.task = MakeTask('b'), .complete = true});
  EXPECT_EQ(Stat('b').seed_host_id, "s1");
  EXPECT_TRUE(Sync("a", {.task = MakeTask('b')}).seed_active);
}

TEST_F(SchedulerStateTest, AnnounceSaysWhetherTheHostIsNew) {
  ASSERT_OK_AND_ASSIGN(AnnounceResult first, state_.AnnounceHost(MakeHost("a")));
  EXPECT_TRUE(first.new_host);
  ASSERT_OK_AND_ASSIGN(AnnounceResult again, state_.AnnounceHost(MakeHost("a")));
  EXPECT_FALSE(again.new_host);
  // Dropped for silence, it is new again: the scheduler forgot what it holds.
  clock_.Advance(absl::Seconds(15));
  ASSERT_OK_AND_ASSIGN(AnnounceResult after_ttl, state_.AnnounceHost(MakeHost("a")));
  EXPECT_TRUE(after_ttl.new_host);
  ASSERT_OK(state_.LeaveHost("a"));
  ASSERT_OK_AND_ASSIGN(AnnounceResult after_leave, state_.AnnounceHost(MakeHost("a")));
  EXPECT_TRUE(after_leave.new_host);
}

TEST_F(SchedulerStateTest, NoSeedForATaskSomeoneHoldsWhole) {
  Announce("s1", HostType::kSeed);
  Announce("a");
  Announce("b");
  EXPECT_FALSE(Sync("a", {.complete = true, .whole = true}).seed_to_trigger.has_value());
  EXPECT_FALSE(Sync("b", {.whole = true}).seed_to_trigger.has_value());
}

TEST_F(SchedulerStateTest, FailedTriggerChoosesAnotherSeed) {
  Announce("s1", HostType::kSeed);
  Announce("s2", HostType::kSeed);
  Announce("a");
  SyncResult first = Sync("a", {.whole = true});
  ASSERT_TRUE(first.seed_to_trigger.has_value());
  const std::string chosen = first.seed_to_trigger->seed.id;
  state_.SeedTriggerFailed(first.seed_to_trigger->task.task_id, chosen);
  EXPECT_EQ(Stat().seed_host_id, "");
  SyncResult second = Sync("a", {.whole = true});
  ASSERT_TRUE(second.seed_to_trigger.has_value());
  EXPECT_NE(second.seed_to_trigger->seed.id, chosen);
  state_.SeedTriggerFailed(second.seed_to_trigger->task.task_id, second.seed_to_trigger->seed.id);
  EXPECT_FALSE(Sync("a", {.whole = true}).seed_to_trigger.has_value());  // both failed recently
  clock_.Advance(absl::Seconds(10));
  Announce("a");
  Announce("s1", HostType::kSeed);
  Announce("s2", HostType::kSeed);
  clock_.Advance(absl::Seconds(10));
  Announce("a");
  Announce("s1", HostType::kSeed);
  Announce("s2", HostType::kSeed);
  clock_.Advance(absl::Seconds(10));
  SyncResult later = Sync("a", {.whole = true});
  ASSERT_TRUE(later.seed_to_trigger.has_value());
  EXPECT_EQ(later.seed_to_trigger->seed.id, chosen);
  EXPECT_EQ(state_.Counters().seed_trigger_failures, 2u);
}

TEST(RendezvousSeed, StableWhenOtherSeedsComeAndGo) {
  std::vector<Host> hosts;
  for (int i = 0; i < 5; ++i) hosts.push_back(MakeHost(StrCat("10.0.0.", i, "-seed")));
  auto choose = [&hosts](const std::string& task, int count) {
    std::vector<const Host*> seeds;
    for (int i = 0; i < count; ++i) seeds.push_back(&hosts[i]);
    return RendezvousSeed(task, seeds)->id;
  };
  EXPECT_EQ(RendezvousSeed("x", {}), nullptr);
  std::vector<int> per_seed(5, 0);
  int moved = 0;
  for (int t = 0; t < 400; ++t) {
    const std::string task = MakeTask().task_id.substr(4) + StrCat(1000 + t);
    const std::string with4 = choose(task, 4);
    const std::string with5 = choose(task, 5);
    if (with4 != with5) {
      EXPECT_EQ(with5, hosts[4].id);  // only tasks of the new seed move
      ++moved;
    }
    ++per_seed[std::find_if(hosts.begin(), hosts.end(),
                            [&](const Host& h) { return h.id == with5; }) -
               hosts.begin()];
    // Order of the list does not matter.
    std::vector<const Host*> reversed;
    for (int i = 4; i >= 0; --i) reversed.push_back(&hosts[i]);
    EXPECT_EQ(RendezvousSeed(task, reversed)->id, with5);
  }
  EXPECT_GT(moved, 40);  // about 1/5 of 400
  EXPECT_LT(moved, 130);
  for (int n : per_seed) EXPECT_GT(n, 40);  // about 80 each
}

TEST_F(SchedulerStateTest, ParentsScoredByFreeCapacity) {
  Host idle = MakeHost("idle");
  Host busy = MakeHost("busy");
  busy.upload_active = 9;
  Announce(idle);
  Announce(busy);
  Announce("child");
  Sync("busy", {.pieces = {Origin(0)}});
  Sync("idle", {.pieces = {Origin(1)}});
  SyncResult child = Sync("child");
  EXPECT_THAT(ParentIds(child), ElementsAre("idle", "busy"));
  // 0.4 * free + 0.4 * 1/8 + 0.2 * 0 (no idc, no location).
  EXPECT_NEAR(child.parents[0].score, 0.4 * 1.0 + 0.4 / 8, 1e-9);
  EXPECT_NEAR(child.parents[1].score, 0.4 * 0.1 + 0.4 / 8, 1e-9);
}

TEST_F(SchedulerStateTest, ParentsScoredByProgress) {
  Announce("few");
  Announce("many");
  Announce("child");
  Sync("few", {.pieces = {Origin(0)}});
  Sync("many", {.pieces = {Origin(1), Origin(2), Origin(3), Origin(4)}});
  EXPECT_THAT(ParentIds(Sync("child")), ElementsAre("many", "few"));
}

TEST_F(SchedulerStateTest, ParentsScoredByLocality) {
  Host child = MakeHost("child");
  child.idc = "hz";
  child.location = "cn|zj|hz|z1|c1";
  Host near = MakeHost("near");
  near.idc = "hz";
  near.location = "cn|zj|hz|z2";
  Host far = MakeHost("far");
  far.idc = "sh";
  far.location = "cn|sh";
  Announce(child);
  Announce(near);
  Announce(far);
  Sync("far", {.pieces = {Origin(0)}});
  Sync("near", {.pieces = {Origin(1)}});
  SyncResult result = Sync("child");
  EXPECT_THAT(ParentIds(result), ElementsAre("near", "far"));
  EXPECT_NEAR(LocalityScore(near, child), 0.5 + 0.5 * 3 / 5, 1e-9);
  EXPECT_NEAR(LocalityScore(far, child), 0.5 * 1 / 5, 1e-9);
  EXPECT_EQ(LocalityScore(MakeHost("x"), MakeHost("y")), 0.0);
  EXPECT_NEAR(result.parents[0].score, 0.4 + 0.4 / 8 + 0.2 * (0.5 + 0.3), 1e-9);
}

TEST_F(SchedulerStateTest, ParentLimitKeepsTheBestAndAHolderOfEachRefusedPiece) {
  SchedulerState state({.candidate_parent_limit = 2, .clock = &clock_});
  for (int i = 0; i < 4; ++i) {
    Host host = MakeHost(StrCat("p", i));
    host.upload_active = i;  // p0 best ... p3 worst
    ASSERT_OK(state.AnnounceHost(host));
    ASSERT_OK(state.SyncTask({.host_id = host.id, .task = MakeTask(), .pieces = {Origin(i)}}));
  }
  ASSERT_OK(state.AnnounceHost(MakeHost("child")));
  ASSERT_OK_AND_ASSIGN(SyncResult plain, state.SyncTask({.host_id = "child", .task = MakeTask()}));
  EXPECT_THAT(ParentIds(plain), ElementsAre("p0", "p1"));
  ASSERT_OK_AND_ASSIGN(
      SyncResult wants,
      state.SyncTask({.host_id = "child", .task = MakeTask(), .want_origin = {3, 5}}));
  EXPECT_THAT(wants.origin_granted, ElementsAre(5));
  EXPECT_THAT(ParentIds(wants), ElementsAre("p0", "p1", "p3"));
}

TEST_F(SchedulerStateTest, FailedParentsAreBlockedForTheChildAndPenalizedForAll) {
  Host good = MakeHost("good");
  good.upload_active = 5;  // scores below "bad" until "bad" is penalized
  Announce(good);
  Announce("bad");
  Announce("c");
  Announce("d");
  Sync("bad", {.pieces = {Origin(0), Origin(1)}});
  Sync("good", {.pieces = {Origin(1)}});
  ASSERT_THAT(ParentIds(Sync("d")), ElementsAre("bad", "good"));
  SyncResult c = Sync("c", {.want_origin = {0}, .failed_parents = {"bad", "unknown-host"}});
  EXPECT_THAT(ParentIds(c), ElementsAre("good"));
  // Only the blocked parent holds piece 0: for c, nobody does.
  EXPECT_THAT(c.origin_granted, ElementsAre(0));
  EXPECT_THAT(ParentIds(Sync("c")), ElementsAre("good"));
  // c fetches piece 0 from the origin now, so it is a parent too (see LeaseHolderIsAParent...).
  EXPECT_THAT(ParentIds(Sync("d")), ElementsAre("c", "good", "bad"));
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Seconds(10));
    for (const char* id : {"good", "bad", "c", "d"}) Announce(id);
  }
  EXPECT_THAT(ParentIds(Sync("d")), ElementsAre("bad", "good"));  // penalty over
  EXPECT_THAT(ParentIds(Sync("c")), ElementsAre("good"));         // block list stays
}

TEST_F(SchedulerStateTest, FirstOriginCrcWins) {
  Announce("a");
  Announce("b");
  Announce("c");
  Sync("a", {.pieces = {{.number = 2, .crc32c = 5, .source = PieceSource::kPeer}}});
  EXPECT_FALSE(BitmapHas(Sync("a").crc32c_known, 2));  // peer copies set nothing
  Sync("b", {.pieces = {Origin(2, 7)}});
  Sync("c", {.pieces = {Origin(2, 9)}});  // logged and ignored
  SyncResult result = Sync("c");
  EXPECT_TRUE(BitmapHas(result.crc32c_known, 2));
  EXPECT_FALSE(BitmapHas(result.crc32c_known, 1));
  ASSERT_EQ(result.crc32c.size(), kPieces);
  EXPECT_EQ(result.crc32c[2], 7u);
}

TEST_F(SchedulerStateTest, SweepDropsIdleTasks) {
  Announce("a");
  Sync("a");
  ASSERT_OK(state_.LeaveTask("a", MakeTask().task_id));
  state_.Sweep();
  EXPECT_EQ(state_.Counters().tasks, 1u);  // kept for host_ttl
  clock_.Advance(absl::Seconds(15));
  state_.Sweep();
  EXPECT_EQ(state_.Counters().tasks, 0u);
  EXPECT_THAT(state_.StatTask(MakeTask().task_id), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(SchedulerStateTest, StatTaskLeavesOutOriginHeaders) {
  Announce("a");
  Sync("a", {.pieces = {Origin(0)}});
  TaskStat stat = Stat();
  EXPECT_EQ(stat.task.url, MakeTask().url);
  EXPECT_EQ(stat.task.content_length, MakeTask().content_length);
  EXPECT_THAT(stat.task.origin_headers, IsEmpty());
  ASSERT_EQ(stat.holders.size(), 1u);
  EXPECT_EQ(stat.holders[0].pieces, 1u);
  EXPECT_FALSE(stat.holders[0].complete);
}

TEST_F(SchedulerStateTest, UnknownHostIsFailedPrecondition) {
  EXPECT_THAT(state_.SyncTask({.host_id = "ghost", .task = MakeTask()}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("host not announced")));
}

TEST_F(SchedulerStateTest, BadHostsAreInvalidArgument) {
  Host host = MakeHost("a");
  host.id = "";
  EXPECT_THAT(state_.AnnounceHost(host),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host.id")));
  host = MakeHost("a");
  host.ip = "";
  EXPECT_THAT(state_.AnnounceHost(host),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host.ip")));
  host = MakeHost("a");
  host.upload_port = 0;
  EXPECT_THAT(state_.AnnounceHost(host),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host.upload_port")));
  host.upload_port = 70000;
  EXPECT_THAT(state_.AnnounceHost(host),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host.upload_port")));
  EXPECT_THAT(state_.LeaveHost(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host_id")));
}

TEST_F(SchedulerStateTest, BadSyncRequestsAreInvalidArgument) {
  Announce("a");
  auto sync = [this](SyncRequest request) {
    if (request.host_id.empty()) request.host_id = "a";
    return state_.SyncTask(request).status();
  };
  auto invalid = [](const std::string& text) {
    return StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(text));
  };
  TaskInfo task = MakeTask();
  task.task_id = std::string(64, 'A');
  EXPECT_THAT(sync({.task = task}), invalid("task.task_id"));
  task.task_id = "abc";
  EXPECT_THAT(sync({.task = task}), invalid("task.task_id"));
  task = MakeTask();
  task.piece_size = 0;
  EXPECT_THAT(sync({.task = task}), invalid("task.piece_size"));
  task = MakeTask();
  task.url = "";
  EXPECT_THAT(sync({.task = task}), invalid("task.url"));
  task = MakeTask();
  task.piece_size = 1;
  EXPECT_THAT(sync({.task = task}), invalid("task.content_length"));
  EXPECT_THAT(state_.SyncTask({.task = MakeTask()}).status(), invalid("host_id"));
  EXPECT_THAT(sync({.task = MakeTask(), .pieces = {Origin(0), Origin(kPieces)}}),
              invalid("pieces[1].number 8"));
  EXPECT_THAT(sync({.task = MakeTask(), .want_origin = {kPieces}}), invalid("want_origin[0]"));
  EXPECT_THAT(sync({.task = MakeTask(), .released = {1, 99}}), invalid("released[1]"));
  EXPECT_THAT(sync({.task = MakeTask(), .failed_parents = {""}}), invalid("failed_parents[0]"));
  // Nothing was registered by the bad calls.
  EXPECT_EQ(state_.Counters().tasks, 0u);
  // A known task with another length or piece size.
  ASSERT_OK(sync({.task = MakeTask()}));
  task = MakeTask();
  task.content_length += 1;
  EXPECT_THAT(sync({.task = task}), invalid(StrCat("task.content_length ", task.content_length)));
  EXPECT_THAT(sync({.task = task}),
              invalid(StrCat("known content_length ", MakeTask().content_length)));
  task = MakeTask();
  task.piece_size *= 2;
  EXPECT_THAT(sync({.task = task}),
              AllOf(invalid("task.piece_size 8388608"), invalid("piece_size 4194304")));
  EXPECT_THAT(state_.StatTask("nope"), invalid("task_id"));
  EXPECT_THAT(state_.LeaveTask("a", "nope"), invalid("task_id"));
  EXPECT_THAT(state_.StatTask(MakeTask('c').task_id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(MakeTask('c').task_id)));
}

TEST_F(SchedulerStateTest, EmptyTaskHasNoPieces) {
  Announce("a");
  TaskInfo task = MakeTask();
  task.content_length = 0;
  SyncResult result = Sync("a", {.task = task, .complete = true});
  EXPECT_THAT(result.crc32c, IsEmpty());
  EXPECT_THAT(result.crc32c_known, IsEmpty());
}

}  // namespace
}  // namespace naiad::scheduler
