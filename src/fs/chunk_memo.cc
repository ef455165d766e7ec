#include "fs/chunk_memo.h"

namespace naiad::fs {

ChunkMemo::Data ChunkMemo::Get(uint64_t key) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->data;
}

void ChunkMemo::Put(uint64_t key, Data data) {
  if (data == nullptr || data->size() > capacity_) return;
  absl::MutexLock lock(&mu_);
  if (auto it = index_.find(key); it != index_.end()) {
    bytes_ -= it->second->data->size();
    lru_.erase(it->second);
    index_.erase(it);
  }
  bytes_ += data->size();
  lru_.push_front({key, std::move(data)});
  index_[key] = lru_.begin();
  while (bytes_ > capacity_) {
    const Entry& last = lru_.back();
    bytes_ -= last.data->size();
    index_.erase(last.key);
    lru_.pop_back();
  }
}

void ChunkMemo::Erase(uint64_t key) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return;
  bytes_ -= it->second->data->size();
  lru_.erase(it->second);
  index_.erase(it);
}

}  // namespace naiad::fs
