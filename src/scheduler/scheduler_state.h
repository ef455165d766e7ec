// File: scheduler/scheduler_state.h
//
// The scheduler's whole view of the swarm, without any RPC: which hosts are alive, which tasks
// they hold pieces of, who may fetch which piece from the origin (leases), which seed peer was
// asked to fetch a task, and which parents to offer a host. The gRPC service
// (scheduler/scheduler_service.h) only translates messages to and from these calls.
//
//   SchedulerState state({.clock = &clock});
//   RETURN_IF_ERROR(state.AnnounceHost(host));
//   ASSIGN_OR_RETURN(SyncResult result, state.SyncTask({.host_id = host.id, .task = info,
//                                                       .want_origin = {0, 1}}));
//   if (result.seed_to_trigger) dispatcher.Enqueue(*result.seed_to_trigger);
//   // result.parents: best first; result.origin_granted: pieces this host may fetch itself.
//
// Origin leases are the one-fetch-per-piece guarantee: a piece is granted to at most one live
// host at a time, and only while no live host holds it. A lease ends when its holder reports the
// piece, releases it, leaves the task, dies, or `lease_timeout` after the grant or after the last
// call of its holder that listed the piece in `fetching` (renewal); the last two count as
// "expired" (handed over). Time comes from the injected Clock; hosts and leases expire lazily on
// every call and in Sweep(), which the server runs periodically.
//
// A seed peer is chosen for a task once a host syncs it with `whole` (it downloads all of it);
// hosts reading ranges only never make a seed fetch the whole task from the origin.
//
// Everything lives in memory: a restarted scheduler answers "host not announced" until hosts
// announce again (AnnounceHost then says `new_host`) and resend their pieces and the tasks they
// hold.
//
// Thread-safe: one mutex guards all state; no call blocks on anything but it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/env.h"

namespace naiad::scheduler {

enum class HostType { kNormal, kSeed };

// A peer daemon as it announces itself (the proto's Host).
struct Host {
  std::string id;  // "<ip>-<hostname>", "-seed" appended for a seed peer
  std::string hostname;
  std::string ip;  // where the upload service is reached
  uint32_t upload_port = 0;
  uint32_t proxy_port = 0;
  HostType type = HostType::kNormal;
  uint32_t upload_active = 0;  // uploads being served now
  uint32_t upload_limit = 0;   // most uploads at once (0: unknown)
  uint64_t upload_rate_limit = 0;
  std::string idc;
  std::string location;  // "country|province|city|zone|cluster"
};

// What a task is (the proto's TaskInfo).
struct TaskInfo {
  std::string task_id;  // 64 lowercase hex digits
  std::string url;
  uint64_t content_length = 0;
  uint32_t piece_size = 0;
  std::string digest;                                 // "sha256:<hex>" or empty
  std::map<std::string, std::string> origin_headers;  // for the seed's origin fetch only

