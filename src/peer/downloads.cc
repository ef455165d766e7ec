#include "peer/downloads.h"

#include <algorithm>
#include <map>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::peer {
namespace {

constexpr int kWorkers = 16;
constexpr int kPieceAttempts = 3;  // origin failures of one piece before the task fails
// Parent failures of one piece before it is asked from the origin instead.
constexpr int kParentAttempts = 6;
// How long a parent is left alone after it failed, or after it said it is busy (429).
constexpr absl::Duration kParentBench = absl::Seconds(5);
constexpr absl::Duration kParentBusyBench = absl::Milliseconds(200);
// Tasks whose traffic is remembered (for `naiad get`'s progress line).
constexpr size_t kTrafficEntries = 4096;
// How long readers of ranges must be quiet before a task's background prefetch starts, and the
// pieces held in part are completed.
constexpr absl::Duration kPrefetchQuiet = absl::Seconds(1);
// The longest a piece held in part waits for readers to be quiet before the rest is fetched.
constexpr absl::Duration kMaxDeferral = absl::Seconds(3);
// The most bytes one origin request for readers asks for.
constexpr uint64_t kMaxOriginRun = uint64_t{4} << 20;
// Leases asked for at once for pieces readers wait on (on top of concurrentPieceCount).
constexpr int kMaxReaderLeases = 64;
// Lease candidates asked for beyond what we can fetch at once (see PiecesToLease).
constexpr int kExtraLeaseCandidates = 16;
// Busy marks kept per task at most (they expire in kParentBusyBench anyway).
constexpr size_t kMaxBusyEntries = 4096;
// How long a parent that is fetching a piece from the origin is asked to wait for it.
constexpr absl::Duration kParentWait = absl::Seconds(10);
// After a scheduler failure, new tasks skip the scheduler for this long.
constexpr absl::Duration kSchedulerDownFor = absl::Seconds(10);
// Held tasks re-registered per round of the sync thread after the scheduler forgot this host:
// the downloads' own syncs go first, the rest follows quickly.
constexpr size_t kReregistrationsPerRound = 16;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return absl::EqualsIgnoreCase(ToAbsl(a), ToAbsl(b));
}
bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return absl::StartsWithIgnoreCase(ToAbsl(text), ToAbsl(prefix));
}

// Headers never forwarded to an origin: hop-by-hop, and ours.
bool ForwardToOrigin(std::string_view name) {
  for (std::string_view skip :
       {"host", "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "range", "content-length", "accept-encoding"}) {
    if (EqualsIgnoreCase(name, skip)) return false;
  }
  return !StartsWithIgnoreCase(name, "x-dragonfly-");
}

net::HttpHeaders OriginHeaders(const net::HttpHeaders& client) {
  net::HttpHeaders headers;
  for (const auto& [name, value] : client.entries()) {
    if (ForwardToOrigin(name)) headers.Add(name, value).IgnoreError();
  }
  return headers;
}

// Whether the origin's answer to a request for `span` is that span, checked before any byte of
// it is stored: an origin ignoring the range would otherwise put the blob's first bytes where
// the range's belong. A 401, 403 or 404 is a refusal (IsOriginRefusal): the proxy relays the
// origin's own answer to its client (the challenge, for a 401).
absl::Status CheckOriginAnswer(const net::HttpResponse& response, piece::ByteSpan span,
                               uint64_t content_length, const std::string& url) {
  if (response.status == 200 && span.begin == 0 && span.length() == content_length) {
    return absl::OkStatus();
  }
  if (response.status == 401 || response.status == 403 || response.status == 404) {
    return net::HttpStatusToStatus(response.status, url);
  }
  std::optional<std::string> header = response.headers.Get("Content-Range");
  absl::StatusOr<net::ContentRange> range =
      header.has_value() ? net::ParseContentRange(*header)
                         : absl::StatusOr<net::ContentRange>(absl::NotFoundError(""));
  if (response.status != 206 || !range.ok() || range->range.offset != span.begin) {
    return absl::UnavailableError(StrCat("origin answered ", response.status, " (",
                                         header.value_or("no Content-Range"), ") for bytes ",
                                         span.begin, "-", span.end - 1, " of ", url));
  }
  if (range->total.has_value() && *range->total != content_length) {
    return absl::DataLossError(
        StrCat("origin says ", url, " has ", *range->total, " bytes, the task ", content_length));
  }
  return absl::OkStatus();
}

// A random number in [0, n) (0 when n is 0); cheap, per thread.
size_t RandomBelow(size_t n) {
  thread_local std::minstd_rand random(std::random_device{}());
  return n == 0 ? 0 : random() % n;
}

schedv1::TaskInfo TaskInfoOf(const piece::TaskMeta& meta, const net::HttpHeaders& headers) {
  schedv1::TaskInfo info;
  info.set_task_id(meta.task_id);
  info.set_url(meta.url);
  info.set_content_length(meta.content_length);
  info.set_piece_size(meta.piece_size);
  info.set_digest(meta.digest);
  for (const auto& [name, value] : headers.entries())
    (*info.mutable_origin_headers())[name] = value;
  return info;
}

}  // namespace

bool IsOriginRefusal(const absl::Status& status) {
  return absl::IsUnauthenticated(status) || absl::IsPermissionDenied(status) ||
         absl::IsNotFound(status);
}

struct Downloads::Download {
  std::shared_ptr<piece::Task> task;
  OriginRequest origin;
  std::set<uint32_t> wanted;  // pieces a reader waits for, fetched first
  // Wanted pieces a reader needs only some bytes of (the ends of its range): those bytes.
  absl::flat_hash_map<uint32_t, piece::ByteSpan> spans;
  // Pieces held in part (what readers needed of them), under our lease in the swarm: the rest
  // is fetched once readers are quiet, when the whole task is wanted, or when a peer waits.
  std::map<uint32_t, absl::Time> deferred;  // since when
  int origin_runs = 0;                      // origin requests in flight
  bool whole = false;                       // the whole task, now (a whole GET, a seed task)
  // The whole task in the background (download.prefetch behind ranged requests): in the swarm,
  // only once no reader has asked this peer for a range of any task for kPrefetchQuiet, so that
  // prefetching does not compete for the origin's link with the ranges a starting container
  // waits on (its reads move from layer to layer: one layer going quiet says little).
  bool background = false;
  absl::Time background_since = absl::InfinitePast();
  uint32_t cursor = 0;  // origin mode: the next piece of the whole task
  absl::flat_hash_set<uint32_t> in_flight;
  absl::flat_hash_set<uint32_t> origin_fetches;  // the pieces of in_flight coming from the origin
  absl::flat_hash_map<uint32_t, int> attempts;   // origin failures per piece
  absl::flat_hash_map<uint32_t, int> parent_attempts;  // parent failures per piece
  bool fetched_from_origin = false;
  // NextPiece() found nothing to do at this version of the downloads' state: until something
  // changes there is no need to look again (the scan over all pieces is not free).
  uint64_t idle_at_version = ~uint64_t{0};

