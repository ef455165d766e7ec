#include "piece/piece_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "nlohmann/json.hpp"
#include "piece/pieces_file.h"

namespace naiad::piece {
namespace {

constexpr int kMetaVersion = 1;
constexpr uint64_t kVerifyBufferSize = uint64_t{1} << 20;

std::string MetaPath(const std::string& dir) { return StrCat(dir, "/meta.json"); }
std::string DataPath(const std::string& dir) { return StrCat(dir, "/data"); }
std::string PiecesPath(const std::string& dir) { return StrCat(dir, "/pieces"); }

// Checks a task's description and fills in the piece size. The error code is InvalidArgument;
// recovery turns it into "damaged".
absl::Status NormalizeMeta(TaskMeta& meta) {
  if (!IsValidTaskId(meta.task_id)) {
    return absl::InvalidArgumentError(
        StrCat("task id \"", meta.task_id.substr(0, 100), "\" is not 64 lowercase hex digits"));
  }
  if (meta.piece_size == 0) meta.piece_size = PieceSizeFor(meta.content_length);
  const uint64_t count = (meta.content_length + meta.piece_size - 1) / meta.piece_size;
  if (count > UINT32_MAX) {
    return absl::InvalidArgumentError(StrCat("task ", meta.task_id, ": ", meta.content_length,
                                             " bytes in pieces of ", meta.piece_size,
                                             " is too many pieces"));
  }
  if (!meta.digest.empty()) {
    absl::StatusOr<Digest> digest = Digest::Parse(meta.digest);
    if (!digest.ok() || digest->algorithm != DigestAlgorithm::kSha256) {
      return absl::InvalidArgumentError(
          StrCat("task ", meta.task_id, ": digest \"", meta.digest, "\" is not sha256:<hex>"));
    }
    if (meta.content_length == 0 && *digest != Digest::Of(DigestAlgorithm::kSha256, "")) {
      return absl::InvalidArgumentError(
          StrCat("task ", meta.task_id, ": empty content cannot have digest ", meta.digest));
    }
  }
  return absl::OkStatus();
}

std::string MetaJson(const TaskMeta& meta, absl::Time created, absl::Time last_access) {
  const nlohmann::json json = {
      {"version", kMetaVersion},
      {"task_id", meta.task_id},
      {"url", meta.url},
      {"content_length", meta.content_length},
      {"piece_size", meta.piece_size},
      {"digest", meta.digest},
      {"content_type", meta.content_type},
      {"created_unix_ms", absl::ToUnixMillis(created)},
      {"last_access_unix_ms", absl::ToUnixMillis(last_access)},
  };
  // `replace`: a URL that is not UTF-8 must not make dump() throw; the URL is informational.
  return json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

struct StoredMeta {
  TaskMeta meta;
  absl::Time created;
  absl::Time last_access;
};

absl::StatusOr<StoredMeta> ParseMetaJson(std::string_view text) {
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::DataLossError("meta.json is not a JSON object");
  }
  auto field = [&](const char* key) -> const nlohmann::json* {
    auto it = json.find(key);
    return it == json.end() ? nullptr : &*it;
  };
  auto string_field = [&](const char* key, std::string& out) -> absl::Status {
    const nlohmann::json* value = field(key);
    if (value == nullptr || !value->is_string()) {
      return absl::DataLossError(StrCat("meta.json: \"", key, "\" is not a string"));
    }
    out = value->get<std::string>();
    return absl::OkStatus();
  };
  auto unsigned_field = [&](const char* key, uint64_t max, uint64_t& out) -> absl::Status {
    const nlohmann::json* value = field(key);
    if (value == nullptr || !value->is_number_unsigned() || value->get<uint64_t>() > max) {
      return absl::DataLossError(StrCat("meta.json: \"", key, "\" is not an integer in range"));
    }
    out = value->get<uint64_t>();
    return absl::OkStatus();
  };
  auto time_field = [&](const char* key, absl::Time& out) -> absl::Status {
    const nlohmann::json* value = field(key);
    if (value == nullptr || !value->is_number_integer()) {
      return absl::DataLossError(StrCat("meta.json: \"", key, "\" is not an integer"));
    }
    out = absl::FromUnixMillis(value->get<int64_t>());
    return absl::OkStatus();
  };

  uint64_t version = 0;
  RETURN_IF_ERROR(unsigned_field("version", UINT32_MAX, version));
  if (version != kMetaVersion) {
    return absl::DataLossError(StrCat("meta.json: version ", version));
  }
  StoredMeta stored;
  uint64_t piece_size = 0;
  RETURN_IF_ERROR(string_field("task_id", stored.meta.task_id));
  RETURN_IF_ERROR(string_field("url", stored.meta.url));
  RETURN_IF_ERROR(unsigned_field("content_length", UINT64_MAX, stored.meta.content_length));
  RETURN_IF_ERROR(unsigned_field("piece_size", UINT32_MAX, piece_size));
  RETURN_IF_ERROR(string_field("digest", stored.meta.digest));
  RETURN_IF_ERROR(string_field("content_type", stored.meta.content_type));
  RETURN_IF_ERROR(time_field("created_unix_ms", stored.created));
  RETURN_IF_ERROR(time_field("last_access_unix_ms", stored.last_access));
  if (piece_size == 0) return absl::DataLossError("meta.json: piece_size is 0");
  stored.meta.piece_size = static_cast<uint32_t>(piece_size);
  return stored;
}

absl::Status Fdatasync(int fd, const std::string& path) {
  if (::fdatasync(fd) != 0) return ErrnoError(errno, StrCat("fdatasync ", path));
  return absl::OkStatus();
}

std::string_view RecordBytes(const PieceRecord& record) {
  return {reinterpret_cast<const char*>(&record), sizeof(record)};
}

class TaskImpl final : public Task {
 public:
  TaskImpl(TaskMeta meta, std::string dir, Clock* clock, UniqueFd data_fd, UniqueFd pieces_fd,
           const std::vector<PieceRecord>& records, absl::Time created, absl::Time last_access)
      : meta_(std::move(meta)),
        dir_(std::move(dir)),
        clock_(clock),
        data_fd_(std::move(data_fd)),
        pieces_fd_(std::move(pieces_fd)),
        created_(created),
        last_access_(absl::ToUnixNanos(last_access)),
        persisted_access_(absl::ToUnixNanos(last_access)) {
    const uint32_t count = meta_.piece_count();
    present_.assign(count, 0);
    crcs_.assign(count, 0);
    in_flight_.assign(count, 0);
    for (uint32_t n = 0; n < count && n < records.size(); ++n) {
      if (records[n].flags != kPieceFlagPresent) continue;
      present_[n] = 1;
      crcs_[n] = records[n].crc32c;
      present_count_ += 1;
      bytes_present_ += meta_.PieceLength(n);
    }
  }

