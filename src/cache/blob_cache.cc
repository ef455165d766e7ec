#include "cache/blob_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <list>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/file.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "cache/chunk_map.h"

namespace naiad::cache {
namespace {

class BlobFile;

// Where a chunk lives in its cache file.
struct ChunkRange {
  uint64_t offset = 0;
  uint32_t size = 0;
};

// The state shared by a cache and its files (which may outlive the cache object): the byte and
// chunk counts and, for eviction, the recency order of every ready chunk.
//
// Lock order: a file's lock, then mu_. The core never calls into a file while holding mu_.
class CacheCore {
 public:
  explicit CacheCore(const BlobCacheOptions& options) : options_(options) {}

  const BlobCacheOptions& options() const { return options_; }

  uint32_t AddFile(std::weak_ptr<BlobFile> file) {
    absl::MutexLock lock(&mu_);
    files_.push_back(std::move(file));
    return static_cast<uint32_t>(files_.size() - 1);
  }

  // A chunk was just marked ready: it becomes the most recently used.
  void Added(uint32_t slot, uint32_t ci, ChunkRange range) {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = index_.try_emplace(Key(slot, ci));
    if (!inserted) {  // cannot happen while bits and entries agree; keep the counts right anyway
      Forget(it->second);
      index_.erase(Key(slot, ci));
      it = index_.try_emplace(Key(slot, ci)).first;
    }
    lru_.push_front({slot, ci, range, true});
    it->second = lru_.begin();
    stats_.bytes_stored += range.size;
    stats_.chunks_stored += 1;
  }

  // Ready chunks found on disk when a blob is opened. Their ranges are unknown until a ChunkRef
  // names them (Read, Write, Invalidate, RegisterChunks), so they are counted at `estimate`
  // bytes each and placed at the cold end: chunks nobody touched since the restart go first.
  void AddedFromDisk(uint32_t slot, const ChunkMap& map, uint32_t estimate) {
    absl::MutexLock lock(&mu_);
    for (uint32_t ci = 0; ci < map.chunk_count(); ++ci) {
      if (!map.IsReady(ci)) continue;
      auto [it, inserted] = index_.try_emplace(Key(slot, ci));
      if (!inserted) continue;
      lru_.push_back({slot, ci, {0, estimate}, false});
      it->second = std::prev(lru_.end());
      stats_.bytes_stored += estimate;
      stats_.chunks_stored += 1;
    }
  }

  // A ready chunk was read: it becomes the most recently used, and its range is now known.
  void Touched(uint32_t slot, uint32_t ci, ChunkRange range) {
    absl::MutexLock lock(&mu_);
    auto it = index_.find(Key(slot, ci));
    if (it == index_.end()) return;  // being evicted
    Learn(*it->second, range);
    if (options_.max_size != 0) lru_.splice(lru_.begin(), lru_, it->second);
  }

  // Ranges of chunks (ready or not) for exact accounting; the order is unchanged.
  void Describe(uint32_t slot, uint32_t ci, ChunkRange range) {
    absl::MutexLock lock(&mu_);
    auto it = index_.find(Key(slot, ci));
    if (it != index_.end()) Learn(*it->second, range);
  }

  // A chunk's bit was cleared by its file (Invalidate).
  void Removed(uint32_t slot, uint32_t ci) {
    absl::MutexLock lock(&mu_);
    auto it = index_.find(Key(slot, ci));
    if (it == index_.end()) return;  // already picked for eviction
    Forget(it->second);
    index_.erase(it);
  }

  // Whether a chunk is tracked as ready (re-added after it was picked for eviction).
  bool Contains(uint32_t slot, uint32_t ci) {
    absl::MutexLock lock(&mu_);
    return index_.contains(Key(slot, ci));
  }

  // Drops least recently used chunks until the bytes held fit in max_size.
  void EvictIfNeeded();

  BlobCacheStats Stats() {
    absl::MutexLock lock(&mu_);
    return stats_;
  }

 private:
  struct Entry {
    uint32_t slot;
    uint32_t ci;
    ChunkRange range;
    bool known;  // false: found on disk at open, size is an estimate, offset unknown
  };
  using EntryList = std::list<Entry>;

  static uint64_t Key(uint32_t slot, uint32_t ci) { return (uint64_t{slot} << 32) | ci; }

  void Learn(Entry& entry, ChunkRange range) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (entry.known) return;
    stats_.bytes_stored = stats_.bytes_stored - entry.range.size + range.size;
    entry.range = range;
    entry.known = true;
  }

