// File: peer/downloads.h
//
// The peer's task downloads: for each task, workers that fetch its pieces into the piece store,
// from parents in the swarm or from the origin (back to source).
//
//   ASSIGN_OR_RETURN(std::shared_ptr<piece::Task> task, downloads.Open(id, origin, &error));
//   downloads.Want(task, first_piece, last_piece, /*whole=*/prefetch, /*urgent=*/true);
//   task->WaitForPieces(first_piece, last_piece, deadline);
//
// Without a scheduler every piece comes from the origin with a ranged GET. With one (the swarm),
// a sync thread keeps each task's view fresh through SyncTask (docs/design/scheduler.md): it
// reports the pieces gained, learns which parents hold which pieces, and asks for origin leases
// for pieces nobody holds. A worker then takes, in order of preference:
//   1. a piece a reader waits for (Want's urgent range), from a parent holding it (or fetching
//      it from the origin right now: that parent answers when it arrives), or under our lease;
//   2. with `whole`, the rarest piece among the parents (random among equals), so that peers
//      fetching the same task spread out instead of all queueing at one parent;
// each parent serving at most a few of our requests at once (the least loaded first, normal
// peers before seed peers so a seed's upload goes to pieces nobody else has). A piece that
// fails from a parent is retried elsewhere and the parent reported; a piece no parent holds is
// fetched from the origin only under a lease (the scheduler grants each piece to one peer at a
// time). If the scheduler cannot be reached, the task falls back to the origin for everything.
//
// Every sync lists the origin fetches running under our leases (`fetching`: the scheduler renews
// those leases, so a slow fetch keeps its piece) and says whether the task is wanted `whole`
// (only then may the scheduler put a seed peer on it). A task with an origin fetch running syncs
// at least every lease timeout / 3; a fetch that fails gives its lease back (`released`).
//
// When an AnnounceHost answer says the scheduler did not know this host (it restarted, or this
// daemon did: SchedulerClient::new_host_answers() moved), every task of the store is synced once
// (its pieces, complete or not) so that this host is a parent for it again; tasks being
// downloaded report all their pieces again.
//
// Thread-safe. The destructor stops the workers (in-flight requests are cancelled).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "net/http_client.h"
#include "net/http_types.h"
#include "peer/config.h"
#include "peer/piece_client.h"
#include "peer/scheduler_client.h"
#include "piece/piece_store.h"

namespace naiad::peer {

// Where a task's bytes come from when no peer has them.
struct OriginRequest {
  std::string url;
  net::HttpHeaders headers;  // the client's headers (Authorization, ...), for the origin only
};

// An origin answer that is not a success, to relay to the client as is.
struct OriginError {
  int status = 502;
  std::string body;
};

struct PeerMetrics {
  std::atomic<uint64_t> origin_bytes{0};     // piece bytes fetched from origins
  std::atomic<uint64_t> origin_requests{0};  // ranged piece requests to origins
  std::atomic<uint64_t> origin_failures{0};
  std::atomic<uint64_t> peer_bytes{0};  // piece bytes fetched from parents
  std::atomic<uint64_t> peer_pieces{0};
  std::atomic<uint64_t> peer_failures{0};
  std::atomic<uint64_t> pieces_stored{0};
  std::atomic<uint64_t> tasks_started{0};    // tasks a download was started for
  std::atomic<uint64_t> back_to_source{0};   // tasks that fetched at least one piece from origin
  std::atomic<uint64_t> scheduler_syncs{0};  // SyncTask calls
  std::atomic<uint64_t> scheduler_errors{0};
  std::atomic<uint64_t> origin_fallbacks{0};  // tasks moved to the origin: scheduler unreachable
  std::atomic<uint64_t> seed_tasks{0};        // tasks a scheduler asked this seed peer to fetch
  std::atomic<uint64_t> served_bytes{0};      // body bytes sent to proxy clients
  std::atomic<uint64_t> task_hits{0};         // requests answered from complete tasks
  std::atomic<uint64_t> p2p_requests{0};
  std::atomic<uint64_t> direct_requests{0};
  std::atomic<uint64_t> rejected_requests{0};
};

struct DownloadsOptions {
  piece::PieceStore* store = nullptr;
  DownloadConfig config;
  PeerMetrics* metrics = nullptr;
  // The swarm. Without a scheduler, every piece comes from the origin.
  SchedulerClient* scheduler = nullptr;
  PieceClient* piece_client = nullptr;
  std::string host_id;
  bool back_to_source = true;  // false: never fall back to the origin when the scheduler fails
  // Called when the scheduler says it does not know this host (it restarted): announce again.
  std::function<void()> reannounce;
  // How often a task that still misses pieces asks the scheduler for news.
  absl::Duration sync_interval = absl::Milliseconds(100);
};

// Whether a failed task's status says the origin refused the content (401, 403, 404): retrying
// cannot help, and the proxy relays the origin's own answer to its client instead.
bool IsOriginRefusal(const absl::Status& status);

// Where a task's bytes came from, on this peer.
struct TaskTraffic {
  uint64_t origin_bytes = 0;
  uint64_t peer_bytes = 0;
};

// What a scheduler asks a seed peer to fetch (POST /v1/seed on the upload service).
struct SeedTask {
  piece::TaskMeta meta;
  OriginRequest origin;
};

class Downloads {
 public:
  explicit Downloads(DownloadsOptions options);
  ~Downloads();

