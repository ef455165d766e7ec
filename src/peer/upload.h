// File: peer/upload.h
//
// The upload service: the HTTP endpoints other peers fetch pieces from (the upload port, 65002,
// Go dfdaemon's `upload.tcpListen`), and the one the scheduler uses to make a seed peer fetch a
// task from its origin. The wire format is docs/formats/piece-transfer.md.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<UploadService> upload,
//                    UploadService::Create(store, config.upload, /*on_seed=*/nullptr));
//   ASSIGN_OR_RETURN(std::unique_ptr<net::HttpServer> server,
//                    net::HttpServer::Start({.address = "0.0.0.0", .port = 65002},
//                                           [&](const net::ServerRequest& request,
//                                               net::ResponseWriter& writer) {
//                                             upload->Handle(request, writer);
//                                           }));
//   ...
//   upload->Stop();       // requests waiting for a piece give up now
//   server->Shutdown();
//
// Endpoints:
//   GET  /download/<id[0:3]>/<id>?peerId=<host id>  one byte range of a task (Go dfdaemon v2's
//                                                    path, so its peers fit); 206 + the bytes
//   GET  /v1/tasks/<id>                             which pieces this peer has (JSON + bitmap)
//   POST /v1/seed                                   the scheduler asks a seed peer for a task
//   GET  /healthy                                   200
//
// Only valid task ids (64 lowercase hex digits) ever reach the store. Uploads are limited in
// number (in total and per requesting peer: beyond, 429 at once, never a queue) and share one
// byte rate (a token bucket). A range whose pieces are missing is 404, unless the request says
// how long it may wait for them (X-Naiad-Wait-Ms), which lets a child stream a piece right behind
// a parent that is still receiving it.
//
// Thread-safe: Handle() runs on the server's worker threads, concurrently. The store and the
// seed handler must outlive the service. Give the server more worker threads than
// `concurrent_limit`: an upload (waiting or sending) holds a thread, and a connection that finds
// none free waits in the accept backlog instead of being answered 429.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "net/http_server.h"
#include "net/http_types.h"
#include "peer/config.h"
#include "piece/piece_store.h"

namespace naiad::peer {

// Request header: how long (milliseconds, decimal) the upload may wait for missing pieces.
inline constexpr std::string_view kWaitMsHeader = "X-Naiad-Wait-Ms";
// Longer waits are cut to this.
inline constexpr int kMaxWaitMs = 10000;
// Response header on a range that is exactly one piece: its crc32c, 8 lowercase hex digits.
inline constexpr std::string_view kPieceCrcHeader = "X-Naiad-Piece-Crc32c";
// Request header "true": a reader waits on this piece. A request for exactly one piece without
// it (and without kWaitMsHeader) is refused (429) while the same piece is being sent to another
// peer: the requester takes another piece, or this one from whoever receives it (so a piece only
// this peer has is not sent to many peers at once over one link). Nor is it sent again to such a
// requester within kResendDelay of the last time (its receiver reports it to the scheduler
// meanwhile).
inline constexpr std::string_view kUrgentHeader = "X-Naiad-Urgent";
inline constexpr absl::Duration kResendDelay = absl::Milliseconds(500);

// What the scheduler asks a seed peer to fetch from the origin (the body of POST /v1/seed).
struct SeedRequest {
  std::string task_id;  // 64 lowercase hex digits
  std::string url;      // http(s)
  uint64_t content_length = 0;
  uint32_t piece_size = 0;   // never 0 once parsed (0 in the JSON: piece::PieceSizeFor)
  std::string digest;        // "sha256:<hex>" or empty
  net::HttpHeaders headers;  // for the origin request (Authorization, ...)
};

// Starts (asynchronously: it must return quickly) the download of a task from its origin. Its
// error becomes the HTTP status of the answer (net::StatusToHttpStatus).
using SeedHandler = std::function<absl::Status(const SeedRequest&)>;

// The JSON body of POST /v1/seed, and its parser. Errors are InvalidArgument naming the field.
std::string SeedRequestToJson(const SeedRequest& request);
absl::StatusOr<SeedRequest> ParseSeedRequest(std::string_view json);

// A task's piece bitmap: bit n is byte n / 8, most significant bit first; set = present.
std::string PieceBitmap(const piece::Task& task);
bool BitmapHasPiece(std::string_view bitmap, uint32_t n);

struct UploadMetrics {
  std::atomic<uint64_t> bytes_served{0};   // body bytes of /download answers, as written
  std::atomic<uint64_t> pieces_served{0};  // pieces touched by /download answers sent in full
  std::atomic<uint64_t> requests{0};       // every request handled
  std::atomic<uint64_t> rejected_busy{0};  // 429: over a concurrency limit
  std::atomic<uint64_t> rejected_bad{0};   // 400, 405, 416: malformed or impossible requests
  std::atomic<uint64_t> not_found{0};      // 404: unknown task, missing piece, unknown path
};

class UploadService {
 public:
  // Fails with "upload.rateLimit: ..." when the configured rate is not a byte quantity.
  static absl::StatusOr<std::unique_ptr<UploadService>> Create(piece::PieceStore* store,
                                                               const UploadConfig& config,
                                                               SeedHandler on_seed);
  // `on_seed` nullptr: not a seed peer (POST /v1/seed is 404). Prefer Create(): an invalid
  // rate_limit here is logged and treated as unlimited.
  UploadService(piece::PieceStore* store, const UploadConfig& config, SeedHandler on_seed);
  ~UploadService();
  UploadService(const UploadService&) = delete;
  UploadService& operator=(const UploadService&) = delete;

