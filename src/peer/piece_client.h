// File: peer/piece_client.h
//
// The child side of piece transfer: fetches one piece of a task from a parent's upload service
// (peer/upload.h; wire format in docs/formats/piece-transfer.md) and checks it before anyone
// trusts it.
//
//   PieceClient client;
//   ASSIGN_OR_RETURN(std::string bytes,
//                    client.FetchPiece(parent, task->meta(), n, crc_from_scheduler,
//                                      /*wait=*/absl::Seconds(2), /*timeout=*/absl::Seconds(30),
//                                      &cancel, my_host_id));
//   RETURN_IF_ERROR(task->WritePiece(n, bytes, crc_from_scheduler));
//
// What the parent's answer means, decided here and nowhere else:
//   OK                 exactly the piece's bytes, whose crc32c matched every value known for it
//   NotFound           the parent does not have the piece (or the task), even after `wait`
//   ResourceExhausted  the parent is busy (429): try another parent, or this one later
//   InvalidArgument    the parent's task does not fit the request (400, 416): wrong length?
//   DataLoss           wrong bytes (length or crc32c): do not use this parent for the task
//   Unavailable, DeadlineExceeded, Cancelled   transport: unreachable, too slow, cancelled
// Messages name the parent, the task and the piece.
//
// Thread-safe; connections to a parent are reused across calls and threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/http_client.h"
#include "net/http_types.h"
#include "piece/piece_store.h"

namespace naiad::peer {

// Where a parent's upload service listens.
struct ParentAddress {
  std::string host_id;  // for messages
  std::string ip;       // an IPv4 or IPv6 literal (or a host name)
  uint16_t port = 0;    // its upload port
};

class PieceClient {
 public:
  explicit PieceClient(net::HttpClientOptions options = {.connect_timeout = absl::Seconds(3)});

  // Piece `n` of the task `meta` describes, from `parent`. `expected_crc` is the crc32c the
  // scheduler recorded for the piece (from whoever fetched it from the origin), if known; the
  // parent's own claim (its X-Naiad-Piece-Crc32c header) is checked too. With `wait` > 0 the
  // parent may hold the request up to that long (at most kMaxWaitMs) for a piece it is still
  // receiving. `timeout` bounds the transfer, on top of the wait (zero: no bound but the client's
  // stall detection). `cancel` may be nullptr.
  // `my_host_id` tells the parent who asks (its per-peer limit).
  absl::StatusOr<std::string> FetchPiece(const ParentAddress& parent, const piece::TaskMeta& meta,
                                         uint32_t n, std::optional<uint32_t> expected_crc,
                                         absl::Duration wait, absl::Duration timeout,
                                         const net::CancellationToken* cancel,
                                         std::string_view my_host_id, bool urgent = false);

  // The parent's piece bitmap of a task (GET /v1/tasks/<id>): bit n is byte n / 8, most
  // significant bit first (read it with BitmapHasPiece() from peer/upload.h). NotFound if the
  // parent does not have the task; DataLoss if its answer does not fit `meta`.
  absl::StatusOr<std::string> FetchBitmap(const ParentAddress& parent, const piece::TaskMeta& meta,
                                          absl::Duration timeout,
                                          const net::CancellationToken* cancel);

 private:
  net::HttpClient client_;
};

}  // namespace naiad::peer