  // The task for `task_id`, creating it (its length learnt from the origin) if the store does
  // not have it. An origin that answers with an HTTP error yields FailedPrecondition with
  // `origin_error` filled in.
  absl::StatusOr<std::shared_ptr<piece::Task>> Open(const std::string& task_id,
                                                    const OriginRequest& origin,
                                                    OriginError* origin_error);
  // Asks for pieces [first, last] first and, with `whole`, every piece of the task. Pieces that
  // are not `urgent` (a reader streams the whole task) are only a hint: in the swarm they come
  // in the swarm's order, rarest first. `whole` with `urgent` (a ranged request with prefetch)
  // fetches the rest in the background: in the swarm, once no `reader` (someone waiting on a
  // range now, as opposed to a prefetcher) has asked for a range of the task for a second.
  // `bytes`, when given, are the bytes the reader needs: of the pieces at its ends only those
  // are fetched from the origin at once (the reader never waits on, and the origin's link never
  // carries first, bytes nobody asked for); the rest of those pieces follows once readers are
  // quiet, when the whole task is wanted, or at once when another peer waits for the piece.
  void Want(const std::shared_ptr<piece::Task>& task, uint32_t first, uint32_t last, bool whole,
            bool urgent = true, bool reader = false,
            std::optional<piece::ByteSpan> bytes = std::nullopt);
  // Another peer waits for pieces [first, last] of the task: whatever of them we hold only in
  // part is completed now rather than later.
  void Urge(const std::string& task_id, uint32_t first, uint32_t last);
  // Seed-peer mode: fetch the whole task (from the origin under leases, or from other peers).
  absl::Status Seed(const SeedTask& seed);
  // Bytes fetched for the task since this daemon started (recent tasks only).
  TaskTraffic Traffic(const std::string& task_id);

 private:
  struct Download;
  struct Assignment {
    uint32_t piece = 0;
    uint32_t last = 0;      // the run of pieces [piece, last] (origin requests only)
    piece::ByteSpan bytes;  // what is asked for: a whole piece from a parent; from the origin,
                            // the bytes of the run still missing (a reader's exact range)
    std::optional<ParentAddress> parent;  // nullopt: from the origin
    bool wait = false;    // the parent is still fetching it from the origin: wait for it there
    bool urgent = false;  // a reader waits on it
  };