  const TaskMeta& meta() const override { return meta_; }

  bool HasPiece(uint32_t n) const override {
    absl::MutexLock lock(&mu_);
    return n < present_.size() && present_[n] != 0;
  }

  uint32_t pieces_present() const override {
    absl::MutexLock lock(&mu_);
    return present_count_;
  }

  std::optional<uint32_t> PieceCrc(uint32_t n) const override {
    absl::MutexLock lock(&mu_);
    if (n >= present_.size() || present_[n] == 0) return std::nullopt;
    return crcs_[n];
  }

  absl::Status WritePiece(uint32_t n, std::string_view bytes, std::optional<uint32_t> crc) override;
  absl::Status WritePart(uint64_t offset, std::string_view bytes) override;
  bool WaitForPieces(uint32_t first, uint32_t last, absl::Time deadline) const override;
  bool HasRange(ByteSpan span) const override {
    absl::MutexLock lock(&mu_);
    return !Gap(span).has_value();
  }
  bool WaitForRange(ByteSpan span, absl::Time deadline) const override;
  std::optional<ByteSpan> FirstGap(ByteSpan span) const override {
    absl::MutexLock lock(&mu_);
    return Gap(span);
  }
  absl::Status ReadRange(uint64_t offset, std::span<char> out) const override;

  bool complete() const override {
    absl::MutexLock lock(&mu_);
    return present_count_ == present_.size();
  }

  void Fail(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    if (!failure_.ok()) return;  // the first cause is the interesting one
    failure_ = status.ok() ? absl::AbortedError(StrCat("task ", meta_.task_id, " failed")) : status;
    cv_.SignalAll();
  }

  absl::Status failure() const override {
    absl::MutexLock lock(&mu_);
    return failure_;
  }

  // Store side.

  uint64_t bytes_present() const {
    absl::MutexLock lock(&mu_);
    return bytes_present_;
  }
  absl::Time last_access() const { return absl::FromUnixNanos(last_access_.load()); }
  void Touch() const { last_access_.store(absl::ToUnixNanos(clock_->Now())); }
  // A failed task asked for again is a new attempt: its failure is forgotten, its pieces kept.
  void Revive() {
    absl::MutexLock lock(&mu_);
    failure_ = absl::OkStatus();
  }
  // The task left the store (deleted, collected or replaced): holders see it failed, and its
  // meta.json (which may belong to a new task of the same id by now) is never written again.
  void Detach(const absl::Status& why) {
    {
      absl::MutexLock lock(&persist_mu_);
      detached_ = true;
    }
    Fail(why);
  }
  // Writes meta.json if the last access changed since it was last written.
  absl::Status PersistAccessTime();

 private:
  // The sha256 of the whole data file against meta_.digest: DataLoss on a mismatch.
  absl::Status VerifyContent() const;
  // After a digest mismatch: every record cleared (on disk first), the data's space freed, the
  // task failed.
  absl::Status DropAllPieces(const absl::Status& why);
  void EndWrite(uint32_t n) {
    absl::MutexLock lock(&mu_);
    in_flight_[n] = 0;
    cv_.SignalAll();
  }
  // Makes piece `n` present: waits out another writer of it, writes `bytes` unless they are
  // `on_disk` already, records it (and, for the last piece, verifies and syncs the task).
  absl::Status StorePiece(uint32_t n, std::string_view bytes, uint32_t actual_crc, bool on_disk);
  // Records piece `n` on disk and in memory. Requires mu_.
  absl::Status RecordPiece(uint32_t n, uint32_t crc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AllPresent(uint32_t first, uint32_t last) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (uint32_t n = first; n <= last; ++n) {
      if (present_[n] == 0) return false;
    }
    return true;
  }
  uint64_t PieceEnd(uint32_t n) const { return meta_.PieceOffset(n) + meta_.PieceLength(n); }
  // From `pos`, the end (at most `limit`) of the run of readable bytes starting there.
  uint64_t ReadableRunEnd(uint64_t pos, uint64_t limit) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // From `pos`, the end (at most `limit`) of the run of unreadable bytes starting there.
  uint64_t MissingRunEnd(uint64_t pos, uint64_t limit) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<ByteSpan> Gap(ByteSpan span) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `part` to piece n's parts (merged with those it touches); true if they now cover it.
  bool AddPart(uint32_t n, ByteSpan part) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TaskMeta meta_;
  const std::string dir_;
  Clock* const clock_;
  const UniqueFd data_fd_;
  const UniqueFd pieces_fd_;
  const absl::Time created_;