  // The swarm. `swarm` false: every piece from the origin (no scheduler, or it failed).
  bool swarm = false;
  bool seed = false;  // a scheduler asked us (a seed peer) to fetch the whole task
  bool registered = false;
  bool syncing = false;
  absl::Time next_sync = absl::InfinitePast();
  bool ask_now = false;  // a reader wants a piece no known parent holds: sync before next_sync
  absl::Time last_sync = absl::InfinitePast();  // when the last SyncTask was sent
  std::vector<schedv1::Parent> parents;         // best first
  std::vector<uint16_t> holders;                // per piece: how many parents hold it
  schedv1::SyncTaskResponse view;               // crcs, seed_active, ... of the last answer
  // Origin leases granted to us whose piece we do not hold yet (fetching it, or about to).
  absl::flat_hash_set<uint32_t> leases;
  std::vector<uint32_t> released;  // leases given back (their fetch failed), to report
  std::vector<schedv1::PieceReport> unreported;
  std::vector<std::string> failed_parents;                      // to report
  absl::flat_hash_map<std::string, int> parent_load;            // our requests in flight
  absl::flat_hash_map<std::string, absl::Time> parent_benched;  // left alone until then
  // "<parent>/<piece>" the parent refused as busy (it is sending that piece to someone else).
  absl::flat_hash_map<std::string, absl::Time> piece_busy;

  piece::ByteSpan PieceSpan(uint32_t n) const {
    const piece::TaskMeta& meta = task->meta();
    return {meta.PieceOffset(n), meta.PieceOffset(n) + meta.PieceLength(n)};
  }
  // What of piece n is needed: the readers' bytes of a wanted piece, else all of it.
  piece::ByteSpan Need(uint32_t n) const {
    auto it = spans.find(n);
    return it == spans.end() ? PieceSpan(n) : it->second;
  }
  // Whether a parent we know of holds piece n.
  bool ParentHolds(uint32_t n) const { return n < holders.size() && holders[n] > 0; }
  // Deferred pieces whose lease we hold (the scheduler must keep renewing it).
  bool HoldsDeferredLeases() const {
    for (const auto& [n, since] : deferred) {
      if (leases.contains(n)) return true;
    }
    return false;
  }

  std::optional<uint32_t> KnownCrc(uint32_t n) const {
    if (!BitmapHas(view.crc32c_known(), n) || static_cast<int>(n) >= view.crc32c_size()) {
      return std::nullopt;
    }
    return view.crc32c(static_cast<int>(n));
  }

  // How often the leases of running origin fetches must be renewed: three chances before the
  // scheduler's lease timeout (infinite until a scheduler answer told us the timeout).
  absl::Duration RenewInterval() const {
    if (view.lease_timeout_ms() == 0) return absl::InfiniteDuration();
    return absl::Milliseconds(view.lease_timeout_ms()) / 3;
  }
  // When the next sync must go out for the running origin fetches' leases.
  absl::Time RenewBy() const {
    const absl::Duration interval = RenewInterval();
    if (interval == absl::InfiniteDuration() || last_sync == absl::InfinitePast()) {
      return absl::InfiniteFuture();
    }
    return last_sync + interval;
  }
};

Downloads::Downloads(DownloadsOptions options)
    : options_(std::move(options)),
      store_(options_.store),
      config_(options_.config),
      metrics_(options_.metrics),
      client_({.connect_timeout = absl::Seconds(10), .low_speed_time = absl::Seconds(20)}) {
  for (int i = 0; i < kWorkers; ++i) workers_.emplace_back([this] { Work(); });
  if (options_.scheduler != nullptr) sync_thread_ = std::thread([this] { SyncLoop(); });
}

Downloads::~Downloads() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  cancel_.Cancel();
  for (std::thread& worker : workers_) worker.join();
  if (sync_thread_.joinable()) sync_thread_.join();
}

std::optional<piece::TaskMeta> Downloads::MetaFromScheduler(const std::string& task_id,
                                                            const OriginRequest& origin) {
  // Only content named by its digest: what a URL names may change, and the scheduler's length
  // would then be stale (a HEAD tells).
  const std::optional<std::string> digest = piece::BlobDigestOfUrl(origin.url);
  if (options_.scheduler == nullptr || !digest.has_value()) return std::nullopt;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Now() < scheduler_down_until_) return std::nullopt;
  }
  absl::StatusOr<schedv1::StatTaskResponse> stat = options_.scheduler->StatTask(task_id);
  if (absl::IsUnavailable(stat.status()) || absl::IsDeadlineExceeded(stat.status())) {
    absl::MutexLock lock(&mu_);
    scheduler_down_until_ = absl::Now() + kSchedulerDownFor;  // as for a failed sync
  }
  if (!stat.ok() || stat->task().content_length() == 0 || stat->task().piece_size() == 0) {
    return std::nullopt;  // unknown (or the scheduler is away): the origin says
  }
  // The origin checks the length with every range it serves (FetchFromOrigin), and the blob's
  // digest covers the rest: a scheduler cannot make us store wrong bytes.
  piece::TaskMeta meta{.task_id = task_id,
                       .url = origin.url,
                       .content_length = stat->task().content_length(),
                       .piece_size = stat->task().piece_size(),
                       .digest = *digest};
  return meta;
}

