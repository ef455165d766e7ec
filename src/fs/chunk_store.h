// File: fs/chunk_store.h
//
// The read path of `naiad fs`: turns "these chunks of a file" into verified, decompressed bytes,
// from (in order) a small in-memory cache of recent chunks, the on-disk blob cache, or the
// backend.
//
//   ChunkStore store(boot, backend, cache, {.amplify_io = 1 << 20});
//   RETURN_IF_ERROR(store.Read(file_chunks, offset, std::span<char>(buf, size)));
//
// Guarantees:
//   - Every chunk fetched from the backend is decompressed and checked against its digest before
//     anyone sees it; a mismatch is reported to the backend (ReportBadData) and the chunk is read
//     again from another source; when every source is bad the read fails with DataLoss (the FUSE
//     layer answers EIO). Cached chunks are re-verified when `validate_cached` is set; a corrupt
//     cached chunk is dropped from the cache and fetched again.
//   - Concurrent readers of one chunk share one fetch (single flight), whether the first reader
//     was a FUSE request or prefetch.
//   - A missed on-demand read fetches, in the same request, the following chunks of the blob
//     that are not cached yet, up to `amplify_io` bytes past the first chunk missed (with a
//     cache only), ending on an `amplify_align` boundary when it can, and adjacent missing chunks
//     are merged into one ranged request.
//   - A fetched chunk goes to its readers (and the in-memory cache) before it is written to the
//     blob cache: those writes run on a writer thread, so no reader waits for them (up to
//     kMaxQueuedWriteBytes queued; beyond, the fetching thread writes). A queued chunk counts as
//     cached and is read from the queue; the destructor writes what is still queued.
//   - Prefetch (Warm) yields to on-demand reads: WaitForOnDemandIdle() blocks while any on-demand
//     fetch is in flight.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cache/blob_cache.h"
#include "fs/chunk_memo.h"
#include "rafs/bootstrap.h"
#include "storage/backend.h"

namespace naiad::fs {

struct ChunkStoreOptions {
  bool validate_cached = false;   // re-verify chunks read from the blob cache
  bool cache_compressed = false;  // the blob cache holds chunks as fetched (compressed)
  uint64_t amplify_io = 1 << 20;  // bytes a missed on-demand read fetches ahead
  // An amplified request ends at a multiple of this offset in the blob when it can (0: off).
  // 1 MiB is the piece size a Naiad peer uses for blobs up to 1000 MiB (docs/design/seed-path.md).
  uint64_t amplify_align = 1 << 20;
  uint64_t memo_bytes = 64 << 20;  // in-memory cache of recently used chunks
  int max_bad_sources = 3;         // sources tried for one chunk before giving up
};

struct ChunkStoreMetrics {
  std::atomic<uint64_t> memo_hits{0};     // from memory: the LRU, or the blob-cache write queue
  std::atomic<uint64_t> cache_hits{0};    // chunks served by the blob cache
  std::atomic<uint64_t> cache_misses{0};  // chunks that had to be fetched by a reader
  std::atomic<uint64_t> fetched_chunks{0};
  std::atomic<uint64_t> fetched_bytes{0};  // compressed bytes received from the backend
  std::atomic<uint64_t> backend_reads{0};  // ranged reads issued
  std::atomic<uint64_t> prefetched_chunks{0};
  std::atomic<uint64_t> prefetched_bytes{0};
  std::atomic<uint64_t> bad_fetches{0};     // chunks that failed verification from a source
  std::atomic<uint64_t> corrupt_cached{0};  // cached chunks found corrupt and dropped
  std::atomic<uint64_t> shared_waits{0};    // chunks a reader got from another's fetch
};

class ChunkStore {
 public:
  // `cache` may be null (no blob cache). The bootstrap, backend and cache must outlive this.
  static absl::StatusOr<std::unique_ptr<ChunkStore>> Create(const rafs::Bootstrap& boot,
                                                            storage::BlobBackend* backend,
                                                            cache::BlobCache* cache,
                                                            ChunkStoreOptions options);
  ~ChunkStore();

  // Copies bytes [offset, offset + out.size()) of a file into `out`. `file_chunks` are the
  // file's chunks in file order (Bootstrap::FileChunks); the range must lie inside the file.
  absl::Status Read(std::span<const rafs::ChunkRef> file_chunks, uint64_t offset,
                    std::span<char> out);