  // Held shared by readers across their presence check and pread, exclusively while the data is
  // punched after a digest mismatch, so no reader returns bytes that vanish under it.
  mutable absl::Mutex data_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  mutable absl::CondVar cv_;  // piece recorded, write finished, task failed
  std::vector<uint8_t> present_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> crcs_ ABSL_GUARDED_BY(mu_);
  // Parts of pieces that are not present (WritePart): sorted, disjoint, not touching.
  absl::flat_hash_map<uint32_t, std::vector<ByteSpan>> parts_ ABSL_GUARDED_BY(mu_);
  // A piece being written by some thread: another writer of it waits (two writers of different
  // bytes would otherwise interleave under one crc).
  std::vector<uint8_t> in_flight_ ABSL_GUARDED_BY(mu_);
  uint32_t present_count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_present_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);

  mutable std::atomic<int64_t> last_access_;  // unix nanoseconds
  absl::Mutex persist_mu_;
  int64_t persisted_access_ ABSL_GUARDED_BY(persist_mu_);
  bool detached_ ABSL_GUARDED_BY(persist_mu_) = false;
};

absl::Status TaskImpl::WritePiece(uint32_t n, std::string_view bytes, std::optional<uint32_t> crc) {
  if (n >= present_.size()) {
    return absl::InvalidArgumentError(StrCat("piece ", n, " out of range for task ", meta_.task_id,
                                             " (", present_.size(), " pieces)"));
  }
  if (bytes.size() != meta_.PieceLength(n)) {
    return absl::InvalidArgumentError(StrCat("piece ", n, " of task ", meta_.task_id, ": ",
                                             bytes.size(), " bytes, expected ",
                                             meta_.PieceLength(n)));
  }
  const uint32_t actual_crc = Crc32c(bytes);
  if (crc.has_value() && *crc != actual_crc) {
    return absl::DataLossError(StrCat("piece ", n, " of task ", meta_.task_id, ": crc32c ",
                                      actual_crc, ", expected ", *crc));
  }
  return StorePiece(n, bytes, actual_crc, /*on_disk=*/false);
}

absl::Status TaskImpl::StorePiece(uint32_t n, std::string_view bytes, uint32_t actual_crc,
                                  bool on_disk) {
  Touch();
  {
    absl::MutexLock lock(&mu_);
    for (;;) {
      if (present_[n] != 0) return absl::OkStatus();
      if (!failure_.ok()) {
        return absl::FailedPreconditionError(
            StrCat("task ", meta_.task_id, " has failed: ", failure_.ToString()));
      }
      if (in_flight_[n] == 0) break;
      cv_.Wait(&mu_);
    }
    in_flight_[n] = 1;
  }

  // Bytes first, record second: a kill in between leaves the piece absent.
  absl::Status status = on_disk ? absl::OkStatus()
                                : Annotate(PwriteFull(data_fd_.get(), bytes, meta_.PieceOffset(n)),
                                           StrCat("write piece ", n, " to ", DataPath(dir_)));
  if (!status.ok()) {
    EndWrite(n);
    return status;
  }
  bool completing = false;
  {
    absl::MutexLock lock(&mu_);
    // Every other piece is present and nobody else can write this one: no one else can be
    // completing the task at the same time.
    completing = present_count_ + 1 == present_.size();
    if (!completing) {
      status = RecordPiece(n, actual_crc);
      in_flight_[n] = 0;
      cv_.SignalAll();
      return status;
    }
  }

  // The last piece. Its record is written only once the whole content is verified and durable,
  // so a task whose records are all present is complete and verified, even after a crash.
  if (!meta_.digest.empty()) {
    status = VerifyContent();
    if (status.code() == absl::StatusCode::kDataLoss) {
      LogWarn("piece store task fails its digest, dropping every piece",
              {{"task", meta_.task_id}, {"url", meta_.url}, {"error", status.ToString()}});
      // Still in flight while the pieces go: nobody can slip this piece in and see the task
      // complete in between. Once failed, the task refuses writes.
      absl::Status dropped = DropAllPieces(status);
      if (!dropped.ok()) LogError("cannot drop pieces", {{"error", dropped.ToString()}});
      EndWrite(n);
      return status;
    }
  }
  if (status.ok()) status = Fdatasync(data_fd_.get(), DataPath(dir_));
  if (!status.ok()) {
    EndWrite(n);
    return status;
  }
  {
    absl::MutexLock lock(&mu_);
    status = RecordPiece(n, actual_crc);
    in_flight_[n] = 0;
    cv_.SignalAll();
  }
  if (status.ok()) status = Fdatasync(pieces_fd_.get(), PiecesPath(dir_));
  return status;
}

absl::Status TaskImpl::RecordPiece(uint32_t n, uint32_t crc) {
  const PieceRecord record{.crc32c = crc, .flags = kPieceFlagPresent};
  RETURN_IF_ERROR(Annotate(PwriteFull(pieces_fd_.get(), RecordBytes(record), PieceRecordOffset(n)),
                           StrCat("record piece ", n, " in ", PiecesPath(dir_))));
  present_[n] = 1;
  crcs_[n] = crc;
  present_count_ += 1;
  bytes_present_ += meta_.PieceLength(n);
  parts_.erase(n);
  return absl::OkStatus();
}

absl::Status TaskImpl::WritePart(uint64_t offset, std::string_view bytes) {
  const uint32_t n = meta_.piece_size == 0 ? 0 : static_cast<uint32_t>(offset / meta_.piece_size);
  if (n >= present_.size() || offset + bytes.size() > PieceEnd(n)) {
    return absl::InvalidArgumentError(StrCat(bytes.size(), " bytes at ", offset, " of task ",
                                             meta_.task_id, " are not inside one piece"));
  }
  if (bytes.empty()) return absl::OkStatus();
  if (offset == meta_.PieceOffset(n) && bytes.size() == meta_.PieceLength(n)) {
    return WritePiece(n, bytes, std::nullopt);
  }
  Touch();
  {
    absl::MutexLock lock(&mu_);
    if (present_[n] != 0) return absl::OkStatus();
    if (!failure_.ok()) {
      return absl::FailedPreconditionError(
          StrCat("task ", meta_.task_id, " has failed: ", failure_.ToString()));
    }
  }
  // Bytes first, the part second: a reader that sees the part finds its bytes on disk.
  RETURN_IF_ERROR(Annotate(PwriteFull(data_fd_.get(), bytes, offset),
                           StrCat("write part of piece ", n, " to ", DataPath(dir_))));
  bool covered = false;
  {
    absl::MutexLock lock(&mu_);
    if (present_[n] != 0 || !failure_.ok()) return absl::OkStatus();
    covered = AddPart(n, {offset, offset + bytes.size()});
    cv_.SignalAll();
  }
  if (!covered) return absl::OkStatus();
  // The parts make the whole piece, already in `data`: it becomes present like any other (crc,
  // record, completion).
  std::string piece(meta_.PieceLength(n), '\0');
  RETURN_IF_ERROR(Annotate(PreadFull(data_fd_.get(), std::span<char>(piece), meta_.PieceOffset(n)),
                           StrCat("read back piece ", n, " from ", DataPath(dir_))));
  return StorePiece(n, piece, Crc32c(piece), /*on_disk=*/true);
}

bool TaskImpl::AddPart(uint32_t n, ByteSpan part) {
  std::vector<ByteSpan>& parts = parts_[n];
  std::vector<ByteSpan> merged;
  merged.reserve(parts.size() + 1);
  for (const ByteSpan& existing : parts) {
    if (existing.end < part.begin || existing.begin > part.end) {
      merged.push_back(existing);
    } else {
      part = {std::min(part.begin, existing.begin), std::max(part.end, existing.end)};
    }
  }
  merged.insert(
      std::upper_bound(merged.begin(), merged.end(), part,
                       [](const ByteSpan& a, const ByteSpan& b) { return a.begin < b.begin; }),
      part);
  parts = std::move(merged);
  return parts.size() == 1 && parts[0].begin == meta_.PieceOffset(n) && parts[0].end == PieceEnd(n);
}

uint64_t TaskImpl::ReadableRunEnd(uint64_t pos, uint64_t limit) const {
  while (pos < limit) {
    const uint32_t n = static_cast<uint32_t>(pos / meta_.piece_size);
    if (present_[n] != 0) {
      pos = std::min(PieceEnd(n), limit);
      continue;
    }
    auto it = parts_.find(n);
    if (it == parts_.end()) return pos;
    const ByteSpan* holding = nullptr;
    for (const ByteSpan& part : it->second) {
      if (part.begin <= pos && pos < part.end) holding = &part;
    }
    if (holding == nullptr) return pos;
    pos = std::min(holding->end, limit);
    if (holding->end < PieceEnd(n)) return pos;  // a gap follows inside the piece
  }
  return limit;
}

uint64_t TaskImpl::MissingRunEnd(uint64_t pos, uint64_t limit) const {
  while (pos < limit) {
    const uint32_t n = static_cast<uint32_t>(pos / meta_.piece_size);
    if (present_[n] != 0) return pos;
    uint64_t next_part = PieceEnd(n);
    if (auto it = parts_.find(n); it != parts_.end()) {
      for (const ByteSpan& part : it->second) {
        if (part.begin <= pos && pos < part.end) return pos;
        if (part.begin > pos) next_part = std::min(next_part, part.begin);
      }
    }
    pos = std::min(next_part, limit);
    if (next_part < PieceEnd(n)) return pos;  // a part starts inside the piece
  }
  return limit;
}

std::optional<ByteSpan> TaskImpl::Gap(ByteSpan span) const {
  span.end = std::min(span.end, meta_.content_length);
  const uint64_t start = ReadableRunEnd(span.begin, span.end);
  if (start >= span.end) return std::nullopt;
  return ByteSpan{start, MissingRunEnd(start, span.end)};
}

bool TaskImpl::WaitForRange(ByteSpan span, absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  for (;;) {
    if (!Gap(span).has_value()) return true;
    if (!failure_.ok()) return false;
    if (cv_.WaitWithDeadline(&mu_, deadline)) return !Gap(span).has_value();
  }
}

absl::Status TaskImpl::VerifyContent() const {
  ASSIGN_OR_RETURN(Digest want, Digest::Parse(meta_.digest));
  Sha256 hasher;
  std::string buffer(std::min<uint64_t>(kVerifyBufferSize, meta_.content_length), '\0');
  for (uint64_t offset = 0; offset < meta_.content_length; offset += buffer.size()) {
    const size_t size = std::min<uint64_t>(buffer.size(), meta_.content_length - offset);
    RETURN_IF_ERROR(
        Annotate(PreadFull(data_fd_.get(), std::span<char>(buffer.data(), size), offset),
                 StrCat("verify ", DataPath(dir_))));
    hasher.Update(std::string_view(buffer.data(), size));
  }
  const Digest got = hasher.Finish();
  if (got != want) {
    return absl::DataLossError(StrCat("task ", meta_.task_id, " (", meta_.url, "): content has ",
                                      got.ToString(), ", expected ", meta_.digest));
  }
  return absl::OkStatus();
}

absl::Status TaskImpl::DropAllPieces(const absl::Status& why) {
  absl::WriterMutexLock data_lock(&data_mu_);
  absl::MutexLock lock(&mu_);
  std::fill(present_.begin(), present_.end(), 0);
  std::fill(crcs_.begin(), crcs_.end(), 0);
  parts_.clear();
  present_count_ = 0;
  bytes_present_ = 0;
  if (failure_.ok()) failure_ = why;
  cv_.SignalAll();
  // Records before bytes: a crash in between leaves fewer pieces recorded, never a recorded
  // piece whose bytes were punched. (Pieces still recorded after such a crash are re-verified
  // with everything else when the task completes again.)
  const std::string zeros(
      PiecesFileSize(static_cast<uint32_t>(present_.size())) - sizeof(PiecesFileHeader), '\0');
  RETURN_IF_ERROR(Annotate(PwriteFull(pieces_fd_.get(), zeros, sizeof(PiecesFileHeader)),
                           StrCat("clear records in ", PiecesPath(dir_))));
  if (meta_.content_length != 0 &&
      ::fallocate(data_fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                  static_cast<off_t>(meta_.content_length)) != 0) {
    LogWarn("cannot punch hole in piece store data file",
            {{"path", DataPath(dir_)}, {"errno", errno}});
  }
  return absl::OkStatus();
}

bool TaskImpl::WaitForPieces(uint32_t first, uint32_t last, absl::Time deadline) const {
  if (first > last || last >= present_.size()) return false;
  absl::MutexLock lock(&mu_);
  for (;;) {
    if (AllPresent(first, last)) return true;
    if (!failure_.ok()) return false;
    if (cv_.WaitWithDeadline(&mu_, deadline)) return AllPresent(first, last);
  }
}

absl::Status TaskImpl::ReadRange(uint64_t offset, std::span<char> out) const {
  if (offset > meta_.content_length || out.size() > meta_.content_length - offset) {
    return absl::OutOfRangeError(StrCat("read ", out.size(), " bytes at ", offset, " of task ",
                                        meta_.task_id, " (", meta_.content_length, " bytes)"));
  }
  if (out.empty()) return absl::OkStatus();
  absl::ReaderMutexLock data_lock(&data_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (std::optional<ByteSpan> gap = Gap({offset, offset + out.size()})) {
      return absl::FailedPreconditionError(
          StrCat("bytes ", gap->begin, "-", gap->end - 1, " of task ", meta_.task_id, " (piece ",
                 gap->begin / meta_.piece_size, ") are not present"));
    }
  }
  absl::Status status = PreadFull(data_fd_.get(), out, offset);
  if (status.code() == absl::StatusCode::kOutOfRange) {
    return absl::DataLossError(StrCat(DataPath(dir_), " ends before offset ", offset + out.size()));
  }
  RETURN_IF_ERROR(Annotate(status, StrCat("read ", DataPath(dir_))));
  Touch();
  return absl::OkStatus();
}

absl::Status TaskImpl::PersistAccessTime() {
  absl::MutexLock lock(&persist_mu_);
  const int64_t access = last_access_.load();
  if (detached_ || access == persisted_access_) return absl::OkStatus();
  RETURN_IF_ERROR(WriteFileAtomically(
      MetaPath(dir_), MetaJson(meta_, created_, absl::FromUnixNanos(access)), 0600));
  persisted_access_ = access;
  return absl::OkStatus();
}

// Creates the files of a new task in `dir` (which must not exist). meta.json comes last: a
// directory without it is an unfinished creation, removed at the next open.
absl::StatusOr<std::shared_ptr<TaskImpl>> CreateTaskFiles(const std::string& dir,
                                                          const TaskMeta& meta, Clock* clock) {
  RETURN_IF_ERROR(Annotate(CreateDirectories(dir, 0700), StrCat("create task directory ", dir)));
  ASSIGN_OR_RETURN(UniqueFd data_fd,
                   UniqueFd::Open(DataPath(dir), O_RDWR | O_CREAT | O_TRUNC, 0600));
  if (::ftruncate(data_fd.get(), static_cast<off_t>(meta.content_length)) != 0) {
    return ErrnoError(errno, StrCat("truncate ", DataPath(dir)));
  }
  const uint32_t count = meta.piece_count();
  ASSIGN_OR_RETURN(UniqueFd pieces_fd,
                   UniqueFd::Open(PiecesPath(dir), O_RDWR | O_CREAT | O_TRUNC, 0600));
  if (::ftruncate(pieces_fd.get(), static_cast<off_t>(PiecesFileSize(count))) != 0) {
    return ErrnoError(errno, StrCat("truncate ", PiecesPath(dir)));
  }
  const PiecesFileHeader header{.magic = kPiecesMagic,
                                .version = kPiecesVersion,
                                .piece_count = count,
                                .piece_size = meta.piece_size};
  RETURN_IF_ERROR(Annotate(
      PwriteFull(pieces_fd.get(),
                 std::string_view(reinterpret_cast<const char*>(&header), sizeof(header)), 0),
      StrCat("write ", PiecesPath(dir))));
  const absl::Time now = clock->Now();
  RETURN_IF_ERROR(WriteFileAtomically(MetaPath(dir), MetaJson(meta, now, now), 0600));
  return std::make_shared<TaskImpl>(meta, dir, clock, std::move(data_fd), std::move(pieces_fd),
                                    std::vector<PieceRecord>(), now, now);
}

// Loads a task found on disk. Any error means the task is unusable (the caller removes it).
absl::StatusOr<std::shared_ptr<TaskImpl>> LoadTask(const std::string& dir, std::string_view task_id,
                                                   Clock* clock) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(MetaPath(dir)));
  ASSIGN_OR_RETURN(StoredMeta stored, ParseMetaJson(text));
  if (stored.meta.task_id != task_id) {
    return absl::DataLossError(StrCat("meta.json names task ", stored.meta.task_id.substr(0, 100)));
  }
  RETURN_IF_ERROR(NormalizeMeta(stored.meta));
  const TaskMeta& meta = stored.meta;
  const uint32_t count = meta.piece_count();

  ASSIGN_OR_RETURN(UniqueFd data_fd, UniqueFd::Open(DataPath(dir), O_RDWR));
  struct stat st;
  if (::fstat(data_fd.get(), &st) != 0) return ErrnoError(errno, StrCat("stat ", DataPath(dir)));
  if (static_cast<uint64_t>(st.st_size) != meta.content_length) {
    return absl::DataLossError(
        StrCat("data is ", st.st_size, " bytes, expected ", meta.content_length));
  }

  ASSIGN_OR_RETURN(UniqueFd pieces_fd, UniqueFd::Open(PiecesPath(dir), O_RDWR));
  if (::fstat(pieces_fd.get(), &st) != 0) {
    return ErrnoError(errno, StrCat("stat ", PiecesPath(dir)));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t full_size = PiecesFileSize(count);
  if (size < sizeof(PiecesFileHeader)) {
    return absl::DataLossError(StrCat("pieces file is ", size, " bytes, shorter than its header"));
  }
  if (size > full_size) {
    return absl::DataLossError(StrCat("pieces file is ", size, " bytes, expected ", full_size));
  }
  std::string bytes(size, '\0');
  RETURN_IF_ERROR(PreadFull(pieces_fd.get(), std::span<char>(bytes.data(), bytes.size()), 0));
  PiecesFileHeader header;
  std::memcpy(&header, bytes.data(), sizeof(header));
  if (header.magic != kPiecesMagic) return absl::DataLossError("pieces file: bad magic");
  if (header.version != kPiecesVersion) {
    return absl::DataLossError(StrCat("pieces file: version ", header.version));
  }
  if (header.piece_count != count || header.piece_size != meta.piece_size) {
    return absl::DataLossError(StrCat("pieces file describes ", header.piece_count, " pieces of ",
                                      header.piece_size, " bytes, meta.json ", count, " of ",
                                      meta.piece_size));
  }
  // Whole records only; a file cut short (a torn tail) is extended with absent records.
  const uint32_t stored_records =
      static_cast<uint32_t>((size - sizeof(PiecesFileHeader)) / sizeof(PieceRecord));
  std::vector<PieceRecord> records(stored_records);
  if (stored_records != 0) {
    std::memcpy(records.data(), bytes.data() + sizeof(PiecesFileHeader),
                stored_records * sizeof(PieceRecord));
  }
  for (uint32_t n = 0; n < stored_records; ++n) {
    if (records[n].flags != 0 && records[n].flags != kPieceFlagPresent) {
      return absl::DataLossError(
          StrCat("pieces file: record ", n, " has flags ", records[n].flags));
    }
  }
  if (size != full_size) {
    LogWarn("piece store pieces file cut short, missing records are absent",
            {{"path", PiecesPath(dir)}, {"size", size}, {"expected", full_size}});
    if (::ftruncate(pieces_fd.get(), static_cast<off_t>(PieceRecordOffset(stored_records))) != 0 ||
        ::ftruncate(pieces_fd.get(), static_cast<off_t>(full_size)) != 0) {
      return ErrnoError(errno, StrCat("truncate ", PiecesPath(dir)));
    }
  }
  return std::make_shared<TaskImpl>(meta, dir, clock, std::move(data_fd), std::move(pieces_fd),
                                    records, stored.created, stored.last_access);
}