absl::StatusOr<piece::TaskMeta> Downloads::ProbeOrigin(const std::string& task_id,
                                                       const OriginRequest& origin,
                                                       OriginError* origin_error) {
  net::HttpRequest head{.method = "HEAD",
                        .url = origin.url,
                        .headers = OriginHeaders(origin.headers),
                        .timeout = config_.piece_timeout,
                        .cancel = &cancel_};
  ASSIGN_OR_RETURN(net::HttpResponse response, client_.Send(head));
  std::optional<uint64_t> length;
  if (response.status == 200) {
    if (auto value = response.headers.Get("Content-Length")) {
      uint64_t parsed = 0;
      if (absl::SimpleAtoi(ToAbsl(*value), &parsed)) length = parsed;
    }
  } else if (response.status == 405 || response.status == 501) {
    net::HttpRequest probe{.url = origin.url,
                           .headers = head.headers,
                           .range = net::ByteRange{0, 1},
                           .timeout = config_.piece_timeout,
                           .cancel = &cancel_};
    ASSIGN_OR_RETURN(response, client_.Send(probe));
    if (auto range = response.headers.Get("Content-Range")) {
      absl::StatusOr<net::ContentRange> parsed = net::ParseContentRange(*range);
      if (parsed.ok() && parsed->total.has_value()) length = *parsed->total;
    }
  }
  if (response.status >= 300 && response.status != 405 && response.status != 501) {
    *origin_error = {.status = response.status, .body = response.body};
    return absl::FailedPreconditionError(
        StrCat("origin answered ", response.status, " for ", origin.url));
  }
  if (!length.has_value()) {
    return absl::UnavailableError(StrCat("origin gave no content length for ", origin.url));
  }
  piece::TaskMeta meta{.task_id = task_id, .url = origin.url, .content_length = *length};
  if (auto digest = piece::BlobDigestOfUrl(origin.url)) meta.digest = *digest;
  if (auto type = response.headers.Get("Content-Type")) meta.content_type = *type;
  return meta;
}

// Queues a report of every piece held. Reports already queued keep their source (an origin
// fetch's crc is authoritative); the other pieces are reported as PIECE_SOURCE_PEER.
void Downloads::ReportAllPieces(Download& download) {
  const piece::Task& task = *download.task;
  absl::flat_hash_set<uint32_t> queued;
  for (const schedv1::PieceReport& report : download.unreported) queued.insert(report.number());
  for (uint32_t n = 0; n < task.meta().piece_count(); ++n) {
    if (!task.HasPiece(n) || queued.contains(n)) continue;
    schedv1::PieceReport report;
    report.set_number(n);
    report.set_crc32c(task.PieceCrc(n).value_or(0));
    report.set_source(schedv1::PIECE_SOURCE_PEER);
    download.unreported.push_back(std::move(report));
  }
}

std::shared_ptr<piece::Task> Downloads::AddDownload(std::shared_ptr<piece::Task> task,
                                                    const OriginRequest& origin, bool seed) {
  auto [it, inserted] = downloads_.try_emplace(task->meta().task_id);
  if (!inserted) {
    it->second->seed = it->second->seed || seed;
    it->second->whole = it->second->whole || seed;
    ++version_;
    return it->second->task;
  }
  auto download = std::make_shared<Download>();
  download->task = std::move(task);
  download->origin = {.url = origin.url, .headers = OriginHeaders(origin.headers)};
  download->seed = seed;
  download->whole = seed;
  download->swarm = options_.scheduler != nullptr &&
                    (absl::Now() >= scheduler_down_until_ || !options_.back_to_source);
  if (download->swarm) {
    ReportAllPieces(*download);  // pieces recovered from disk are news for the scheduler
    sync_wanted_ = true;
  }
  it->second = std::move(download);
  ++version_;
  return it->second->task;
}

absl::StatusOr<std::shared_ptr<piece::Task>> Downloads::Open(const std::string& task_id,
                                                             const OriginRequest& origin,
                                                             OriginError* origin_error) {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = downloads_.find(task_id); it != downloads_.end()) return it->second->task;
  }
  std::shared_ptr<piece::Task> task = store_->Find(task_id);
  if (task != nullptr && !task->failure().ok()) {
    RETURN_IF_ERROR(store_->Delete(task_id));
    task = nullptr;
  }
  if (task == nullptr) {
    std::optional<piece::TaskMeta> known = MetaFromScheduler(task_id, origin);
    if (!known.has_value()) {
      ASSIGN_OR_RETURN(known, ProbeOrigin(task_id, origin, origin_error));
    }
    const piece::TaskMeta& meta = *known;
    ASSIGN_OR_RETURN(task, store_->CreateOrOpen(meta));
    ++metrics_->tasks_started;
  }
  if (task->complete()) return task;
  absl::MutexLock lock(&mu_);
  return AddDownload(std::move(task), origin, /*seed=*/false);
}

absl::Status Downloads::Seed(const SeedTask& seed) {
  std::shared_ptr<piece::Task> task = store_->Find(seed.meta.task_id);
  if (task == nullptr || !task->failure().ok() ||
      task->meta().content_length != seed.meta.content_length) {
    ASSIGN_OR_RETURN(task, store_->CreateOrOpen(seed.meta));
    ++metrics_->tasks_started;
  }
  ++metrics_->seed_tasks;
  absl::MutexLock lock(&mu_);
  if (task->complete()) {
    // Tell the scheduler we hold it, so peers use us.
    AddDownload(task, seed.origin, /*seed=*/true);
    return absl::OkStatus();
  }
  AddDownload(std::move(task), seed.origin, /*seed=*/true);
  return absl::OkStatus();
}

void Downloads::Want(const std::shared_ptr<piece::Task>& task, uint32_t first, uint32_t last,
                     bool whole, bool urgent, bool reader, std::optional<piece::ByteSpan> bytes) {
  absl::MutexLock lock(&mu_);
  auto it = downloads_.find(task->meta().task_id);
  if (it == downloads_.end()) return;  // complete (or failed: the reader sees the failure)
  Download& download = *it->second;
  for (uint32_t n = first; n <= last && (urgent || !download.swarm); ++n) {
    if (task->HasPiece(n)) continue;
    const piece::ByteSpan whole_piece = download.PieceSpan(n);
    piece::ByteSpan need = whole_piece;
    if (bytes.has_value()) {
      need = {std::max(need.begin, bytes->begin), std::min(need.end, bytes->end)};
      if (need.begin >= need.end) continue;
      if (task->HasRange(need)) continue;  // parts of it hold these bytes
    }
    const bool inserted = download.wanted.insert(n).second;
    download.deferred.erase(n);
    if (need == whole_piece) {
      download.spans.erase(n);
    } else if (inserted) {
      download.spans[n] = need;
    } else if (auto span = download.spans.find(n); span != download.spans.end()) {
      span->second = {std::min(span->second.begin, need.begin),
                      std::max(span->second.end, need.end)};
    }
    if (inserted && download.swarm) {
      sync_wanted_ = true;  // it may need a lease
      // No parent we know of holds it: ask now rather than at the next poll (a reader waits).
      if (!download.ParentHolds(n)) download.ask_now = true;
    }
  }
  if (whole && urgent) {
    // The quiet time counts from the first such request too: a prefetcher that comes before
    // the first reader (naiad fs prefetching at mount) does not start the task's prefetch at
    // once either.
    if (!download.background) download.background_since = absl::Now();
    download.background = true;
  } else if (whole) {
    download.whole = true;
  }
  if (reader) last_reader_ = absl::Now();
  ++version_;
}

