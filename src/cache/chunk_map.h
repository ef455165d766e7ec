// File: cache/chunk_map.h
//
// The persistent "which chunks are cached" bitmap of a blob cache file, in upstream nydusd's
// `.chunk_map` format (docs/formats/blobcache.md):
//
//   [ChunkMapHeader, 4096 bytes][1 bit per chunk, MSB first: chunk i is byte 4096 + i / 8,
//                                mask 0x80 >> (i % 8); set = the chunk's bytes are on disk]
//
// The file is mapped shared and bits are flipped with atomic byte operations, so the state
// reaches the page cache at once and survives the death of the process (kill -9) without any
// write or fsync. A file whose header is zeroed, torn or from another format, or whose size does
// not match the chunk count, is replaced by an empty map (logged). A new map is built in a
// temporary file and renamed into place, so a half-created map is never opened.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<ChunkMap> map, ChunkMap::Open(path, blob.chunk_count));
//   if (!map->IsReady(ci)) { ...write the chunk's bytes...; map->SetReady(ci); }
//
// Thread safety: every method may be called concurrently. IsReady() is one atomic load.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

static_assert(std::endian::native == std::endian::little, "the chunk map header is little-endian");

namespace naiad::cache {

inline constexpr uint32_t kChunkMapMagic = 0x424D4150;  // "PAMB" little-endian
inline constexpr uint32_t kChunkMapVersion = 1;
inline constexpr uint32_t kChunkMapMagic2 = 0x434D4150;    // "PAMC"
inline constexpr uint32_t kChunkMapAllReady = 0x4D4D4150;  // "PAMM": every chunk is ready
inline constexpr uint64_t kChunkMapHeaderSize = 4096;

// The on-disk header. `all_ready` is 0 or kChunkMapAllReady; the rest is reserved (zero).
struct __attribute__((packed)) ChunkMapHeader {
  uint32_t magic;
  uint32_t version;
  uint32_t magic2;
  uint32_t all_ready;
  uint8_t reserved[4080];
};
static_assert(sizeof(ChunkMapHeader) == kChunkMapHeaderSize);
static_assert(offsetof(ChunkMapHeader, magic) == 0);
static_assert(offsetof(ChunkMapHeader, version) == 4);
static_assert(offsetof(ChunkMapHeader, magic2) == 8);
static_assert(offsetof(ChunkMapHeader, all_ready) == 12);
static_assert(offsetof(ChunkMapHeader, reserved) == 16);

// Size of the map file for `chunk_count` chunks: header + ceil(chunk_count / 8).
constexpr uint64_t ChunkMapFileSize(uint32_t chunk_count) {
  return kChunkMapHeaderSize + (uint64_t{chunk_count} + 7) / 8;
}

class ChunkMap {
 public:
  // Opens the map at `path` for a blob of `chunk_count` (> 0) chunks, creating it (0600) if
  // missing. An existing file that is not a valid map of that size is replaced by an empty one;
  // with `reset`, an existing map is replaced by an empty one in any case (the data it describes
  // is gone).
  static absl::StatusOr<std::unique_ptr<ChunkMap>> Open(const std::string& path,
                                                        uint32_t chunk_count, bool reset = false);
  ~ChunkMap();
  ChunkMap(const ChunkMap&) = delete;
  ChunkMap& operator=(const ChunkMap&) = delete;

  uint32_t chunk_count() const { return chunk_count_; }
  const std::string& path() const { return path_; }
  // Whether Open() replaced an existing file (unusable, or `reset`) by an empty map.
  bool reinitialized() const { return reinitialized_; }

  // False for an index out of range.
  bool IsReady(uint32_t index) const;
  // Marks a chunk ready (release order: bytes written before the call are visible to a thread
  // that sees the bit). Returns whether this call changed the bit; false if out of range.
  bool SetReady(uint32_t index);
  // Marks a chunk absent and drops the all-ready mark. Returns whether this call changed the bit.
  bool ClearReady(uint32_t index);
  // Whether every chunk is ready (the header's all-ready mark follows this).
  bool AllReady() const { return ready_count() == chunk_count_; }
  uint32_t ready_count() const { return ready_count_.load(std::memory_order_acquire); }

 private:
  ChunkMap(std::string path, uint32_t chunk_count, uint8_t* base, bool reinitialized);

  // Writes the header's all-ready mark to match ready_count_.
  void UpdateAllReadyMark();

  const std::string path_;
  const uint32_t chunk_count_;
  uint8_t* const base_;  // the whole file, mapped shared
  const bool reinitialized_;
  std::atomic<uint32_t> ready_count_{0};
  // Serialises writes of the all-ready mark so that the last writer sees the final count.
  absl::Mutex mark_mu_;
};

}  // namespace naiad::cache