  // Serves one request; mount it on a net::HttpServer.
  void Handle(const net::ServerRequest& request, net::ResponseWriter& writer);
  // Ends the waits of requests for missing pieces (they answer 503) and refuses new uploads with
  // 503. For shutdown: a waiting handler would otherwise hold up HttpServer::Shutdown().
  void Stop();

  // Called when a request waits (X-Naiad-Wait-Ms) for pieces [first, last] of a task that are
  // not all here yet: the peer's downloads complete what they hold in part at once.
  using WaitHandler =
      std::function<void(const std::string& task_id, uint32_t first, uint32_t last)>;
  void SetWaitHandler(WaitHandler handler);

  // Uploads in progress (admitted /download requests, waiting or sending).
  int active() const;
  const UploadMetrics& metrics() const { return metrics_; }

 private:
  class Slot;         // one admitted upload; releases itself
  class TokenBucket;  // the shared byte rate

  void HandleDownload(const net::ServerRequest& request, std::string_view rest,
                      net::ResponseWriter& writer);
  void HandleTaskState(std::string_view task_id, net::ResponseWriter& writer);
  void HandleSeed(const net::ServerRequest& request, net::ResponseWriter& writer);

  // A slot for one more upload to `requester`; ResourceExhausted when a limit is reached.
  absl::StatusOr<std::unique_ptr<Slot>> Admit(const std::string& requester);
  void Release(const std::string& requester);
  absl::Status ClaimPiece(const std::string& key, uint32_t n);
  // OK once every piece of [first, last] is present; NotFound when one is still missing at the
  // end of `wait`.
  absl::Status AwaitPieces(const piece::Task& task, uint32_t first, uint32_t last,
                           absl::Duration wait) const;
  // Answers with the bytes of `range`. The slot is given back (and the pieces counted) just
  // before the last write, so that a requester that asks again as soon as it has this answer
  // finds its place free.
  void Send(const piece::Task& task, net::ByteRange range, bool partial, bool head,
            std::unique_ptr<Slot> slot, net::ResponseWriter& writer);
  // Writes `range` in slices charged to the rate; runs `before_last_write` just before the last.
  absl::Status StreamRange(const piece::Task& task, net::ByteRange range,
                           const std::function<void()>& before_last_write,
                           net::ResponseWriter& writer);
  absl::Status WriteThrottled(std::string_view data, const std::function<void()>* before_last,
                              net::ResponseWriter& writer);
  // Answers an error: its HTTP status, the message as the body, Retry-After on 429 and
  // Content-Range (with `content_length`) on 416.
  void Fail(net::ResponseWriter& writer, const absl::Status& status, uint64_t content_length = 0);
  // 405 with Allow: `allowed`.
  void RejectMethod(net::ResponseWriter& writer, std::string_view allowed);

  piece::PieceStore* const store_;
  const SeedHandler on_seed_;
  const int concurrent_limit_;
  const int per_peer_limit_;
  std::unique_ptr<TokenBucket> bucket_;  // nullptr: unlimited
  UploadMetrics metrics_;
  std::atomic<bool> stopping_{false};

  mutable absl::Mutex mu_;
  WaitHandler on_wait_ ABSL_GUARDED_BY(mu_);
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, int> per_peer_ ABSL_GUARDED_BY(mu_);  // only entries > 0
  // "<task id>/<piece>" of single-piece uploads in progress (see kUrgentHeader).
  absl::flat_hash_set<std::string> sending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Time> sent_at_ ABSL_GUARDED_BY(mu_);  // last finished
};

}  // namespace naiad::peer