  // Removes an entry from the list and the counts (not from index_).
  void Forget(EntryList::iterator entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stats_.bytes_stored -= entry->range.size;
    stats_.chunks_stored -= 1;
    lru_.erase(entry);
  }

  const BlobCacheOptions options_;
  absl::Mutex mu_;
  EntryList lru_ ABSL_GUARDED_BY(mu_);  // front: most recently used
  std::unordered_map<uint64_t, EntryList::iterator> index_ ABSL_GUARDED_BY(mu_);
  std::vector<std::weak_ptr<BlobFile>> files_ ABSL_GUARDED_BY(mu_);
  BlobCacheStats stats_ ABSL_GUARDED_BY(mu_);
};

// fallocate(PUNCH_HOLE | KEEP_SIZE): frees the blocks of a range, which then reads as zeros.
void PunchHole(int fd, const std::string& path, uint64_t offset, uint64_t size) {
  if (size == 0) return;
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(size)) != 0) {
    // The bit is already clear, so the stale bytes are never served; only the space stays used.
    LogWarn("cannot punch hole in blob cache file",
            {{"path", path}, {"offset", offset}, {"size", size}, {"errno", errno}});
  }
}

class BlobFile : public BlobCacheFile {
 public:
  BlobFile(std::shared_ptr<CacheCore> core, const rafs::BlobInfo& blob, std::string data_path,
           UniqueFd fd, std::unique_ptr<ChunkMap> map, uint64_t file_size)
      : core_(std::move(core)),
        blob_(blob),
        compressed_(core_->options().compressed),
        data_path_(std::move(data_path)),
        fd_(std::move(fd)),
        map_(std::move(map)),
        file_size_(file_size) {}

  void set_slot(uint32_t slot) { slot_ = slot; }
  uint32_t slot() const { return slot_; }
  const rafs::BlobInfo& blob() const { return blob_; }
  const ChunkMap& map() const { return *map_; }

  bool IsReady(uint32_t ci_index) const override { return map_->IsReady(ci_index); }

  absl::Status Read(const rafs::ChunkRef& chunk, std::string* out) override {
    ASSIGN_OR_RETURN(ChunkRange range, RangeOf(chunk));
    absl::ReaderMutexLock lock(&mu_);
    if (!map_->IsReady(chunk.ci_index)) {
      return absl::FailedPreconditionError(
          StrCat("chunk ", chunk.ci_index, " of blob ", blob_.id, " is not cached"));
    }
    out->resize(range.size);
    absl::Status status =
        PreadFull(fd_.get(), std::span<char>(out->data(), out->size()), range.offset);
    if (!status.ok()) {
      out->clear();
      if (status.code() == absl::StatusCode::kOutOfRange) {
        return absl::DataLossError(StrCat("blob cache file ", data_path_, " ends before chunk ",
                                          chunk.ci_index, " at offset ", range.offset));
      }
      return Annotate(status, StrCat("read chunk ", chunk.ci_index, " from ", data_path_));
    }
    core_->Touched(slot_, chunk.ci_index, range);
    return absl::OkStatus();
  }

  absl::Status Write(const rafs::ChunkRef& chunk, std::string_view bytes) override {
    ASSIGN_OR_RETURN(ChunkRange range, RangeOf(chunk));
    if (bytes.size() != range.size) {
      return absl::InvalidArgumentError(StrCat("chunk ", chunk.ci_index, " of blob ", blob_.id,
                                               ": ", bytes.size(), " bytes, expected ",
                                               range.size));
    }
    if (map_->IsReady(chunk.ci_index)) return absl::OkStatus();
    {
      // Shared: writers of different chunks run in parallel; eviction and Invalidate, which
      // clear bits and punch holes, wait, so they never punch bytes a writer is about to mark.
      absl::ReaderMutexLock lock(&mu_);
      if (map_->IsReady(chunk.ci_index)) return absl::OkStatus();
      // Bytes first, bit second: a kill between the two leaves the chunk absent.
      RETURN_IF_ERROR(Annotate(PwriteFull(fd_.get(), bytes, range.offset),
                               StrCat("write chunk ", chunk.ci_index, " to ", data_path_)));
      if (map_->SetReady(chunk.ci_index)) core_->Added(slot_, chunk.ci_index, range);
    }
    core_->EvictIfNeeded();
    return absl::OkStatus();
  }

  absl::Status Invalidate(const rafs::ChunkRef& chunk) override {
    ASSIGN_OR_RETURN(ChunkRange range, RangeOf(chunk));
    absl::WriterMutexLock lock(&mu_);
    if (!map_->ClearReady(chunk.ci_index)) return absl::OkStatus();
    core_->Removed(slot_, chunk.ci_index);
    PunchHole(fd_.get(), data_path_, range.offset, range.size);
    PunchLeftovers();
    return absl::OkStatus();
  }

