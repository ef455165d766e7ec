// File: piece/piece_store.h
//
// The peer daemon's store of downloaded content ("tasks"), cut into pieces so that a task can be
// served to readers and to other peers while it is still arriving.
//
//   ASSIGN_OR_RETURN(auto store, PieceStore::Open({.dir = "/var/lib/naiad/peer"}));
//   ASSIGN_OR_RETURN(std::shared_ptr<Task> task,
//                    store->CreateOrOpen({.task_id = id, .url = url, .content_length = n,
//                                         .digest = "sha256:..."}));
//   RETURN_IF_ERROR(task->WritePiece(3, bytes));          // any order, any thread
//   if (task->WaitForPieces(first, last, deadline)) task->ReadRange(offset, out);
//
// On disk (docs/formats/piece-store.md): <dir>/tasks/<task id>/{meta.json, data, pieces}. `data`
// is a sparse file of content_length bytes; `pieces` holds one fixed record per piece (crc32c and
// a present flag). A piece's bytes are written before its record, so a crash never leaves a
// piece recorded whose bytes are missing; a restart recovers every recorded piece. meta.json is
// written atomically when the task is created.
//
// Thread-safe. Tasks are shared_ptrs: a task in use is never garbage-collected.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/env.h"

namespace naiad::piece {

// The piece size for a task of `content_length` bytes (the rule is in piece-store.md): small
// enough that a 1 MiB range request (what naiad fs sends) waits for little more than itself,
// large enough that a big blob has at most a few thousand pieces.
uint32_t PieceSizeFor(uint64_t content_length);

// Task identity. For a registry blob URL (".../v2/<repo>/blobs/sha256:<hex>") the digest's hex,
// so the same layer from two registries or mirrors is one task; otherwise the hex sha256 of the
// URL with the `filtered` query parameters removed.
std::string TaskIdForUrl(std::string_view url, const std::vector<std::string>& filtered);
// "sha256:<hex>" if the URL names a registry blob.
std::optional<std::string> BlobDigestOfUrl(std::string_view url);
// Whether `task_id` is exactly 64 lowercase hex digits, the only form that reaches the disk.
bool IsValidTaskId(std::string_view task_id);

// Bytes [begin, end) of a task's content.
struct ByteSpan {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t length() const { return end - begin; }
  bool operator==(const ByteSpan&) const = default;
};

struct TaskMeta {
  std::string task_id;  // 64 hex characters (anything else is InvalidArgument)
  std::string url;      // where it came from (filtered), for information
  uint64_t content_length = 0;
  uint32_t piece_size = 0;  // 0: PieceSizeFor(content_length)
  std::string digest;       // "sha256:<hex>": the whole content is checked against it at the end
  std::string content_type;

  uint32_t piece_count() const;
  // [offset, offset + length) of piece `n`.
  uint64_t PieceOffset(uint32_t n) const { return uint64_t{n} * piece_size; }
  uint32_t PieceLength(uint32_t n) const;
};

class Task {
 public:
  virtual ~Task() = default;
  virtual const TaskMeta& meta() const = 0;

  virtual bool HasPiece(uint32_t n) const = 0;
  virtual uint32_t pieces_present() const = 0;
  // The crc32c recorded for a present piece.
  virtual std::optional<uint32_t> PieceCrc(uint32_t n) const = 0;
  // Stores piece `n` (exactly PieceLength(n) bytes; with `crc`, they must match it) and wakes
  // waiters. Writing a present piece again is a no-op. When the last piece arrives and the task
  // has a digest, the whole content is verified: a mismatch drops every piece (DataLoss).
  virtual absl::Status WritePiece(uint32_t n, std::string_view bytes,
                                  std::optional<uint32_t> crc = std::nullopt) = 0;
  // Stores `bytes` at `offset`: part of one piece that is not present yet (what an origin request
  // for a reader's exact range brings of the pieces at the range's ends). Parts are kept in
  // memory only — a restart forgets them and their bytes are fetched again — and are readable
  // locally (HasRange, WaitForRange, ReadRange) but never count as a present piece: other peers
  // only ever get whole pieces. Once a piece's parts cover all of it, the piece becomes present
  // as if written whole (its crc32c computed over the bytes as stored). Bytes that cover the
  // whole piece are WritePiece; a part of a present piece is a no-op.
  virtual absl::Status WritePart(uint64_t offset, std::string_view bytes) = 0;
  // Blocks until pieces [first, last] are all present, the deadline passes (false) or the task is
  // failed (false).
  virtual bool WaitForPieces(uint32_t first, uint32_t last, absl::Time deadline) const = 0;
  // Whether every byte of `span` is readable (in present pieces or parts).
  virtual bool HasRange(ByteSpan span) const = 0;
  // Blocks until HasRange(span), the deadline passes (false) or the task is failed (false).
  virtual bool WaitForRange(ByteSpan span, absl::Time deadline) const = 0;
  // The first run of bytes in `span` that is not readable, as long as it goes on inside `span`;
  // nullopt if all of `span` is readable.
  virtual std::optional<ByteSpan> FirstGap(ByteSpan span) const = 0;
  // Copies [offset, offset + out.size()) of the content; FailedPrecondition if a byte in the
  // range is in neither a present piece nor a part.
  virtual absl::Status ReadRange(uint64_t offset, std::span<char> out) const = 0;
  // All pieces present (and, with a digest, verified).
  virtual bool complete() const = 0;
  // Marks the task failed: waiters wake up; pieces already present stay.
  virtual void Fail(const absl::Status& status) = 0;
  virtual absl::Status failure() const = 0;
};

struct PieceStoreOptions {
  std::string dir;
  absl::Duration task_ttl = absl::Hours(6);  // unused for this long: removed by GC
  uint64_t quota_bytes = 0;                  // bytes of task data kept (0 = unlimited)
  Clock* clock = nullptr;  // for last-access times and the TTL; nullptr: Clock::Real()
};

struct GcResult {
  uint64_t tasks_removed = 0;
  uint64_t bytes_freed = 0;
  std::vector<std::string> removed;  // their task ids (for the scheduler: this host left them)
};

struct PieceStoreStats {
  uint64_t tasks = 0;
  uint64_t bytes = 0;  // bytes of pieces present, over all tasks
};

class PieceStore {
 public:
  virtual ~PieceStore() = default;
  // Opens (creating) the store and recovers the tasks on disk; tasks whose files are damaged are
  // removed (logged).
  static absl::StatusOr<std::unique_ptr<PieceStore>> Open(const PieceStoreOptions& options);

  // The task with this id, created if absent. An existing task whose length or piece size
  // differs from `meta` is replaced.
  virtual absl::StatusOr<std::shared_ptr<Task>> CreateOrOpen(const TaskMeta& meta) = 0;
  // The task if the store has it (nullptr otherwise).
  virtual std::shared_ptr<Task> Find(std::string_view task_id) = 0;
  virtual absl::Status Delete(std::string_view task_id) = 0;
  // Every task held, in no order. Unlike Find() it does not count as a use (the GC's order is
  // unchanged); a task is not collected while the caller keeps it.
  virtual std::vector<std::shared_ptr<Task>> List() = 0;
  // Removes tasks unused for task_ttl, then least recently used tasks while over quota; tasks in
  // use (held by someone) are skipped.
  virtual GcResult CollectGarbage() = 0;
  virtual PieceStoreStats Stats() const = 0;
};

}  // namespace naiad::piece
