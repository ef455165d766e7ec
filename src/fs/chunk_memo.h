// File: fs/chunk_memo.h
//
// A small in-memory LRU of decompressed chunks, bounded in bytes. The kernel reads a file in
// requests of up to 1 MiB while a chunk may be larger; without this, each request for a part of
// a chunk would fetch (or decompress and verify) the whole chunk again.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace naiad::fs {

class ChunkMemo {
 public:
  using Data = std::shared_ptr<const std::string>;

  explicit ChunkMemo(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // The chunk's bytes, or nullptr.
  Data Get(uint64_t key);
  void Put(uint64_t key, Data data);
  void Erase(uint64_t key);

 private:
  struct Entry {
    uint64_t key;
    Data data;
  };

  const uint64_t capacity_;
  absl::Mutex mu_;
  std::list<Entry> lru_ ABSL_GUARDED_BY(mu_);  // most recent first
  absl::flat_hash_map<uint64_t, std::list<Entry>::iterator> index_ ABSL_GUARDED_BY(mu_);
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace naiad::fs