  void RegisterChunks(std::span<const rafs::ChunkRef> chunks) override {
    for (const rafs::ChunkRef& chunk : chunks) {
      absl::StatusOr<ChunkRange> range = RangeOf(chunk);
      if (range.ok()) core_->Describe(slot_, chunk.ci_index, *range);
    }
  }

  bool AllReady() const override { return map_->AllReady(); }
  uint32_t ready_count() const override { return map_->ready_count(); }
  int data_fd() const override { return compressed_ ? -1 : fd_.get(); }

  // Called by the core, without its lock, for a chunk it has dropped from its accounting.
  void Evict(uint32_t ci, std::optional<ChunkRange> range) {
    absl::WriterMutexLock lock(&mu_);
    // Invalidated and written again since it was picked: it is a new, live chunk.
    if (core_->Contains(slot_, ci)) return;
    map_->ClearReady(ci);
    if (range) {
      PunchHole(fd_.get(), data_path_, range->offset, range->size);
    } else {
      unknown_ranges_evicted_ = true;
    }
    PunchLeftovers();
  }

 private:
  // Chunks evicted without a known range leave their bytes behind; once the blob holds no chunk
  // at all, the whole file is punched and that space comes back too.
  void PunchLeftovers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!unknown_ranges_evicted_ || map_->ready_count() != 0) return;
    struct stat st;
    if (::fstat(fd_.get(), &st) == 0) {
      PunchHole(fd_.get(), data_path_, 0, static_cast<uint64_t>(st.st_size));
    }
    unknown_ranges_evicted_ = false;
  }

  // The chunk's place in this file, checked against the blob.
  absl::StatusOr<ChunkRange> RangeOf(const rafs::ChunkRef& chunk) const {
    if (chunk.ci_index >= blob_.chunk_count) {
      return absl::InvalidArgumentError(StrCat("chunk index ", chunk.ci_index,
                                               " out of range for blob ", blob_.id, " (",
                                               blob_.chunk_count, " chunks)"));
    }
    if (chunk.hole) {
      return absl::InvalidArgumentError(
          StrCat("chunk ", chunk.ci_index, " of blob ", blob_.id, " is a hole"));
    }
    ChunkRange range = compressed_ ? ChunkRange{chunk.compressed_offset, chunk.compressed_size}
                                   : ChunkRange{chunk.uncompressed_offset, chunk.uncompressed_size};
    if (range.size == 0) {
      return absl::InvalidArgumentError(
          StrCat("chunk ", chunk.ci_index, " of blob ", blob_.id, " has no size"));
    }
    if (file_size_ != 0 && (range.offset > file_size_ || range.size > file_size_ - range.offset)) {
      return absl::DataLossError(StrCat("chunk ", chunk.ci_index, " at ", range.offset, "+",
                                        range.size, " lies outside blob ", blob_.id, " (",
                                        file_size_, " bytes)"));
    }
    return range;
  }

  const std::shared_ptr<CacheCore> core_;
  const rafs::BlobInfo blob_;
  const bool compressed_;
  const std::string data_path_;
  const UniqueFd fd_;
  const std::unique_ptr<ChunkMap> map_;
  const uint64_t file_size_;  // the blob's size in this mode; 0 = unknown, the file grows
  uint32_t slot_ = 0;         // set once, before the file is handed out

  // Shared by Read and Write, exclusive for clearing bits and punching holes.
  absl::Mutex mu_;
  bool unknown_ranges_evicted_ ABSL_GUARDED_BY(mu_) = false;
};

void CacheCore::EvictIfNeeded() {
  if (options_.max_size == 0) return;
  for (;;) {
    std::shared_ptr<BlobFile> file;
    uint32_t ci = 0;
    std::optional<ChunkRange> range;
    {
      absl::MutexLock lock(&mu_);
      if (stats_.bytes_stored <= options_.max_size || lru_.empty()) return;
      const Entry& victim = lru_.back();
      file = files_[victim.slot].lock();
      ci = victim.ci;
      if (victim.known) range = victim.range;
      stats_.evicted_chunks += 1;
      stats_.evicted_bytes += victim.range.size;
      index_.erase(Key(victim.slot, victim.ci));
      Forget(std::prev(lru_.end()));
    }
    if (file) {
      LogDebug("blob cache evicts chunk", {{"blob", file->blob().id}, {"chunk", ci}});
      file->Evict(ci, range);
    }
  }
}