void Downloads::Urge(const std::string& task_id, uint32_t first, uint32_t last) {
  absl::MutexLock lock(&mu_);
  auto it = downloads_.find(task_id);
  if (it == downloads_.end()) return;
  Download& download = *it->second;
  for (auto n = download.deferred.lower_bound(first);
       n != download.deferred.end() && n->first <= last;) {
    download.wanted.insert(n->first);  // all of it: no span
    download.spans.erase(n->first);
    n = download.deferred.erase(n);
    ++version_;
  }
  // Pieces a reader of ours wants only part of, whose fetch may be running now: once that part
  // is in, the rest follows at once instead of being deferred (the waiting peer would otherwise
  // wait for our readers to go quiet).
  for (auto n = download.wanted.lower_bound(first); n != download.wanted.end() && *n <= last; ++n) {
    if (download.spans.erase(*n) > 0) ++version_;
  }
}

bool Downloads::WantsWhole(const Download& download, absl::Time now) const {
  if (download.whole) return true;
  if (!download.background) return false;
  // Without a sync thread nothing would look again once the readers are quiet: no waiting then.
  // The quiet time also counts from the first background request, so a prefetcher that comes
  // before the first reader (naiad fs prefetching at mount) does not start it at once either.
  return !download.swarm ||
         now - std::max(last_reader_, download.background_since) >= kPrefetchQuiet;
}

TaskTraffic Downloads::Traffic(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  auto it = traffic_.find(task_id);
  return it == traffic_.end() ? TaskTraffic{} : it->second;
}

// ---- Piece selection --------------------------------------------------------------------------

std::optional<Downloads::Assignment> Downloads::SourceFor(Download& download, uint32_t n,
                                                          bool urgent) {
  if (!download.swarm || download.leases.contains(n)) {
    if (download.origin_runs >= config_.concurrent_pieces) return std::nullopt;
    return OriginRun(download, Assignment{.piece = n, .last = n, .urgent = urgent});
  }
  if (download.parent_attempts[n] >= kParentAttempts) return std::nullopt;  // needs a lease
  const int per_parent = std::max(2, config_.concurrent_pieces / 2);
  absl::Time now = absl::Now();
  const schedv1::Parent* best = nullptr;
  int best_load = 0;
  bool wait = false;
  // Parents are tried from a random one on, so that among equally good parents each child picks
  // a different one: in the scheduler's order, every child would load the same best parent.
  const size_t count = download.parents.size();
  const size_t start = RandomBelow(count);
  for (size_t i = 0; i < count; ++i) {
    const schedv1::Parent& parent = download.parents[(start + i) % count];
    // A piece a reader waits for may be asked from the parent fetching it from the origin right
    // now: its upload service answers when the piece arrives (no polling in between).
    bool fetching = !BitmapHas(parent.bitmap(), n) && urgent && BitmapHas(parent.fetching(), n);
    if (!BitmapHas(parent.bitmap(), n) && !fetching) continue;
    if (best != nullptr && fetching && !wait) continue;  // one that holds it is better
    auto benched = download.parent_benched.find(parent.host_id());
    if (benched != download.parent_benched.end() && benched->second > now) continue;
    auto busy = download.piece_busy.find(StrCat(parent.host_id(), "/", n));
    if (busy != download.piece_busy.end() && busy->second > now) continue;
    int load = download.parent_load[parent.host_id()];
    if (load >= per_parent) continue;
    // Normal peers before seeds (a seed's upload is best spent on pieces nobody else has), then
    // the least loaded.
    bool seed = parent.type() == schedv1::HOST_TYPE_SEED;
    bool best_seed = best != nullptr && best->type() == schedv1::HOST_TYPE_SEED;
    bool better =
        best == nullptr || (best_seed && !seed) || (seed == best_seed && load < best_load);
    better = better || (wait && !fetching);
    if (better) {
      best = &parent;
      best_load = load;
      wait = fetching;
    }
  }
  if (best == nullptr) return std::nullopt;
  return Assignment{.piece = n,
                    .last = n,
                    .bytes = download.PieceSpan(n),
                    .parent = ParentAddress{.host_id = best->host_id(),
                                            .ip = best->ip(),
                                            .port = static_cast<uint16_t>(best->upload_port())},
                    .wait = wait,
                    .urgent = urgent};
}

std::optional<Downloads::Assignment> Downloads::RarestPiece(Download& download) {
  const piece::Task& task = *download.task;
  uint32_t count = task.meta().piece_count();
  if (count == 0) return std::nullopt;
  // Start at a random piece so that peers choosing among equally rare pieces pick different ones.
  uint32_t start = static_cast<uint32_t>(RandomBelow(count));
  std::optional<Assignment> best;
  uint32_t best_holders = 0;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t n = (start + i) % count;
    if (task.HasPiece(n) || download.in_flight.contains(n)) continue;
    uint32_t holders = n < download.holders.size() ? download.holders[n] : 0;
    if (best.has_value() && holders >= best_holders) continue;
    if (std::optional<Assignment> source = SourceFor(download, n, /*urgent=*/false)) {
      best = source;
      best_holders = holders;
      if (holders <= 1) break;  // cannot do better
    }
  }
  return best;
}

std::optional<Downloads::Assignment> Downloads::NextPiece(Download& download) {
  if (download.idle_at_version == version_) return std::nullopt;
  std::optional<Assignment> next = FindNextPiece(download);
  if (!next.has_value()) download.idle_at_version = version_;
  return next;
}