  // Makes sure `chunks` (of one blob, by compressed offset) are in the blob cache, fetching the
  // missing ones in ranged requests of at most `max_request` bytes. Without a cache: no-op.
  absl::Status Warm(std::span<const rafs::ChunkRef> chunks, uint64_t max_request);

  bool IsCached(const rafs::ChunkRef& chunk) const;
  // Blocks while an on-demand fetch is in flight or one ended less than `quiet` ago (a starting
  // container reads in bursts with short gaps; prefetch must not take the link in those gaps),
  // at most `limit`.
  void WaitForOnDemandIdle(absl::Duration quiet, absl::Duration limit);

  const ChunkStoreMetrics& metrics() const { return metrics_; }
  const rafs::Bootstrap& bootstrap() const { return boot_; }
  bool has_cache() const { return cache_ != nullptr; }

 private:
  struct Pending;
  struct Claim;
  using ChunkData = std::shared_ptr<const std::string>;

  ChunkStore(const rafs::Bootstrap& boot, storage::BlobBackend* backend, cache::BlobCache* cache,
             ChunkStoreOptions options);

  // The decompressed bytes of each chunk in `chunks`, in order.
  absl::Status GetChunks(std::span<const rafs::ChunkRef> chunks, storage::ReadPriority priority,
                         std::vector<ChunkData>* out);
  // A cached chunk's bytes, verified if configured; nullptr when not cached (or found corrupt).
  ChunkData ReadCached(const rafs::ChunkRef& chunk);
  // Copies part of a cached chunk straight from the cache file when no verification is needed.
  bool ReadCachedSlice(const rafs::ChunkRef& chunk, uint64_t offset, std::span<char> out);
  // Fetches chunks the caller has claimed, merged into ranges; completes their Pendings.
  void FetchClaims(std::vector<Claim>& claims, storage::ReadPriority priority,
                   uint64_t max_request);
  // One ranged read (with bad-source retries) of chunks that lie close together in one blob.
  absl::Status FetchRange(std::span<Claim> claims, storage::ReadPriority priority);
  // Following chunks of the blob worth fetching along with a missed read.
  void AddAmplification(std::vector<Claim>& claims) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t AmplifyLimit(uint64_t first_offset, uint64_t claimed_end) const;
  // Decompresses a fetched chunk and verifies its digest.
  absl::StatusOr<std::string> Decode(const rafs::ChunkRef& chunk, std::string_view raw) const;
  absl::Status Verify(const rafs::ChunkRef& chunk, std::string_view data) const;
  // Keeps a fetched chunk in memory and queues it for the blob cache.
  void Store(const rafs::ChunkRef& chunk, std::string_view raw, const ChunkData& data);
  void WriteToCache(const rafs::ChunkRef& chunk, std::string_view bytes);
  // A chunk queued for the blob cache, or nullptr.
  ChunkData Queued(const rafs::ChunkRef& chunk) const;
  void WriteLoop();
  cache::BlobCacheFile* CacheFile(uint32_t blob_index) const;

  const rafs::Bootstrap& boot_;
  storage::BlobBackend* const backend_;
  cache::BlobCache* const cache_;
  const ChunkStoreOptions options_;
  std::vector<std::shared_ptr<cache::BlobCacheFile>> cache_files_;  // by blob index
  std::vector<std::vector<rafs::ChunkRef>> blob_chunks_;  // by blob index, by compressed offset
  ChunkMemo memo_;
  ChunkStoreMetrics metrics_;

  // Blob-cache writes waiting for the writer thread.
  struct CacheWrite {
    rafs::ChunkRef chunk;
    ChunkData stored;  // the bytes to write: `data`, or the chunk as fetched (cache_compressed)
  };
  static constexpr size_t kMaxQueuedWriteBytes = size_t{32} << 20;
  mutable absl::Mutex write_mu_;
  std::deque<CacheWrite> writes_ ABSL_GUARDED_BY(write_mu_);
  absl::flat_hash_map<uint64_t, ChunkData> queued_ ABSL_GUARDED_BY(write_mu_);  // key -> data
  size_t queued_bytes_ ABSL_GUARDED_BY(write_mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(write_mu_) = false;
  std::thread writer_;  // only with a blob cache

  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Pending>> inflight_ ABSL_GUARDED_BY(mu_);
  int on_demand_fetches_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_on_demand_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace naiad::fs