// Blob ids become file names: no separators, no dot files.
bool IsSafeId(std::string_view id) {
  if (id.empty() || id.front() == '.') return false;
  for (char c : id) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

class BlobCacheImpl : public BlobCache {
 public:
  explicit BlobCacheImpl(const BlobCacheOptions& options)
      : core_(std::make_shared<CacheCore>(options)) {}

  absl::StatusOr<std::shared_ptr<BlobCacheFile>> OpenBlob(const rafs::BlobInfo& blob) override {
    if (blob.chunk_count == 0) {
      return absl::InvalidArgumentError(StrCat("blob ", blob.id, " has no chunk count"));
    }
    if (!IsSafeId(blob.id)) {
      return absl::InvalidArgumentError(StrCat("blob id \"", blob.id, "\" is not a file name"));
    }
    std::shared_ptr<BlobFile> file;
    {
      absl::MutexLock lock(&mu_);
      auto it = files_.find(blob.id);
      if (it != files_.end()) {
        if (it->second->blob().chunk_count != blob.chunk_count) {
          return absl::InvalidArgumentError(StrCat("blob ", blob.id, " opened with ",
                                                   blob.chunk_count, " chunks, earlier with ",
                                                   it->second->blob().chunk_count));
        }
        return std::shared_ptr<BlobCacheFile>(it->second);
      }
      ASSIGN_OR_RETURN(file, Create(blob));
      files_.emplace(blob.id, file);
    }
    // No eviction here, even if the chunks found on disk exceed a smaller max_size than the last
    // run's: the next Write() evicts, after the caller had a chance to RegisterChunks().
    return std::shared_ptr<BlobCacheFile>(file);
  }

  BlobCacheStats Stats() const override { return core_->Stats(); }

 private:
  absl::StatusOr<std::shared_ptr<BlobFile>> Create(const rafs::BlobInfo& blob)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const BlobCacheOptions& options = core_->options();
    const std::string data_path =
        StrCat(options.work_dir, "/", blob.id, options.compressed ? ".blob.raw" : ".blob.data");
    const uint64_t size = options.compressed ? blob.compressed_size : blob.uncompressed_size;

    // A data file that is new or shorter than the blob has lost chunks its map may call ready.
    bool reset = false;
    int raw_fd = ::open(data_path.c_str(), O_RDWR | O_CLOEXEC);
    if (raw_fd < 0) {
      if (errno != ENOENT) return ErrnoError(errno, StrCat("open ", data_path));
      raw_fd = ::open(data_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (raw_fd < 0) return ErrnoError(errno, StrCat("create ", data_path));
      reset = true;
    }
    UniqueFd fd(raw_fd);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, StrCat("stat ", data_path));
    if (static_cast<uint64_t>(st.st_size) < size) {
      if (!reset && st.st_size != 0) {
        LogWarn("blob cache file shorter than its blob, starting empty",
                {{"path", data_path}, {"size", st.st_size}, {"expected", size}});
      }
      reset = true;
      if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
        return ErrnoError(errno, StrCat("truncate ", data_path));
      }
    }
    ASSIGN_OR_RETURN(std::unique_ptr<ChunkMap> map,
                     ChunkMap::Open(StrCat(data_path, ".chunk_map"), blob.chunk_count, reset));

    auto file =
        std::make_shared<BlobFile>(core_, blob, data_path, std::move(fd), std::move(map), size);
    file->set_slot(core_->AddFile(file));
    // Chunks already on disk count at the blob's chunk size each (an upper bound: a chunk is never
    // larger, compressed or not) until their real sizes are learnt.
    uint32_t estimate = blob.chunk_size;
    if (estimate == 0 && size != 0) {
      estimate = static_cast<uint32_t>((size + blob.chunk_count - 1) / blob.chunk_count);
    }
    if (file->map().ready_count() != 0) core_->AddedFromDisk(file->slot(), file->map(), estimate);
    return file;
  }

  const std::shared_ptr<CacheCore> core_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<BlobFile>> files_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlobCache>> BlobCache::Open(const BlobCacheOptions& options) {
  if (options.work_dir.empty()) {
    return absl::InvalidArgumentError("blob cache: no work_dir");
  }
  RETURN_IF_ERROR(Annotate(CreateDirectories(options.work_dir, 0700),
                           StrCat("create blob cache directory ", options.work_dir)));
  return std::unique_ptr<BlobCache>(new BlobCacheImpl(options));
}

}  // namespace naiad::cache