std::optional<Downloads::Assignment> Downloads::FindNextPiece(Download& download) {
  int limit = download.swarm ? 2 * config_.concurrent_pieces : config_.concurrent_pieces;
  if (static_cast<int>(download.in_flight.size()) >= limit) return std::nullopt;
  if (!download.task->failure().ok()) return std::nullopt;
  for (auto it = download.wanted.begin(); it != download.wanted.end();) {
    const uint32_t n = *it;
    if (download.task->HasPiece(n)) {
      download.spans.erase(n);
      it = download.wanted.erase(it);
    } else if (download.in_flight.contains(n)) {
      ++it;
    } else if (!download.task->FirstGap(download.Need(n)).has_value()) {
      // Its parts hold what readers need: the rest can wait.
      if (!download.swarm || download.leases.contains(n)) download.deferred.emplace(n, absl::Now());
      download.spans.erase(n);
      it = download.wanted.erase(it);
    } else if (std::optional<Assignment> source = SourceFor(download, n, /*urgent=*/true)) {
      return source;
    } else {
      ++it;
    }
  }
  const absl::Time now = absl::Now();
  if (std::optional<Assignment> deferred = DeferredPiece(download, now)) return deferred;
  if (!WantsWhole(download, now)) return std::nullopt;
  if (download.swarm) return RarestPiece(download);
  // The cursor only moves over pieces that are present or being fetched, so asking again (as
  // HasWork() does on every unlock) never skips a piece.
  uint32_t count = download.task->meta().piece_count();
  while (download.cursor < count) {
    uint32_t n = download.cursor;
    if (!download.task->HasPiece(n) && !download.in_flight.contains(n))
      return SourceFor(download, n, /*urgent=*/false);
    ++download.cursor;
  }
  return std::nullopt;
}

Downloads::Assignment Downloads::OriginRun(Download& download, Assignment assignment) {
  const piece::Task& task = *download.task;
  const uint32_t count = task.meta().piece_count();
  // Not present, so something of the piece is missing (parts covering it make it present).
  assignment.bytes =
      task.FirstGap(download.Need(assignment.piece)).value_or(download.PieceSpan(assignment.piece));
  if (!assignment.urgent) return assignment;
  // Pieces in flight stay within FindNextPiece's limit, runs included.
  const int limit = download.swarm ? 2 * config_.concurrent_pieces : config_.concurrent_pieces;
  int room = limit - static_cast<int>(download.in_flight.size()) - 1;
  while (assignment.bytes.end == download.PieceSpan(assignment.last).end && room > 0 &&
         assignment.last + 1 < count) {
    const uint32_t next = assignment.last + 1;
    if (assignment.bytes.length() + download.PieceSpan(next).length() > kMaxOriginRun) break;
    if (!download.wanted.contains(next) || download.in_flight.contains(next) ||
        (download.swarm && !download.leases.contains(next))) {
      break;
    }
    std::optional<piece::ByteSpan> gap = task.FirstGap(download.Need(next));
    if (!gap.has_value() || gap->begin != download.PieceSpan(next).begin) break;
    assignment.last = next;
    assignment.bytes.end = gap->end;
    --room;
  }
  return assignment;
}

std::optional<Downloads::Assignment> Downloads::DeferredPiece(Download& download, absl::Time now) {
  if (download.deferred.empty()) return std::nullopt;
  const bool quiet = download.swarm && now - last_reader_ >= kPrefetchQuiet;
  const bool whole = WantsWhole(download, now);
  for (auto it = download.deferred.begin(); it != download.deferred.end();) {
    const auto [n, since] = *it;
    // In the swarm a piece held in part is someone's lease: it is never kept back for long, even
    // from peers that do not wait for it (a whole download, a seed).
    const bool due = quiet || whole || (download.swarm && now - since >= kMaxDeferral);
    if (download.task->HasPiece(n) || (download.swarm && !download.leases.contains(n))) {
      it = download.deferred.erase(it);  // complete, or no longer ours to fetch
    } else if (!due || download.in_flight.contains(n)) {
      ++it;
    } else if (std::optional<Assignment> source = SourceFor(download, n, /*urgent=*/false)) {
      return source;
    } else {
      ++it;
    }
  }
  return std::nullopt;
}

bool Downloads::HasWork() {
  if (stopping_) return true;
  for (auto& [id, download] : downloads_) {
    if (NextPiece(*download).has_value()) return true;
  }
  return false;
}

// ---- Fetching ---------------------------------------------------------------------------------

absl::Status Downloads::FetchFromOrigin(const Download& download, const Assignment& assignment,
                                        uint64_t* stored) {
  const piece::TaskMeta& meta = download.task->meta();
  const piece::ByteSpan span = assignment.bytes;
  // What has arrived and is not stored yet: the bytes from `next` on. Each piece's share of the
  // span is stored as soon as it is all here (a reader waiting on it gets it then).
  std::string pending;
  pending.reserve(std::min<uint64_t>(span.length(), meta.piece_size));
  uint64_t next = span.begin;
  auto store_ready = [&]() -> absl::Status {
    for (;;) {
      const uint32_t n = static_cast<uint32_t>(next / meta.piece_size);
      const uint64_t slice_end = std::min(span.end, meta.PieceOffset(n) + meta.PieceLength(n));
      const size_t slice = slice_end - next;
      if (slice == 0 || pending.size() < slice) return absl::OkStatus();
      const std::string_view bytes(pending.data(), slice);
      RETURN_IF_ERROR(slice == meta.PieceLength(n) ? download.task->WritePiece(n, bytes)
                                                   : download.task->WritePart(next, bytes));
      if (slice == meta.PieceLength(n)) ++metrics_->pieces_stored;
      metrics_->origin_bytes += slice;
      *stored += slice;
      pending.erase(0, slice);
      next = slice_end;
    }
  };
  net::HttpRequest request{
      .url = download.origin.url,
      .headers = download.origin.headers,
      .range = net::ByteRange{span.begin, span.length()},
      .on_headers =
          [&](const net::HttpResponse& response) {
            return CheckOriginAnswer(response, span, meta.content_length, download.origin.url);
          },
      .body_sink =
          [&](std::string_view data) {
            if (next + pending.size() + data.size() > span.end) {
              return absl::DataLossError("origin sent more than the range asked for");
            }
            pending.append(data);
            return store_ready();
          },
      .timeout = config_.piece_timeout,
      .cancel = &cancel_};
  ++metrics_->origin_requests;
  RETURN_IF_ERROR(client_.Send(request).status());
  if (next != span.end) {
    return absl::DataLossError(StrCat("origin sent ", next + pending.size() - span.begin,
                                      " bytes for bytes ", span.begin, "-", span.end - 1, " of ",
                                      download.origin.url));
  }
  return absl::OkStatus();
}

