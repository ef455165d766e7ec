#include "scheduler/scheduler_state.h"

#include <algorithm>

#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "piece/piece_store.h"

namespace naiad::scheduler {
namespace {

// A bigger task would make SyncTask answers (a crc32c per piece) needlessly large; with 16 MiB
// pieces it is 2 TiB.
constexpr uint64_t kMaxPieceCount = uint64_t{1} << 17;
constexpr int kLocationDepth = 5;
constexpr double kCapacityWeight = 0.4;
constexpr double kProgressWeight = 0.4;
constexpr double kLocalityWeight = 0.2;
// The free-capacity term of a host that did not say how many uploads it allows.
constexpr double kUnknownCapacity = 0.5;

absl::Status HostNotAnnounced(std::string_view host_id) {
  return absl::FailedPreconditionError(StrCat("host not announced: ", host_id));
}

std::string EmptyBitmap(uint32_t bits) { return std::string((bits + 7) / 8, '\0'); }

void SetBit(std::string& bitmap, uint32_t n) {
  bitmap[n / 8] = static_cast<char>(static_cast<uint8_t>(bitmap[n / 8]) | (0x80u >> (n % 8)));
}

std::string FullBitmap(uint32_t bits) {
  std::string bitmap = EmptyBitmap(bits);
  for (uint32_t n = 0; n < bits; ++n) SetBit(bitmap, n);
  return bitmap;
}

absl::Status ValidateTaskId(std::string_view field, std::string_view task_id) {
  if (piece::IsValidTaskId(task_id)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      StrCat(field, " \"", task_id.substr(0, 80), "\" is not 64 lowercase hex digits"));
}

absl::Status ValidateHostId(std::string_view field, std::string_view host_id) {
  if (host_id.empty()) return absl::InvalidArgumentError(StrCat(field, " is empty"));
  return absl::OkStatus();
}

absl::Status ValidateHost(const Host& host) {
  RETURN_IF_ERROR(ValidateHostId("host.id", host.id));
  if (host.ip.empty()) return absl::InvalidArgumentError("host.ip is empty");
  if (host.upload_port == 0 || host.upload_port > 65535) {
    return absl::InvalidArgumentError(
        StrCat("host.upload_port ", host.upload_port, " is not a port (1-65535)"));
  }
  if (host.proxy_port > 65535) {
    return absl::InvalidArgumentError(
        StrCat("host.proxy_port ", host.proxy_port, " is not a port (0-65535)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTaskInfo(const TaskInfo& task) {
  RETURN_IF_ERROR(ValidateTaskId("task.task_id", task.task_id));
  if (task.url.empty()) return absl::InvalidArgumentError("task.url is empty");
  if (task.piece_size == 0) return absl::InvalidArgumentError("task.piece_size is 0");
  const uint64_t pieces = (task.content_length + task.piece_size - 1) / task.piece_size;
  if (pieces > kMaxPieceCount) {
    return absl::InvalidArgumentError(StrCat("task.content_length ", task.content_length,
                                             " with task.piece_size ", task.piece_size, " makes ",
                                             pieces, " pieces, more than ", kMaxPieceCount));
  }
  return absl::OkStatus();
}

absl::Status ValidatePieceNumbers(std::string_view field, const std::vector<uint32_t>& numbers,
                                  uint32_t piece_count) {
  for (size_t i = 0; i < numbers.size(); ++i) {
    if (numbers[i] >= piece_count) {
      return absl::InvalidArgumentError(StrCat(field, "[", i, "] ", numbers[i],
                                               " is not a piece (the task has ", piece_count,
                                               " pieces)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSyncRequest(const SyncRequest& request) {
  RETURN_IF_ERROR(ValidateHostId("host_id", request.host_id));
  RETURN_IF_ERROR(ValidateTaskInfo(request.task));
  const uint32_t count = request.task.piece_count();
  for (size_t i = 0; i < request.pieces.size(); ++i) {
    if (request.pieces[i].number >= count) {
      return absl::InvalidArgumentError(StrCat("pieces[", i, "].number ", request.pieces[i].number,
                                               " is not a piece (the task has ", count,
                                               " pieces)"));
    }
  }
  RETURN_IF_ERROR(ValidatePieceNumbers("want_origin", request.want_origin, count));
  RETURN_IF_ERROR(ValidatePieceNumbers("released", request.released, count));
  RETURN_IF_ERROR(ValidatePieceNumbers("fetching", request.fetching, count));
  for (size_t i = 0; i < request.failed_parents.size(); ++i) {
    RETURN_IF_ERROR(ValidateHostId(StrCat("failed_parents[", i, "]"), request.failed_parents[i]));
  }
  return absl::OkStatus();
}

// The "|"-separated elements of a location, at most kLocationDepth of them.
std::vector<std::string_view> LocationElements(std::string_view location) {
  std::vector<std::string_view> elements;
  while (!location.empty() && elements.size() < kLocationDepth) {
    const size_t bar = location.find('|');
    elements.push_back(location.substr(0, bar));
    location = bar == std::string_view::npos ? std::string_view() : location.substr(bar + 1);
  }
  return elements;
}

// A stable 64-bit hash (FNV-1a, then a splitmix64 finalizer to spread nearby inputs): rendezvous
// choices must agree across restarts and builds, which absl::Hash does not promise.
uint64_t StableHash(std::string_view a, std::string_view b) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto add = [&h](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  };
  add(a);
  add(std::string_view("\0", 1));
  add(b);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

double FreeCapacity(const Host& host) {
  if (host.upload_limit == 0) return kUnknownCapacity;
  const double used = static_cast<double>(host.upload_active) / host.upload_limit;
  return std::max(0.0, 1.0 - used);
}

}  // namespace

uint32_t TaskInfo::piece_count() const {
  return static_cast<uint32_t>((content_length + piece_size - 1) / piece_size);
}

bool BitmapHas(std::string_view bitmap, uint32_t n) {
  if (n / 8 >= bitmap.size()) return false;
  return (static_cast<uint8_t>(bitmap[n / 8]) & (0x80u >> (n % 8))) != 0;
}

double LocalityScore(const Host& a, const Host& b) {
  double score = (!a.idc.empty() && a.idc == b.idc) ? 0.5 : 0.0;
  const std::vector<std::string_view> x = LocationElements(a.location);
  const std::vector<std::string_view> y = LocationElements(b.location);
  size_t common = 0;
  while (common < x.size() && common < y.size() && x[common] == y[common]) ++common;
  return score + 0.5 * static_cast<double>(common) / kLocationDepth;
}

const Host* RendezvousSeed(std::string_view task_id, const std::vector<const Host*>& seeds) {
  const Host* best = nullptr;
  uint64_t best_hash = 0;
  for (const Host* seed : seeds) {
    const uint64_t h = StableHash(task_id, seed->id);
    if (best == nullptr || h > best_hash || (h == best_hash && seed->id < best->id)) {
      best = seed;
      best_hash = h;
    }
  }
  return best;
}

SchedulerState::SchedulerState(SchedulerOptions options)
    : options_([&options] {
        if (options.clock == nullptr) options.clock = Clock::Real();
        if (options.candidate_parent_limit < 1) options.candidate_parent_limit = 1;
        return options;
      }()) {}

absl::StatusOr<AnnounceResult> SchedulerState::AnnounceHost(const Host& host) {
  RETURN_IF_ERROR(ValidateHost(host));
  absl::MutexLock lock(&mu_);
  const absl::Time now = Now();
  ExpireLocked(now);
  ++counters_.announce_calls;
  auto [it, inserted] = hosts_.try_emplace(host.id);
  HostEntry& entry = it->second;
  if (inserted) {
    LogInfo("host announced",
            {{"host", host.id}, {"ip", host.ip}, {"seed", host.type == HostType::kSeed}});
  } else {
    host_deadlines_.erase({entry.expires_at, host.id});
  }
  entry.host = host;
  entry.expires_at = now + options_.host_ttl;
  host_deadlines_.insert({entry.expires_at, host.id});
  if (host.type == HostType::kSeed) {
    seed_ids_.insert(host.id);
  } else {
    seed_ids_.erase(host.id);
  }
  return AnnounceResult{.new_host = inserted};
}

absl::Status SchedulerState::LeaveHost(std::string_view host_id) {
  RETURN_IF_ERROR(ValidateHostId("host_id", host_id));
  absl::MutexLock lock(&mu_);
  ExpireLocked(Now());
  DropHostLocked(std::string(host_id), /*silent=*/false);
  return absl::OkStatus();
}

absl::StatusOr<SyncResult> SchedulerState::SyncTask(const SyncRequest& request) {
  RETURN_IF_ERROR(ValidateSyncRequest(request));
  absl::MutexLock lock(&mu_);
  const absl::Time now = Now();
  ExpireLocked(now);
  ++counters_.sync_calls;
  auto host_it = hosts_.find(request.host_id);
  if (host_it == hosts_.end()) return HostNotAnnounced(request.host_id);
  HostEntry& caller = host_it->second;
  TouchHostLocked(caller, now);
  ASSIGN_OR_RETURN(TaskEntry * task, FindOrCreateTaskLocked(request.task, now));
  task->last_active = now;
  caller.tasks.insert(task->info.task_id);
  if (auto [it, inserted] = task->members.try_emplace(request.host_id); inserted) {
    it->second.bitmap = EmptyBitmap(task->piece_count);
  }
  RecordFailedParentsLocked(*task, request, now);
  RecordPiecesLocked(*task, request);
  ReleaseLeasesLocked(*task, request);
  RenewLeasesLocked(*task, request, now);
  SyncResult result;
  std::vector<uint32_t> held_elsewhere;
  result.origin_granted = GrantLeasesLocked(*task, request, now, &held_elsewhere);
  result.seed_to_trigger = ChooseSeedLocked(*task, caller, request.whole, now);
  result.parents = SelectParentsLocked(*task, caller, held_elsewhere, now);
  FillResponseLocked(*task, request.host_id, result);
  return result;
}

absl::Status SchedulerState::LeaveTask(std::string_view host_id, std::string_view task_id) {
  RETURN_IF_ERROR(ValidateHostId("host_id", host_id));
  RETURN_IF_ERROR(ValidateTaskId("task_id", task_id));
  absl::MutexLock lock(&mu_);
  ExpireLocked(Now());
  const std::string id(host_id);
  auto task = tasks_.find(ToAbsl(task_id));
  if (task != tasks_.end()) LeaveTaskLocked(task->second, id, /*leases_expired=*/false);
  if (auto host = hosts_.find(id); host != hosts_.end()) host->second.tasks.erase(ToAbsl(task_id));
  return absl::OkStatus();
}

absl::StatusOr<TaskStat> SchedulerState::StatTask(std::string_view task_id) {
  RETURN_IF_ERROR(ValidateTaskId("task_id", task_id));
  absl::MutexLock lock(&mu_);
  ExpireLocked(Now());
  auto it = tasks_.find(ToAbsl(task_id));
  if (it == tasks_.end()) return absl::NotFoundError(StrCat("task not known: ", task_id));
  const TaskEntry& task = it->second;
  TaskStat stat;
  stat.task = task.info;
  stat.task.origin_headers.clear();
  for (const auto& [host_id, holding] : task.members) {
    stat.holders.push_back({host_id, holding.pieces, holding.complete});
  }
  std::sort(stat.holders.begin(), stat.holders.end(),
            [](const auto& a, const auto& b) { return a.host_id < b.host_id; });
  stat.origin_leases_granted = task.leases_granted;
  stat.origin_leases_expired = task.leases_expired;
  for (const auto& [piece, lease] : task.leases) stat.leased_now.push_back(piece);
  std::sort(stat.leased_now.begin(), stat.leased_now.end());
  stat.seed_host_id = task.seed_host_id;
  return stat;
}

void SchedulerState::SeedTriggerFailed(std::string_view task_id, std::string_view seed_host_id) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = Now();
  ++counters_.seed_trigger_failures;
  auto it = tasks_.find(ToAbsl(task_id));
  if (it == tasks_.end() || it->second.seed_host_id != seed_host_id) return;
  TaskEntry& task = it->second;
  task.seed_host_id.clear();
  task.seed_failed_until[ToAbsl(seed_host_id)] = now + options_.seed_retry_time;
  if (auto seed = hosts_.find(ToAbsl(seed_host_id)); seed != hosts_.end()) {
    seed->second.seeded_tasks.erase(ToAbsl(task_id));
  }
}

void SchedulerState::Sweep() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = Now();
  ExpireLocked(now);
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    const TaskEntry& task = it->second;
    const bool idle =
        task.members.empty() && task.leases.empty() && now - task.last_active >= options_.host_ttl;
    if (!idle) {
      ++it;
      continue;
    }
    if (auto seed = hosts_.find(task.seed_host_id); seed != hosts_.end()) {
      seed->second.seeded_tasks.erase(it->first);
    }
    tasks_.erase(it++);
  }
}

SchedulerCounters SchedulerState::Counters() const {
  absl::MutexLock lock(&mu_);
  SchedulerCounters counters = counters_;
  counters.hosts = hosts_.size();
  counters.seed_hosts = seed_ids_.size();
  counters.tasks = tasks_.size();
  counters.leases_active = lease_deadlines_.size();
  return counters;
}

void SchedulerState::ExpireLocked(absl::Time now) {
  while (!host_deadlines_.empty() && host_deadlines_.begin()->first <= now) {
    const std::string host_id = host_deadlines_.begin()->second;
    LogInfo("host expired", {{"host", host_id}});
    DropHostLocked(host_id, /*silent=*/true);
  }
  while (!lease_deadlines_.empty() && std::get<0>(*lease_deadlines_.begin()) <= now) {
    const auto [deadline, task_id, piece] = *lease_deadlines_.begin();
    LogInfo("origin lease timed out", {{"task", task_id}, {"piece", piece}});
    EndLeaseLocked(tasks_.at(task_id), piece, /*expired=*/true);
  }
}

void SchedulerState::DropHostLocked(const std::string& host_id, bool silent) {
  auto it = hosts_.find(host_id);
  if (it == hosts_.end()) return;
  HostEntry& entry = it->second;
  for (const std::string& task_id : entry.tasks) {
    if (auto task = tasks_.find(task_id); task != tasks_.end()) {
      LeaveTaskLocked(task->second, host_id, /*leases_expired=*/true);
    }
  }
  for (const std::string& task_id : entry.seeded_tasks) {
    auto task = tasks_.find(task_id);
    if (task != tasks_.end() && task->second.seed_host_id == host_id) {
      task->second.seed_host_id.clear();
    }
  }
  host_deadlines_.erase({entry.expires_at, host_id});
  seed_ids_.erase(host_id);
  hosts_.erase(it);
  if (silent) ++counters_.hosts_expired;
}

void SchedulerState::TouchHostLocked(HostEntry& entry, absl::Time now) {
  host_deadlines_.erase({entry.expires_at, entry.host.id});
  entry.expires_at = now + options_.host_ttl;
  host_deadlines_.insert({entry.expires_at, entry.host.id});
}

void SchedulerState::EndLeaseLocked(TaskEntry& task, uint32_t piece, bool expired) {
  auto it = task.leases.find(piece);
  if (it == task.leases.end()) return;
  lease_deadlines_.erase({it->second.expires_at, task.info.task_id, piece});
  task.leases.erase(it);
  if (expired) {
    ++task.leases_expired;
    ++counters_.leases_expired;
  }
}

void SchedulerState::LeaveTaskLocked(TaskEntry& task, const std::string& host_id,
                                     bool leases_expired) {
  std::vector<uint32_t> pieces;
  for (const auto& [piece, lease] : task.leases) {
    if (lease.host_id == host_id) pieces.push_back(piece);
  }
  for (uint32_t piece : pieces) EndLeaseLocked(task, piece, leases_expired);
  task.members.erase(host_id);
  task.blocked.erase(host_id);
  if (task.seed_host_id == host_id) {
    task.seed_host_id.clear();
    if (auto seed = hosts_.find(host_id); seed != hosts_.end()) {
      seed->second.seeded_tasks.erase(task.info.task_id);
    }
  }
}

absl::StatusOr<SchedulerState::TaskEntry*> SchedulerState::FindOrCreateTaskLocked(
    const TaskInfo& info, absl::Time now) {
  auto it = tasks_.find(info.task_id);
  if (it != tasks_.end()) {
    const TaskInfo& known = it->second.info;
    if (known.content_length != info.content_length || known.piece_size != info.piece_size) {
      return absl::InvalidArgumentError(
          StrCat("task ", info.task_id, ": task.content_length ", info.content_length,
                 " and task.piece_size ", info.piece_size, " differ from the known content_length ",
                 known.content_length, " and piece_size ", known.piece_size));
    }
    return &it->second;
  }
  TaskEntry& task = tasks_[info.task_id];
  task.info = info;
  task.piece_count = info.piece_count();
  task.crc32c.assign(task.piece_count, 0);
  task.crc32c_known = EmptyBitmap(task.piece_count);
  task.last_active = now;
  LogInfo("task registered", {{"task", info.task_id},
                              {"content_length", info.content_length},
                              {"pieces", task.piece_count}});
  return &task;
}

void SchedulerState::RecordFailedParentsLocked(TaskEntry& task, const SyncRequest& request,
                                               absl::Time now) {
  for (const std::string& parent : request.failed_parents) {
    if (parent == request.host_id) continue;
    task.blocked[request.host_id].insert(parent);
    if (auto host = hosts_.find(parent); host != hosts_.end()) {
      host->second.penalized_until = now + options_.failure_penalty_time;
    }
    LogDebug("parent reported failed",
             {{"task", task.info.task_id}, {"child", request.host_id}, {"parent", parent}});
  }
}

void SchedulerState::RecordPiecesLocked(TaskEntry& task, const SyncRequest& request) {
  Holding& holding = task.members.at(request.host_id);
  for (const PieceReport& report : request.pieces) {
    const uint32_t n = report.number;
    if (!BitmapHas(holding.bitmap, n)) {
      SetBit(holding.bitmap, n);
      ++holding.pieces;
    }
    EndLeaseLocked(task, n, /*expired=*/false);
    if (!BitmapHas(task.crc32c_known, n)) {
      if (report.source == PieceSource::kOrigin) {
        task.crc32c[n] = report.crc32c;
        SetBit(task.crc32c_known, n);
      }
    } else if (task.crc32c[n] != report.crc32c) {
      LogWarn("piece reported with a different crc32c, ignored", {{"task", task.info.task_id},
                                                                  {"piece", n},
                                                                  {"host", request.host_id},
                                                                  {"known", task.crc32c[n]},
                                                                  {"reported", report.crc32c}});
    }
  }
  if (request.complete || holding.pieces == task.piece_count) holding.complete = true;
  if (holding.complete && holding.pieces != task.piece_count) {
    holding.bitmap = FullBitmap(task.piece_count);
    holding.pieces = task.piece_count;
  }
  if (holding.complete) {
    while (!task.leases.empty()) EndLeaseLocked(task, task.leases.begin()->first, false);
  }
}

void SchedulerState::ReleaseLeasesLocked(TaskEntry& task, const SyncRequest& request) {
  for (uint32_t piece : request.released) {
    auto it = task.leases.find(piece);
    if (it != task.leases.end() && it->second.host_id == request.host_id) {
      EndLeaseLocked(task, piece, /*expired=*/false);
    }
  }
}

// Only the caller's own leases: a renewal must never take a lease over from another host, nor
// revive one that expired and was handed over (that host fetches the piece now).
void SchedulerState::RenewLeasesLocked(TaskEntry& task, const SyncRequest& request,
                                       absl::Time now) {
  for (uint32_t piece : request.fetching) {
    auto it = task.leases.find(piece);
    if (it == task.leases.end() || it->second.host_id != request.host_id) continue;
    Lease& lease = it->second;
    const absl::Time expires_at = now + options_.lease_timeout;
    if (expires_at == lease.expires_at) continue;
    lease_deadlines_.erase({lease.expires_at, task.info.task_id, piece});
    lease.expires_at = expires_at;
    lease_deadlines_.insert({expires_at, task.info.task_id, piece});
    ++counters_.leases_renewed;
  }
}

std::vector<uint32_t> SchedulerState::GrantLeasesLocked(TaskEntry& task, const SyncRequest& request,
                                                        absl::Time now,
                                                        std::vector<uint32_t>* held_elsewhere) {
  // In the order asked (the first ones are the most urgent), without repeats.
  std::vector<uint32_t> wanted;
  absl::flat_hash_set<uint32_t> seen;
  for (uint32_t piece : request.want_origin) {
    if (seen.insert(piece).second) wanted.push_back(piece);
  }
  auto room = [&](size_t granted) {
    return request.max_origin_grants == 0 || granted < request.max_origin_grants;
  };
  const Holding& mine = task.members.at(request.host_id);
  const auto blocked = task.blocked.find(request.host_id);
  auto usable = [&](const std::string& host_id) {
    return host_id != request.host_id &&
           (blocked == task.blocked.end() || !blocked->second.contains(host_id));
  };
  std::vector<uint32_t> granted;
  for (uint32_t piece : wanted) {
    if (BitmapHas(mine.bitmap, piece)) continue;
    if (auto lease = task.leases.find(piece); lease != task.leases.end()) {
      // Asking again for a piece one already holds the lease on keeps the lease (and its
      // deadline: only `fetching`, a fetch running now, extends it).
      if (lease->second.host_id == request.host_id && room(granted.size())) {
        granted.push_back(piece);
      }
      continue;
    }
    const bool held = std::any_of(task.members.begin(), task.members.end(), [&](const auto& m) {
      return usable(m.first) && BitmapHas(m.second.bitmap, piece);
    });
    if (held) {
      held_elsewhere->push_back(piece);
      continue;
    }
    if (!room(granted.size())) continue;
    const absl::Time expires_at = now + options_.lease_timeout;
    task.leases[piece] = Lease{request.host_id, expires_at};
    lease_deadlines_.insert({expires_at, task.info.task_id, piece});
    ++task.leases_granted;
    ++counters_.leases_granted;
    granted.push_back(piece);
  }
  return granted;
}

std::optional<SeedDecision> SchedulerState::ChooseSeedLocked(TaskEntry& task,
                                                             const HostEntry& caller, bool whole,
                                                             absl::Time now) {
  if (caller.host.type == HostType::kSeed) {
    // A seed that fetches a whole task on its own (preheating) or holds it (it tells a restarted
    // scheduler) is its seed. One whose own readers read a few ranges is not: `seed_active`
    // would have the other peers leave the rest of the task to it.
    const bool holds_all = task.members.at(caller.host.id).complete;
    if (task.seed_host_id.empty() && (whole || holds_all)) {
      task.seed_host_id = caller.host.id;
      hosts_.at(caller.host.id).seeded_tasks.insert(task.info.task_id);
    }
    return std::nullopt;
  }
  // Lazy readers that fetch a few ranges of a blob must not make the origin serve all of it: a
  // seed is called in only by a host that downloads the whole task.
  if (!whole || !task.seed_host_id.empty()) return std::nullopt;
  for (const auto& [host_id, holding] : task.members) {
    if (holding.complete) return std::nullopt;
  }
  std::vector<const Host*> seeds;
  for (const std::string& seed_id : seed_ids_) {
    auto failed = task.seed_failed_until.find(seed_id);
    if (failed != task.seed_failed_until.end() && failed->second > now) continue;
    seeds.push_back(&hosts_.at(seed_id).host);
  }
  const Host* seed = RendezvousSeed(task.info.task_id, seeds);
  if (seed == nullptr) return std::nullopt;
  task.seed_host_id = seed->id;
  hosts_.at(seed->id).seeded_tasks.insert(task.info.task_id);
  ++counters_.seed_triggers;
  LogInfo("seed chosen", {{"task", task.info.task_id}, {"seed", seed->id}});
  return SeedDecision{*seed, task.info};
}

std::vector<Parent> SchedulerState::SelectParentsLocked(const TaskEntry& task,
                                                        const HostEntry& child,
                                                        const std::vector<uint32_t>& held_elsewhere,
                                                        absl::Time now) const {
  // Scored first, bitmaps copied only for the parents returned.
  struct Candidate {
    double score;
    const HostEntry* host;
    const Holding* holding;
  };
  const auto blocked = task.blocked.find(child.host.id);
  auto eligible = [&](const std::string& host_id) {
    return host_id != child.host.id &&
           (blocked == task.blocked.end() || !blocked->second.contains(host_id));
  };
  // Who fetches what from the origin now: such a host is a parent even before it holds a piece.
  absl::flat_hash_map<std::string, std::string> fetching;
  for (const auto& [piece, lease] : task.leases) {
    std::string& bits = fetching[lease.host_id];
    if (bits.empty()) bits = EmptyBitmap(task.piece_count);
    bits[piece / 8] = static_cast<char>(bits[piece / 8] | (0x80u >> (piece % 8)));
  }
  std::vector<Candidate> candidates;
  for (const auto& [host_id, holding] : task.members) {
    if (!eligible(host_id) ||
        (holding.pieces == 0 && host_id != task.seed_host_id && !fetching.contains(host_id))) {
      continue;
    }
    const HostEntry& host = hosts_.at(host_id);
    candidates.push_back({ScoreLocked(task, host, &holding, child, now), &host, &holding});
  }
  if (!task.seed_host_id.empty() && !task.members.contains(task.seed_host_id) &&
      eligible(task.seed_host_id)) {
    const HostEntry& seed = hosts_.at(task.seed_host_id);
    candidates.push_back({ScoreLocked(task, seed, nullptr, child, now), &seed, nullptr});
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return a.score != b.score ? a.score > b.score : a.host->host.id < b.host->host.id;
  });
  const size_t limit = std::min<size_t>(candidates.size(), options_.candidate_parent_limit);
  std::vector<const Candidate*> chosen;
  for (size_t i = 0; i < limit; ++i) chosen.push_back(&candidates[i]);
  // A piece refused for the origin because some host holds it must be reachable through a
  // parent, even when its holders all scored below the limit: add the best of them.
  for (uint32_t piece : held_elsewhere) {
    auto has = [piece](const Candidate& c) {
      return c.holding != nullptr && BitmapHas(c.holding->bitmap, piece);
    };
    if (std::any_of(chosen.begin(), chosen.end(), [&](const Candidate* c) { return has(*c); })) {
      continue;
    }
    auto rest = std::find_if(candidates.begin() + limit, candidates.end(), has);
    if (rest != candidates.end()) chosen.push_back(&*rest);
  }
  std::vector<Parent> parents;
  parents.reserve(chosen.size());
  for (const Candidate* c : chosen) {
    const Host& host = c->host->host;
    parents.push_back({.host_id = host.id,
                       .ip = host.ip,
                       .upload_port = host.upload_port,
                       .type = host.type,
                       .bitmap = c->holding ? c->holding->bitmap : EmptyBitmap(task.piece_count),
                       .complete = c->holding != nullptr && c->holding->complete,
                       .score = c->score});
    if (auto it = fetching.find(host.id); it != fetching.end())
      parents.back().fetching = it->second;
  }
  return parents;
}

double SchedulerState::ScoreLocked(const TaskEntry& task, const HostEntry& parent,
                                   const Holding* holding, const HostEntry& child,
                                   absl::Time now) const {
  double progress = 0;
  if (holding != nullptr) {
    progress = task.piece_count == 0 ? (holding->complete ? 1.0 : 0.0)
                                     : static_cast<double>(holding->pieces) / task.piece_count;
  }
  double score = kCapacityWeight * FreeCapacity(parent.host) + kProgressWeight * progress +
                 kLocalityWeight * LocalityScore(parent.host, child.host);
  if (parent.penalized_until > now) score -= options_.failure_penalty;
  return score;
}

void SchedulerState::FillResponseLocked(const TaskEntry& task, const std::string& host_id,
                                        SyncResult& result) const {
  result.lease_timeout = options_.lease_timeout;
  result.crc32c = task.crc32c;
  result.crc32c_known = task.crc32c_known;
  result.origin_in_progress =
      std::any_of(task.leases.begin(), task.leases.end(),
                  [&host_id](const auto& lease) { return lease.second.host_id != host_id; });
  result.seed_active = !task.seed_host_id.empty();
}

}  // namespace naiad::scheduler