  // ceil(content_length / piece_size); piece_size must not be 0.
  uint32_t piece_count() const;
};

enum class PieceSource { kOrigin, kPeer };

struct PieceReport {
  uint32_t number = 0;
  uint32_t crc32c = 0;
  PieceSource source = PieceSource::kOrigin;
  std::string parent_id;  // for kPeer
  uint64_t cost_us = 0;
};

struct SyncRequest {
  std::string host_id;
  TaskInfo task;
  std::vector<PieceReport> pieces;  // gained since the last call (repeats are harmless)
  bool complete = false;            // the host holds every piece
  std::vector<uint32_t> want_origin;
  std::vector<std::string> failed_parents;
  std::vector<uint32_t> released;  // leases given back unfetched
  // At most this many of want_origin are granted, the first eligible in the order given (0: all).
  uint32_t max_origin_grants = 0;
  // Pieces the host is fetching from the origin now: those of its leases are renewed.
  std::vector<uint32_t> fetching;
  bool whole = false;  // the host downloads the whole task, not only ranges
};

struct Parent {
  std::string host_id;
  std::string ip;
  uint32_t upload_port = 0;
  HostType type = HostType::kNormal;
  std::string bitmap;  // bit n (byte n / 8, most significant bit first) is piece n
  bool complete = false;
  double score = 0;
  std::string fetching;  // pieces it holds origin leases on, as `bitmap`
};

struct AnnounceResult {
  // The host was not known (first announce, scheduler restart, or dropped after a silence): the
  // scheduler knows of no task it holds.
  bool new_host = false;
};

// A seed peer to ask to fetch a task (the service does it, off the RPC thread).
struct SeedDecision {
  Host seed;
  TaskInfo task;
};

struct SyncResult {
  std::vector<Parent> parents;  // best first
  std::vector<uint32_t> origin_granted;
  absl::Duration lease_timeout = absl::ZeroDuration();
  std::vector<uint32_t> crc32c;     // one per piece; meaningful where crc32c_known has the bit
  std::string crc32c_known;         // bitmap, as Parent::bitmap
  bool origin_in_progress = false;  // another host holds a live lease on a piece of the task
  bool seed_active = false;         // a live seed peer was asked to fetch the task
  std::optional<SeedDecision> seed_to_trigger;
};

struct TaskStat {
  TaskInfo task;  // origin_headers left out
  struct Holder {
    std::string host_id;
    uint32_t pieces = 0;
    bool complete = false;
  };
  std::vector<Holder> holders;  // sorted by host id
  uint64_t origin_leases_granted = 0;
  uint64_t origin_leases_expired = 0;
  std::vector<uint32_t> leased_now;  // sorted
  std::string seed_host_id;
};

// Gauges and counters for /metrics.
struct SchedulerCounters {
  uint64_t hosts = 0;
  uint64_t seed_hosts = 0;
  uint64_t tasks = 0;
  uint64_t leases_active = 0;
  uint64_t announce_calls = 0;
  uint64_t sync_calls = 0;
  uint64_t hosts_expired = 0;  // dropped for silence (not LeaveHost)
  uint64_t leases_granted = 0;
  uint64_t leases_expired = 0;  // timed out or holder gone
  uint64_t leases_renewed = 0;  // deadlines moved by the holder's `fetching`
  uint64_t seed_triggers = 0;
  uint64_t seed_trigger_failures = 0;
};

struct SchedulerOptions {
  absl::Duration host_ttl = absl::Seconds(15);
  absl::Duration lease_timeout = absl::Seconds(30);
  int candidate_parent_limit = 8;
  // A host some child reported as failed loses this much score for this long.
  double failure_penalty = 0.5;
  absl::Duration failure_penalty_time = absl::Seconds(30);
  // A seed whose trigger failed is not chosen again for that task for this long.
  absl::Duration seed_retry_time = absl::Seconds(30);
  Clock* clock = nullptr;  // nullptr: Clock::Real()
};

// Whether bit `n` of a piece bitmap is set (false past its end).
bool BitmapHas(std::string_view bitmap, uint32_t n);

// The parent score's locality term in [0, 1]: 0.5 for the same non-empty idc plus 0.5 times the
// common prefix of the "|"-separated locations over 5 elements.
double LocalityScore(const Host& a, const Host& b);

// The highest-scoring seed for `task_id` by rendezvous hashing, or nullptr if `seeds` is empty.
// A task keeps its seed as long as that seed is alive, whatever other seeds come and go.
const Host* RendezvousSeed(std::string_view task_id, const std::vector<const Host*>& seeds);

class SchedulerState {
 public:
  explicit SchedulerState(SchedulerOptions options);
  SchedulerState(const SchedulerState&) = delete;
  SchedulerState& operator=(const SchedulerState&) = delete;