absl::Status Downloads::FetchFromParent(const Download& download, uint32_t n,
                                        const ParentAddress& parent, bool wait, bool urgent) {
  const piece::TaskMeta& meta = download.task->meta();
  std::optional<uint32_t> crc;
  {
    absl::MutexLock lock(&mu_);
    crc = download.KnownCrc(n);
  }
  ASSIGN_OR_RETURN(std::string bytes,
                   options_.piece_client->FetchPiece(
                       parent, meta, n, crc, wait ? kParentWait : absl::ZeroDuration(),
                       config_.piece_timeout, &cancel_, options_.host_id, urgent));
  metrics_->peer_bytes += bytes.size();
  ++metrics_->peer_pieces;
  RETURN_IF_ERROR(download.task->WritePiece(n, bytes, crc));
  ++metrics_->pieces_stored;
  return absl::OkStatus();
}

void Downloads::Finished(const std::shared_ptr<Download>& download, const Assignment& assignment,
                         const absl::Status& status, absl::Duration cost, uint64_t origin_bytes) {
  ++version_;
  if (assignment.parent.has_value()) {
    --download->parent_load[assignment.parent->host_id];
  } else {
    --download->origin_runs;
  }
  if (origin_bytes > 0) {
    if (traffic_.size() > kTrafficEntries) traffic_.clear();  // crude, but bounded
    traffic_[download->task->meta().task_id].origin_bytes += origin_bytes;
    if (!download->fetched_from_origin) {
      download->fetched_from_origin = true;
      ++metrics_->back_to_source;
    }
  }
  for (uint32_t n = assignment.piece; n <= assignment.last; ++n) {
    download->in_flight.erase(n);
    if (!assignment.parent.has_value()) download->origin_fetches.erase(n);
    // A run that broke off stored the pieces before the break: those arrived.
    const piece::ByteSpan asked = {std::max(assignment.bytes.begin, download->PieceSpan(n).begin),
                                   std::min(assignment.bytes.end, download->PieceSpan(n).end)};
    const bool arrived = download->task->HasPiece(n) ||
                         (!assignment.parent.has_value() && download->task->HasRange(asked));
    if (arrived) {
      PieceFetched(*download, assignment, n, cost);
    } else {
      PieceFailed(
          *download, assignment, n,
          status.ok() ? absl::DataLossError(StrCat("piece ", n, " was not stored")) : status);
    }
  }
  Retire(download);
}

void Downloads::PieceFetched(Download& download, const Assignment& assignment, uint32_t n,
                             absl::Duration cost) {
  if (!download.task->HasPiece(n)) {
    // Part of it (a reader's bytes): the rest later, under the same lease — unless all of it is
    // wanted now (Urge), in which case the next assignment fetches the rest.
    if (!download.wanted.contains(n)) download.deferred.emplace(n, absl::Now());
    return;
  }
  if (assignment.parent.has_value()) {
    if (traffic_.size() > kTrafficEntries) traffic_.clear();
    traffic_[download.task->meta().task_id].peer_bytes += download.task->meta().PieceLength(n);
  }
  if (!download.swarm) return;
  schedv1::PieceReport report;
  report.set_number(n);
  report.set_crc32c(download.task->PieceCrc(n).value_or(0));
  report.set_cost_us(static_cast<uint64_t>(absl::ToInt64Microseconds(cost)));
  if (assignment.parent.has_value()) {
    report.set_source(schedv1::PIECE_SOURCE_PEER);
    report.set_parent_id(assignment.parent->host_id);
  } else {
    report.set_source(schedv1::PIECE_SOURCE_ORIGIN);
  }
  // The report ends our lease on it at the scheduler, whoever the piece came from.
  download.leases.erase(n);
  download.deferred.erase(n);
  download.unreported.push_back(std::move(report));
  sync_wanted_ = true;
}

void Downloads::PieceFailed(Download& download, const Assignment& assignment, uint32_t n,
                            const absl::Status& status) {
  if (assignment.parent.has_value()) {
    const std::string& id = assignment.parent->host_id;
    if (!absl::IsResourceExhausted(status)) {  // "busy" is routine in a swarm: counted only
      ++metrics_->peer_failures;
      LogWarn("piece from parent failed", {{"task", download.task->meta().task_id},
                                           {"piece", n},
                                           {"parent", id},
                                           {"error", status}});
    }
    if (absl::IsResourceExhausted(status)) {
      // Busy (with this piece, or at its upload limit): try other pieces or parents for a while.
      if (download.piece_busy.size() > kMaxBusyEntries) download.piece_busy.clear();
      download.piece_busy[StrCat(id, "/", n)] = absl::Now() + kParentBusyBench;
    } else if (assignment.wait && absl::IsNotFound(status)) {
      // Its own origin fetch did not deliver in time: not the parent's fault.
      download.parent_benched[id] = absl::Now() + kParentBusyBench;
    } else {
      download.parent_benched[id] = absl::Now() + kParentBench;
      download.failed_parents.push_back(id);
      if (++download.parent_attempts[n] >= kParentAttempts) sync_wanted_ = true;
    }
    return;
  }
  ++metrics_->origin_failures;
  // We gave up on this fetch: its lease is given back rather than renewed, and a retry asks
  // for a new one (another peer may get it first; then the piece comes from that peer).
  if (download.swarm && download.leases.erase(n) > 0) {
    download.released.push_back(n);
    download.deferred.erase(n);
    sync_wanted_ = true;
  }
  int attempts = ++download.attempts[n];
  LogWarn("piece download failed",
          {{"task", download.task->meta().task_id}, {"piece", n}, {"error", status}});
  if (attempts >= kPieceAttempts || absl::IsDataLoss(status) || IsOriginRefusal(status)) {
    download.task->Fail(status);
  } else if (download.task->FirstGap(download.Need(n)).has_value()) {
    download.wanted.insert(n);  // try again, first
  }
}

// Drops a download that has nothing left to do: complete (and reported) or failed.
void Downloads::Retire(const std::shared_ptr<Download>& download) {
  bool done = download->task->complete() || !download->task->failure().ok();
  if (!done || !download->in_flight.empty() || download->syncing) return;
  if (download->swarm && download->task->failure().ok() &&
      (!download->unreported.empty() || !download->registered)) {
    return;  // the sync thread reports the last pieces, then retires it
  }
  auto it = downloads_.find(download->task->meta().task_id);
  if (it != downloads_.end() && it->second == download) downloads_.erase(it);
}

