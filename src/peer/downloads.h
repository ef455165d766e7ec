// File: peer/downloads.h
//
// The peer's task downloads: for each task, workers that fetch its pieces into the piece store —
// today from the origin (back to source) with ranged GETs; parents in the swarm come with the
// scheduler. Pieces a waiting reader needs are fetched first; with `whole`, the rest of the task
// follows in the background.
//
//   ASSIGN_OR_RETURN(std::shared_ptr<piece::Task> task, downloads.Open(id, origin));
//   downloads.Want(task->meta().task_id, first_piece, last_piece, /*whole=*/prefetch);
//   task->WaitForPieces(first_piece, last_piece, deadline);
//
// Thread-safe. The destructor stops the workers (in-flight requests are cancelled).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "net/http_client.h"
#include "net/http_types.h"
#include "peer/config.h"
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
  std::atomic<uint64_t> pieces_stored{0};
  std::atomic<uint64_t> tasks_started{0};  // tasks a download was started for
  std::atomic<uint64_t> served_bytes{0};   // body bytes sent to proxy clients
  std::atomic<uint64_t> task_hits{0};      // requests answered from complete tasks
  std::atomic<uint64_t> p2p_requests{0};
  std::atomic<uint64_t> direct_requests{0};
  std::atomic<uint64_t> rejected_requests{0};
};

class Downloads {
 public:
  Downloads(piece::PieceStore* store, DownloadConfig config, PeerMetrics* metrics);
  ~Downloads();

  // The task for `task_id`, creating it (its length learnt from the origin) if the store does
  // not have it. An origin that answers with an HTTP error yields FailedPrecondition with
  // `origin_error` filled in.
  absl::StatusOr<std::shared_ptr<piece::Task>> Open(const std::string& task_id,
                                                    const OriginRequest& origin,
                                                    OriginError* origin_error);
  // Asks for pieces [first, last] first and, with `whole`, every piece of the task.
  void Want(const std::shared_ptr<piece::Task>& task, uint32_t first, uint32_t last, bool whole);

 private:
  struct Download;

  absl::StatusOr<piece::TaskMeta> ProbeOrigin(const std::string& task_id,
                                              const OriginRequest& origin,
                                              OriginError* origin_error);
  void Work();
  // The next piece a worker of `download` should fetch.
  std::optional<uint32_t> NextPiece(Download& download) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether some download has a piece to fetch (or we are stopping).
  bool HasWork() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status FetchPiece(const Download& download, uint32_t n);
  void Finished(const std::shared_ptr<Download>& download, uint32_t n, const absl::Status& status);

  piece::PieceStore* const store_;
  const DownloadConfig config_;
  PeerMetrics* const metrics_;
  net::HttpClient client_;
  net::CancellationToken cancel_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Download>> downloads_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;  // a fixed pool, started by the constructor
};

}  // namespace naiad::peer