  // The task's shape as the scheduler has it (another host registered it), if it does.
  std::optional<piece::TaskMeta> MetaFromScheduler(const std::string& task_id,
                                                   const OriginRequest& origin);
  absl::StatusOr<piece::TaskMeta> ProbeOrigin(const std::string& task_id,
                                              const OriginRequest& origin,
                                              OriginError* origin_error);
  // Registers a download for `task` (no-op if there is one). Returns the registered task.
  std::shared_ptr<piece::Task> AddDownload(std::shared_ptr<piece::Task> task,
                                           const OriginRequest& origin, bool seed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void ReportAllPieces(Download& download) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The scheduler forgot what this host holds: queues one sync of every task in the store.
  void ReregisterHeldTasks() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Piece selection.
  std::optional<Assignment> NextPiece(Download& download) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<Assignment> FindNextPiece(Download& download) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<Assignment> SourceFor(Download& download, uint32_t n, bool urgent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<Assignment> RarestPiece(Download& download) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An origin assignment for piece n: its missing bytes (those a reader needs, if it is wanted),
  // run on over the following wanted pieces leased to us.
  Assignment OriginRun(Download& download, Assignment assignment)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pieces held in part, completed once readers are quiet or the whole task is wanted.
  std::optional<Assignment> DeferredPiece(Download& download, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasWork() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Work();
  // Stores what arrives piece by piece (parts at the ends); `stored` counts the bytes stored.
  absl::Status FetchFromOrigin(const Download& download, const Assignment& assignment,
                               uint64_t* stored);
  absl::Status FetchFromParent(const Download& download, uint32_t n, const ParentAddress& parent,
                               bool wait, bool urgent);
  void Finished(const std::shared_ptr<Download>& download, const Assignment& assignment,
                const absl::Status& status, absl::Duration cost, uint64_t origin_bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One piece of a finished assignment whose asked-for bytes arrived, or did not.
  void PieceFetched(Download& download, const Assignment& assignment, uint32_t n,
                    absl::Duration cost) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PieceFailed(Download& download, const Assignment& assignment, uint32_t n,
                   const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Retire(const std::shared_ptr<Download>& download) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The swarm's sync thread.
  void SyncLoop();
  // How long the sync thread may sleep when nobody asks for a sync.
  absl::Duration SyncWait() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Syncs the downloads that are due; true if the scheduler said it does not know this host.
  bool SyncDownloads() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends some of the queued re-registrations; true if the scheduler does not know this host.
  bool SendReregistrations() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool SyncDue(const Download& download, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the task's pieces beyond the wanted ones are to be fetched now.
  bool WantsWhole(const Download& download, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  schedv1::SyncTaskRequest BuildSync(Download& download) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<uint32_t> PiecesToLease(const Download& download) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int LeaseRoom(const Download& download) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplySync(Download& download, const schedv1::SyncTaskRequest& request,
                 const absl::StatusOr<schedv1::SyncTaskResponse>& response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FallBackToOrigin(Download& download, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const DownloadsOptions options_;
  piece::PieceStore* const store_;
  const DownloadConfig config_;
  PeerMetrics* const metrics_;
  net::HttpClient client_;
  net::CancellationToken cancel_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Download>> downloads_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool sync_wanted_ ABSL_GUARDED_BY(mu_) = false;  // something to tell the scheduler now
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;      // bumped whenever piece selection may change
  // When a reader (not a prefetcher) last asked for a range of any task: see WantsWhole().
  absl::Time last_reader_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::flat_hash_map<std::string, TaskTraffic> traffic_ ABSL_GUARDED_BY(mu_);
  // After a scheduler failure, new tasks go straight to the origin until then.
  absl::Time scheduler_down_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // SchedulerClient::new_host_answers() when the store's tasks were last queued for
  // re-registration.
  uint64_t new_host_answers_seen_ ABSL_GUARDED_BY(mu_) = 0;
  // Tasks of the store (not being downloaded) still to be synced once, after the scheduler
  // forgot this host.
  std::vector<std::shared_ptr<piece::Task>> reregister_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_;  // a fixed pool, started by the constructor
  std::thread sync_thread_;
};

}  // namespace naiad::peer