void Downloads::Work() {
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(this, &Downloads::HasWork));
    if (stopping_) return;
    for (auto& [id, entry] : downloads_) {
      std::optional<Assignment> assignment = NextPiece(*entry);
      if (!assignment.has_value()) continue;
      std::shared_ptr<Download> download = entry;
      for (uint32_t n = assignment->piece; n <= assignment->last; ++n) {
        download->in_flight.insert(n);
        if (!assignment->parent.has_value()) download->origin_fetches.insert(n);
      }
      if (assignment->parent.has_value()) {
        ++download->parent_load[assignment->parent->host_id];
      } else {
        ++download->origin_runs;
      }
      mu_.Unlock();
      absl::Time start = absl::Now();
      uint64_t origin_bytes = 0;
      absl::Status status = assignment->parent.has_value()
                                ? FetchFromParent(*download, assignment->piece, *assignment->parent,
                                                  assignment->wait, assignment->urgent)
                                : FetchFromOrigin(*download, *assignment, &origin_bytes);
      mu_.Lock();
      Finished(download, *assignment, status, absl::Now() - start, origin_bytes);
      break;
    }
  }
}

// ---- The swarm's sync thread ------------------------------------------------------------------

bool Downloads::SyncDue(const Download& download, absl::Time now) const {
  if (!download.swarm || download.syncing) return false;
  if (!download.registered || download.ask_now || !download.unreported.empty() ||
      !download.failed_parents.empty() || !download.released.empty()) {
    return true;
  }
  if (download.task->complete() || !download.task->failure().ok()) return false;
  // A running origin fetch keeps its lease alive, even when nothing else is news; so does a
  // piece held in part.
  if (!download.origin_fetches.empty() || download.HoldsDeferredLeases()) {
    return now >= std::min(download.next_sync, download.RenewBy());
  }
  // Polling for news only while pieces are wanted (a range-only task that is satisfied is idle).
  if (download.wanted.empty() && !WantsWhole(download, now)) return false;
  return now >= download.next_sync;
}

std::vector<uint32_t> Downloads::PiecesToLease(const Download& download) const {
  const piece::Task& task = *download.task;
  // More candidates than we can fetch: the scheduler grants the first ones nobody else leased.
  int room = LeaseRoom(download) + kExtraLeaseCandidates;
  std::vector<uint32_t> pieces;
  auto consider = [&](uint32_t n) {
    if (task.HasPiece(n) || download.in_flight.contains(n) || download.leases.contains(n)) return;
    const bool parent_has = download.ParentHolds(n);
    auto attempts = download.parent_attempts.find(n);
    bool parents_failed =
        attempts != download.parent_attempts.end() && attempts->second >= kParentAttempts;
    if (parent_has && !parents_failed) return;
    if (std::find(pieces.begin(), pieces.end(), n) == pieces.end()) pieces.push_back(n);
  };
  for (uint32_t n : download.wanted) {
    if (static_cast<int>(pieces.size()) >= room) return pieces;
    consider(n);
  }
  // The rest of the task is leased by the seed peer when one is at work; else by whoever wants it.
  if (WantsWhole(download, absl::Now()) && (download.seed || !download.view.seed_active())) {
    uint32_t count = task.meta().piece_count();
    for (uint32_t n = 0; n < count && static_cast<int>(pieces.size()) < room; ++n) consider(n);
  }
  return pieces;
}

// Origin leases we could use now: one per free origin slot of the task, plus one for each piece
// a reader waits for (those are fetched at once, in runs). Leases of pieces held in part do not
// count: they are only kept so that nobody fetches the bytes we have again.
int Downloads::LeaseRoom(const Download& download) const {
  int others = 0;
  for (uint32_t n : download.leases) {
    if (!download.wanted.contains(n) && !download.deferred.contains(n)) ++others;
  }
  int readers = 0;  // as PiecesToLease counts them: no lease yet, no parent holding them
  for (uint32_t n : download.wanted) {
    if (!download.leases.contains(n) && !download.ParentHolds(n)) ++readers;
  }
  return std::max(config_.concurrent_pieces - others, 0) + std::min(readers, kMaxReaderLeases);
}

schedv1::SyncTaskRequest Downloads::BuildSync(Download& download) {
  schedv1::SyncTaskRequest request;
  request.set_host_id(options_.host_id);
  *request.mutable_task() = TaskInfoOf(download.task->meta(), download.origin.headers);
  for (schedv1::PieceReport& report : download.unreported) *request.add_pieces() = report;
  download.unreported.clear();
  for (const std::string& parent : download.failed_parents) request.add_failed_parents(parent);
  download.failed_parents.clear();
  for (uint32_t n : download.released) request.add_released(n);
  download.released.clear();
  // Only fetches running now: one that failed was released above, so a stalled fetch we gave up
  // on is never renewed.
  std::vector<uint32_t> fetching;
  for (uint32_t n : download.origin_fetches) {
    if (download.leases.contains(n)) fetching.push_back(n);
  }
  // Pieces held in part are still being fetched, as far as others are concerned: they ask us
  // for them (waiting), and Urge() completes them at once.
  for (const auto& [n, since] : download.deferred) {
    if (download.leases.contains(n) && !download.origin_fetches.contains(n)) fetching.push_back(n);
  }
  std::sort(fetching.begin(), fetching.end());
  request.mutable_fetching()->Add(fetching.begin(), fetching.end());
  request.set_whole(WantsWhole(download, absl::Now()));
  request.set_complete(download.task->complete());
  if (download.task->failure().ok()) {
    for (uint32_t n : PiecesToLease(download)) request.add_want_origin(n);
    request.set_max_origin_grants(static_cast<uint32_t>(std::max(LeaseRoom(download), 0)));
    if (request.max_origin_grants() == 0) request.clear_want_origin();
  }
  download.ask_now = false;
  download.last_sync = absl::Now();
  return request;
}

void Downloads::FallBackToOrigin(Download& download, const absl::Status& why) {
  if (!options_.back_to_source) return;
  LogWarn("scheduler unavailable: fetching the task from the origin",
          {{"task", download.task->meta().task_id}, {"error", why}});
  ++metrics_->origin_fallbacks;
  download.swarm = false;
  download.cursor = 0;
  scheduler_down_until_ = absl::Now() + kSchedulerDownFor;
}