  // Registers or refreshes a host. InvalidArgument for an empty id or ip, or a bad port.
  absl::StatusOr<AnnounceResult> AnnounceHost(const Host& host);
  // Drops a host: its leases are handed over (expired), it stops being a parent. An unknown
  // host is not an error.
  absl::Status LeaveHost(std::string_view host_id);
  // See the file comment and SyncTaskRequest in api/naiad/scheduler/v1/scheduler.proto.
  // FailedPrecondition "host not announced" for an unknown (or expired) host; InvalidArgument
  // naming the field for bad input, or when the task's length or piece size differ from what
  // the scheduler knows of it.
  absl::StatusOr<SyncResult> SyncTask(const SyncRequest& request);
  // The host no longer holds or downloads the task; its leases on it are released.
  absl::Status LeaveTask(std::string_view host_id, std::string_view task_id);
  // NotFound for a task nobody registered (or that was dropped).
  absl::StatusOr<TaskStat> StatTask(std::string_view task_id);
  // The seed chosen in a SyncResult could not be reached: forget it, so that the next SyncTask
  // of the task chooses again (another seed, until seed_retry_time passes).
  void SeedTriggerFailed(std::string_view task_id, std::string_view seed_host_id);
  // Expires silent hosts and timed-out leases, and drops tasks nobody has touched for host_ttl
  // that no host holds.
  void Sweep();

  SchedulerCounters Counters() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  struct HostEntry {
    Host host;
    absl::Time expires_at;                              // not heard from by then: dropped
    absl::Time penalized_until = absl::InfinitePast();  // reported failed by a child
    absl::flat_hash_set<std::string> tasks;             // tasks it is a member of
    absl::flat_hash_set<std::string> seeded_tasks;      // tasks it was chosen to seed
  };
  // One member host's pieces of a task.
  struct Holding {
    std::string bitmap;
    uint32_t pieces = 0;
    bool complete = false;
  };
  struct Lease {
    std::string host_id;
    absl::Time expires_at;
  };
  struct TaskEntry {
    TaskInfo info;
    uint32_t piece_count = 0;
    // Invariant: every member and every lease holder is a host in hosts_.
    absl::flat_hash_map<std::string, Holding> members;
    absl::flat_hash_map<uint32_t, Lease> leases;  // by piece: at most one per piece
    // Parents each child reported as failed: never offered to that child again.
    absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> blocked;
    std::vector<uint32_t> crc32c;
    std::string crc32c_known;
    std::string seed_host_id;  // empty: no seed is fetching the task
    absl::flat_hash_map<std::string, absl::Time> seed_failed_until;
    uint64_t leases_granted = 0;
    uint64_t leases_expired = 0;
    absl::Time last_active;
  };

  absl::Time Now() const { return options_.clock->Now(); }
  void ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `silent`: dropped for not announcing itself (counted), rather than by LeaveHost.
  void DropHostLocked(const std::string& host_id, bool silent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TouchHostLocked(HostEntry& entry, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndLeaseLocked(TaskEntry& task, uint32_t piece, bool expired)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LeaveTaskLocked(TaskEntry& task, const std::string& host_id, bool leases_expired)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<TaskEntry*> FindOrCreateTaskLocked(const TaskInfo& info, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordFailedParentsLocked(TaskEntry& task, const SyncRequest& request, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordPiecesLocked(TaskEntry& task, const SyncRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseLeasesLocked(TaskEntry& task, const SyncRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RenewLeasesLocked(TaskEntry& task, const SyncRequest& request, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<uint32_t> GrantLeasesLocked(TaskEntry& task, const SyncRequest& request,
                                          absl::Time now, std::vector<uint32_t>* held_elsewhere)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<SeedDecision> ChooseSeedLocked(TaskEntry& task, const HostEntry& caller, bool whole,
                                               absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<Parent> SelectParentsLocked(const TaskEntry& task, const HostEntry& child,
                                          const std::vector<uint32_t>& held_elsewhere,
                                          absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `holding` is null for a seed that has not synced the task yet.
  double ScoreLocked(const TaskEntry& task, const HostEntry& parent, const Holding* holding,
                     const HostEntry& child, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FillResponseLocked(const TaskEntry& task, const std::string& host_id,
                          SyncResult& result) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SchedulerOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, HostEntry> hosts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, TaskEntry> tasks_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::string> seed_ids_ ABSL_GUARDED_BY(mu_);
  // Ordered by deadline, so expiry looks only at what is due.
  absl::btree_set<std::pair<absl::Time, std::string>> host_deadlines_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::tuple<absl::Time, std::string, uint32_t>> lease_deadlines_
      ABSL_GUARDED_BY(mu_);
  SchedulerCounters counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace naiad::scheduler
