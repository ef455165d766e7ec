// File: cache/blob_cache.h
//
// The local chunk cache of `naiad fs` ("blobcache" in the nydusd config), in upstream nydusd's
// on-disk layout so that a cache directory survives restarts (and upgrades from nydusd):
//
//   <work_dir>/<blob_id>.blob.data             sparse file, the blob's uncompressed size; each
//                                              chunk stored decompressed at its uncompressed offset
//   <work_dir>/<blob_id>.blob.data.chunk_map   4096-byte header + 1 bit per chunk (MSB first),
//                                              set = the chunk's bytes are on disk
//   (with `compressed`: <blob_id>.blob.raw and <blob_id>.blob.raw.chunk_map, chunks stored
//   as fetched, at their compressed offsets)
//
// docs/formats/blobcache.md describes the files. Crash safety: a chunk's bytes are written before
// its bit is set (a kill -9 between the two leaves the chunk absent, never marked ready with
// missing bytes); a chunk map with a torn or zeroed header is re-initialised empty.
//
//   ASSIGN_OR_RETURN(auto cache, BlobCache::Open({.work_dir = dir, .max_size = 10 << 30}));
//   ASSIGN_OR_RETURN(std::shared_ptr<BlobCacheFile> file, cache->OpenBlob(blob_info));
//   if (file->IsReady(chunk.ci_index)) RETURN_IF_ERROR(file->Read(chunk, &bytes));
//   else { ...fetch...; RETURN_IF_ERROR(file->Write(chunk, bytes)); }
//
// Thread-safe. One BlobCache per work_dir (and per process): two caches on one directory would
// each count and evict on their own.
//
// Eviction: when max_size is non-zero and the bytes held exceed it after a Write(),
// the least recently used chunks (over all blobs; reads and writes count as use) are dropped:
// bit cleared first, then the range punched out of the data file. OpenBlob() never evicts, so a
// caller can RegisterChunks() before the first Write().
//
// Durability: nothing is fsynced. The data file and the mapped chunk map live in the page cache,
// which outlives the process, so kill -9 at any point is safe without it. A power failure may
// leave bits set whose bytes never reached the disk (they read as zeros); `naiad fs` with
// `validate` checks every chunk read from the cache against its digest and Invalidate()s a
// mismatch, which covers that case.
//
// Concurrency with eviction: Read() copies a chunk's bytes under a per-blob shared lock, and
// eviction and Invalidate() take that lock exclusively to clear a bit and punch its range, so a
// Read() that found the chunk ready returns its bytes, never a hole. data_fd() readers have no
// such protection: re-check IsReady() after reading (a chunk evicted meanwhile may read zeros).
//
// Accounting after a restart: the chunk map records which chunks are ready, not their sizes or
// places, so ready chunks found at OpenBlob() count as blob.chunk_size bytes each (an upper
// bound) and sit at the cold end of the LRU order until a ChunkRef names them (Read(), Write(),
// Invalidate(), RegisterChunks()). Evicting such a chunk clears its bit; its bytes stay on disk
// until the chunk is written again or the blob holds no chunk at all (then the whole file is
// punched). RegisterChunks() with the blob's chunk table makes both exact.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "rafs/bootstrap.h"

namespace naiad::cache {

struct BlobCacheOptions {
  std::string work_dir;
  bool compressed = false;  // store chunks as fetched (compressed), at compressed offsets
  uint64_t max_size = 0;    // bytes of chunk data kept on disk; 0 = unlimited
};

struct BlobCacheStats {
  // Chunk bytes currently held (all blobs); chunks found on disk at OpenBlob() count at the
  // blob's chunk size until their real size is known (see the file comment).
  uint64_t bytes_stored = 0;
  uint64_t chunks_stored = 0;
  uint64_t evicted_chunks = 0;
  uint64_t evicted_bytes = 0;
};

class BlobCacheFile {
 public:
  virtual ~BlobCacheFile() = default;

  virtual bool IsReady(uint32_t ci_index) const = 0;
  // The chunk's stored bytes: uncompressed (or, in compressed mode, exactly as fetched:
  // chunk.compressed_size bytes). FailedPrecondition if the chunk is not ready.
  // InvalidArgument for a chunk index out of range or a hole, DataLoss for a range outside the
  // blob or a data file cut short.
  virtual absl::Status Read(const rafs::ChunkRef& chunk, std::string* out) = 0;
  // Stores a chunk (uncompressed bytes, or the raw fetched bytes in compressed mode) and marks
  // it ready. Writing a chunk that is already ready is a no-op. InvalidArgument if `bytes` is not
  // the chunk's size; ResourceExhausted on a full disk. May evict other chunks (or this one, if
  // it alone exceeds max_size).
  virtual absl::Status Write(const rafs::ChunkRef& chunk, std::string_view bytes) = 0;
  // Drops a chunk found corrupt: clears its bit so the next read fetches it again, and punches
  // its range. Invalidating a chunk that is not ready is a no-op.
  virtual absl::Status Invalidate(const rafs::ChunkRef& chunk) = 0;
  // Tells the cache where chunks of this blob live (e.g. the whole chunk table at mount), so
  // chunks found ready on disk at OpenBlob() are counted at their real sizes and can be punched
  // when evicted. Optional. The chunks must be this blob's; invalid ones (index out of range,
  // holes, ranges outside the blob) are ignored.
  virtual void RegisterChunks(std::span<const rafs::ChunkRef> chunks) = 0;
  // Whether every chunk of the blob is ready (the header's all-ready mark).
  virtual bool AllReady() const = 0;
  virtual uint32_t ready_count() const = 0;
  // The data file, for zero-copy replies (uncompressed mode only; -1 otherwise). Valid while
  // this object lives. Bytes of a chunk are valid there while IsReady() holds.
  virtual int data_fd() const = 0;
};

class BlobCache {
 public:
  virtual ~BlobCache() = default;
  static absl::StatusOr<std::unique_ptr<BlobCache>> Open(const BlobCacheOptions& options);

  // The cache file of a blob, created on first use; the same object for the same blob id (the
  // files live as long as the cache, and a returned file stays usable after it). InvalidArgument
  // if the blob has no chunk count (nothing to index by), if its id is not a plain file name, or
  // if the id was opened before with another chunk count.
  virtual absl::StatusOr<std::shared_ptr<BlobCacheFile>> OpenBlob(const rafs::BlobInfo& blob) = 0;
  virtual BlobCacheStats Stats() const = 0;
};

}  // namespace naiad::cache