void Downloads::ApplySync(Download& download, const schedv1::SyncTaskRequest& request,
                          const absl::StatusOr<schedv1::SyncTaskResponse>& response) {
  download.syncing = false;
  download.next_sync = absl::Now() + options_.sync_interval;
  ++version_;
  if (!response.ok()) {
    ++metrics_->scheduler_errors;
    // Keep the news for the next call.
    for (const schedv1::PieceReport& report : request.pieces()) {
      download.unreported.push_back(report);
    }
    download.released.insert(download.released.end(), request.released().begin(),
                             request.released().end());
    if (absl::IsFailedPrecondition(response.status()) && options_.reannounce) {
      // The scheduler does not know us (it restarted, or we were silent too long): it forgot
      // what we hold, and our leases. The sync loop announces the host again; then we report
      // everything, and ask again for the leases of pieces we have not started fetching.
      download.registered = false;
      ReportAllPieces(download);
      absl::erase_if(download.leases,
                     [&download](uint32_t n) { return !download.origin_fetches.contains(n); });
      return;
    }
    FallBackToOrigin(download, response.status());
    return;
  }
  download.registered = true;
  download.view = *response;
  download.parents.assign(response->parents().begin(), response->parents().end());
  uint32_t count = download.task->meta().piece_count();
  download.holders.assign(count, 0);
  for (const schedv1::Parent& parent : download.parents) {
    for (uint32_t n = 0; n < count; ++n) {
      if (BitmapHas(parent.bitmap(), n)) ++download.holders[n];
    }
  }
  for (uint32_t n : response->origin_granted()) download.leases.insert(n);
}

absl::Duration Downloads::SyncWait() const {
  absl::Duration wait = options_.sync_interval / 2;
  for (const auto& [id, download] : downloads_) {
    if (!download->origin_fetches.empty() || download->HoldsDeferredLeases()) {
      wait = std::min(wait, download->RenewInterval() / 2);
    }
  }
  return wait;
}

void Downloads::SyncLoop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    mu_.AwaitWithTimeout(absl::Condition(&sync_wanted_), SyncWait());
    if (stopping_) return;
    sync_wanted_ = false;
    ++version_;  // benched parents may be back: let the workers look again
    if (options_.scheduler->new_host_answers() != new_host_answers_seen_) ReregisterHeldTasks();
    bool reannounce = SyncDownloads();
    reannounce = SendReregistrations() || reannounce;
    if (reannounce && options_.reannounce) {
      mu_.Unlock();
      options_.reannounce();
      mu_.Lock();
      sync_wanted_ = true;
    }
  }
}

bool Downloads::SyncDownloads() {
  absl::Time now = absl::Now();
  std::vector<std::shared_ptr<Download>> due;
  for (auto& [id, download] : downloads_) {
    if (SyncDue(*download, now)) due.push_back(download);
  }
  bool unknown_host = false;
  for (const std::shared_ptr<Download>& download : due) {
    if (!download->swarm) continue;
    schedv1::SyncTaskRequest request = BuildSync(*download);
    download->syncing = true;
    mu_.Unlock();
    ++metrics_->scheduler_syncs;
    absl::StatusOr<schedv1::SyncTaskResponse> response = options_.scheduler->SyncTask(request);
    mu_.Lock();
    ApplySync(*download, request, response);
    if (!response.ok() && absl::IsFailedPrecondition(response.status())) unknown_host = true;
    Retire(download);
  }
  return unknown_host;
}

// Runs when an AnnounceHost answer said the scheduler did not know us. It knows none of our
// tasks then: downloads report every piece again with their next sync, and every other task of
// the store gets one sync of its own (SendReregistrations), so that other peers can fetch from
// us what we completed before. Once per such answer: never a sync of the whole store per
// keepalive.
void Downloads::ReregisterHeldTasks() {
  new_host_answers_seen_ = options_.scheduler->new_host_answers();
  for (auto& [id, download] : downloads_) {
    if (download->swarm) ReportAllPieces(*download);
  }
  mu_.Unlock();  // the store has its own lock, and listing it is not free
  std::vector<std::shared_ptr<piece::Task>> held = store_->List();
  mu_.Lock();
  reregister_.clear();
  for (std::shared_ptr<piece::Task>& task : held) {
    if (downloads_.contains(task->meta().task_id) || !task->failure().ok()) continue;
    if (task->pieces_present() == 0 && !task->complete()) continue;  // nothing to offer
    reregister_.push_back(std::move(task));
  }
  if (!reregister_.empty()) {
    LogInfo("scheduler did not know this host: registering the tasks held",
            {{"tasks", reregister_.size()}});
  }
}

bool Downloads::SendReregistrations() {
  size_t sent = 0;
  while (!reregister_.empty() && sent < kReregistrationsPerRound) {
    std::shared_ptr<piece::Task> task = std::move(reregister_.back());
    reregister_.pop_back();
    // Started downloading meanwhile (its own syncs report it), or deleted.
    if (downloads_.contains(task->meta().task_id) || !task->failure().ok()) continue;
    schedv1::SyncTaskRequest request;
    request.set_host_id(options_.host_id);
    *request.mutable_task() = TaskInfoOf(task->meta(), {});
    request.set_complete(task->complete());
    for (uint32_t n = 0; n < task->meta().piece_count() && !task->complete(); ++n) {
      if (!task->HasPiece(n)) continue;
      schedv1::PieceReport* report = request.add_pieces();
      report->set_number(n);
      report->set_crc32c(task->PieceCrc(n).value_or(0));
      report->set_source(schedv1::PIECE_SOURCE_PEER);
    }
    ++sent;
    mu_.Unlock();
    ++metrics_->scheduler_syncs;
    absl::Status status = options_.scheduler->SyncTask(request).status();
    mu_.Lock();
    if (status.ok()) continue;
    ++metrics_->scheduler_errors;
    // Forgotten again (announcing again queues everything anew), or unreachable: then the rest
    // would only wait for timeouts, and a scheduler that comes back empty says `new_host` again.
    LogWarn("registering a held task with the scheduler failed; the rest are not tried",
            {{"task", task->meta().task_id}, {"left", reregister_.size()}, {"error", status}});
    reregister_.clear();
    return absl::IsFailedPrecondition(status);
  }
  if (!reregister_.empty()) sync_wanted_ = true;  // the next round sends more at once
  return false;
}

}  // namespace naiad::peer