class PieceStoreImpl final : public PieceStore {
 public:
  explicit PieceStoreImpl(const PieceStoreOptions& options)
      : options_(options), clock_(options.clock != nullptr ? options.clock : Clock::Real()) {}

  ~PieceStoreImpl() override { FlushAccessTimes(); }

  // Loads every task under tasks/ and empties trash/.
  absl::Status Recover();

  absl::StatusOr<std::shared_ptr<Task>> CreateOrOpen(const TaskMeta& meta) override;
  std::shared_ptr<Task> Find(std::string_view task_id) override;
  absl::Status Delete(std::string_view task_id) override;
  std::vector<std::shared_ptr<Task>> List() override;
  GcResult CollectGarbage() override;
  PieceStoreStats Stats() const override;

 private:
  std::string TasksDir() const { return StrCat(options_.dir, "/tasks"); }
  std::string TrashDir() const { return StrCat(options_.dir, "/trash"); }
  std::string TaskDir(std::string_view task_id) const { return StrCat(TasksDir(), "/", task_id); }

  // Takes a task out of the store: holders see it failed, and its directory moves to trash/
  // (a rename, cheap under mu_); returns the path to remove once mu_ is released.
  std::string RemoveLocked(const std::string& task_id, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // rm -rf outside the lock.
  static void RemovePaths(const std::vector<std::string>& paths);
  void FlushAccessTimes();

  const PieceStoreOptions options_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<TaskImpl>> tasks_ ABSL_GUARDED_BY(mu_);
  uint64_t trash_seq_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::Status PieceStoreImpl::Recover() {
  RETURN_IF_ERROR(Annotate(RemoveAll(TrashDir()), StrCat("empty ", TrashDir())));
  RETURN_IF_ERROR(Annotate(CreateDirectories(TrashDir(), 0700), StrCat("create ", TrashDir())));
  RETURN_IF_ERROR(Annotate(CreateDirectories(TasksDir(), 0700), StrCat("create ", TasksDir())));
  std::vector<std::string> names;
  {
    std::error_code error;
    std::filesystem::directory_iterator it(TasksDir(), error);
    if (error) return ErrnoError(error.value(), StrCat("list ", TasksDir()));
    for (; it != std::filesystem::directory_iterator(); it.increment(error)) {
      names.push_back(it->path().filename().string());
    }
    if (error) return ErrnoError(error.value(), StrCat("list ", TasksDir()));
  }
  absl::MutexLock lock(&mu_);
  for (const std::string& name : names) {
    const std::string dir = TaskDir(name);
    absl::Status problem;
    if (!IsValidTaskId(name)) {
      problem = absl::DataLossError("not a task id");
    } else {
      absl::StatusOr<std::shared_ptr<TaskImpl>> task = LoadTask(dir, name, clock_);
      if (task.ok()) {
        tasks_.emplace(name, *std::move(task));
        continue;
      }
      problem = task.status();
    }
    LogWarn("piece store removes damaged task", {{"path", dir}, {"error", problem.ToString()}});
    absl::Status removed = RemoveAll(dir);
    if (!removed.ok()) return Annotate(removed, StrCat("remove damaged task ", dir));
  }
  LogDebug("piece store opened", {{"dir", options_.dir}, {"tasks", tasks_.size()}});
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Task>> PieceStoreImpl::CreateOrOpen(const TaskMeta& meta) {
  TaskMeta normalized = meta;
  RETURN_IF_ERROR(NormalizeMeta(normalized));
  std::vector<std::string> trash;
  absl::StatusOr<std::shared_ptr<TaskImpl>> created;
  {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(normalized.task_id);
    if (it != tasks_.end()) {
      const TaskMeta& old = it->second->meta();
      const bool digests_differ =
          !old.digest.empty() && !normalized.digest.empty() && old.digest != normalized.digest;
      if (old.content_length == normalized.content_length &&
          old.piece_size == normalized.piece_size && !digests_differ) {
        it->second->Revive();
        it->second->Touch();
        return std::shared_ptr<Task>(it->second);
      }
      LogInfo("piece store replaces task with a different shape",
              {{"task", normalized.task_id},
               {"length", old.content_length},
               {"new_length", normalized.content_length},
               {"piece_size", old.piece_size},
               {"new_piece_size", normalized.piece_size}});
      trash.push_back(
          RemoveLocked(normalized.task_id,
                       absl::AbortedError(StrCat("task ", normalized.task_id, " was replaced"))));
    }
    const std::string dir = TaskDir(normalized.task_id);
    // Leftovers of a creation that failed half-way.
    RETURN_IF_ERROR(Annotate(RemoveAll(dir), StrCat("remove stale ", dir)));
    created = CreateTaskFiles(dir, normalized, clock_);
    if (created.ok()) {
      tasks_.emplace(normalized.task_id, *created);
    } else {
      absl::Status removed = RemoveAll(dir);
      if (!removed.ok()) LogWarn("cannot remove task", {{"error", removed.ToString()}});
    }
  }
  RemovePaths(trash);
  if (!created.ok()) {
    return Annotate(created.status(), StrCat("create task ", normalized.task_id));
  }
  return std::shared_ptr<Task>(*std::move(created));
}

std::shared_ptr<Task> PieceStoreImpl::Find(std::string_view task_id) {
  if (!IsValidTaskId(task_id)) return nullptr;
  absl::MutexLock lock(&mu_);
  auto it = tasks_.find(ToAbsl(task_id));
  if (it == tasks_.end()) return nullptr;
  it->second->Touch();
  return it->second;
}

absl::Status PieceStoreImpl::Delete(std::string_view task_id) {
  if (!IsValidTaskId(task_id)) {
    return absl::InvalidArgumentError(
        StrCat("task id \"", task_id.substr(0, 100), "\" is not 64 lowercase hex digits"));
  }
  std::string trash;
  {
    absl::MutexLock lock(&mu_);
    if (!tasks_.contains(ToAbsl(task_id))) {
      return absl::NotFoundError(StrCat("no task ", task_id, " in ", options_.dir));
    }
    trash = RemoveLocked(std::string(task_id),
                         absl::AbortedError(StrCat("task ", task_id, " was deleted")));
  }
  RemovePaths({trash});
  return absl::OkStatus();
}

std::vector<std::shared_ptr<Task>> PieceStoreImpl::List() {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Task>> tasks;
  tasks.reserve(tasks_.size());
  for (const auto& [id, task] : tasks_) tasks.push_back(task);
  return tasks;
}

std::string PieceStoreImpl::RemoveLocked(const std::string& task_id, const absl::Status& why) {
  auto it = tasks_.find(task_id);
  it->second->Detach(why);
  tasks_.erase(it);
  const std::string dir = TaskDir(task_id);
  std::string trash = StrCat(TrashDir(), "/", task_id, ".", trash_seq_++);
  if (::rename(dir.c_str(), trash.c_str()) == 0) return trash;
  // Not renamed (trash/ gone?): removed under the lock instead, so that a new task of the same id
  // never finds the old files.
  LogWarn("cannot move task to trash",
          {{"path", dir}, {"error", ErrnoError(errno, "rename").ToString()}});
  absl::Status removed = RemoveAll(dir);
  if (!removed.ok()) LogError("cannot remove task", {{"error", removed.ToString()}});
  return "";
}

void PieceStoreImpl::RemovePaths(const std::vector<std::string>& paths) {
  for (const std::string& path : paths) {
    if (path.empty()) continue;
    absl::Status removed = RemoveAll(path);
    if (!removed.ok()) LogWarn("cannot remove task files", {{"error", removed.ToString()}});
  }
}

GcResult PieceStoreImpl::CollectGarbage() {
  GcResult result;
  std::vector<std::string> trash;
  const absl::Time now = clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    // The store's copy is the only one: nobody is reading, writing or waiting on the task, and
    // nobody can get a new copy while mu_ is held.
    auto unused = [](const std::shared_ptr<TaskImpl>& task) { return task.use_count() == 1; };
    struct Candidate {
      std::string id;
      absl::Time last_access;
      uint64_t bytes;
    };
    std::vector<Candidate> candidates;
    uint64_t total = 0;
    for (const auto& [id, task] : tasks_) {
      const uint64_t bytes = task->bytes_present();
      total += bytes;
      if (unused(task)) candidates.push_back({id, task->last_access(), bytes});
    }
    std::sort(candidates.begin(), candidates.end(),
              [](const Candidate& a, const Candidate& b) { return a.last_access < b.last_access; });
    for (const Candidate& candidate : candidates) {
      const bool expired = now - candidate.last_access > options_.task_ttl;
      const bool over_quota = options_.quota_bytes != 0 && total > options_.quota_bytes;
      // Candidates are oldest first: once one is neither expired nor needed for the quota, no
      // later one is.
      if (!expired && !over_quota) break;
      LogInfo("piece store collects task",
              {{"task", candidate.id},
               {"bytes", candidate.bytes},
               {"idle", absl::FormatDuration(now - candidate.last_access)},
               {"reason", expired ? "ttl" : "quota"}});
      trash.push_back(RemoveLocked(
          candidate.id,
          absl::AbortedError(StrCat("task ", candidate.id, " was garbage-collected"))));
      total -= candidate.bytes;
      result.tasks_removed += 1;
      result.bytes_freed += candidate.bytes;
      result.removed.push_back(candidate.id);
    }
  }
  RemovePaths(trash);
  FlushAccessTimes();
  return result;
}

void PieceStoreImpl::FlushAccessTimes() {
  std::vector<std::shared_ptr<TaskImpl>> tasks;
  {
    absl::MutexLock lock(&mu_);
    tasks.reserve(tasks_.size());
    for (const auto& [id, task] : tasks_) tasks.push_back(task);
  }
  for (const auto& task : tasks) {
    absl::Status status = task->PersistAccessTime();
    if (!status.ok()) {
      LogWarn("cannot persist task access time",
              {{"task", task->meta().task_id}, {"error", status.ToString()}});
    }
  }
}

PieceStoreStats PieceStoreImpl::Stats() const {
  absl::MutexLock lock(&mu_);
  PieceStoreStats stats;
  stats.tasks = tasks_.size();
  for (const auto& [id, task] : tasks_) stats.bytes += task->bytes_present();
  return stats;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PieceStore>> PieceStore::Open(const PieceStoreOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("piece store: no dir");
  RETURN_IF_ERROR(Annotate(CreateDirectories(options.dir, 0700),
                           StrCat("create piece store directory ", options.dir)));
  auto store = std::make_unique<PieceStoreImpl>(options);
  RETURN_IF_ERROR(Annotate(store->Recover(), StrCat("open piece store ", options.dir)));
  return std::unique_ptr<PieceStore>(std::move(store));
}

}  // namespace naiad::piece
