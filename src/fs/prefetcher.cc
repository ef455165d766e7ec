#include "fs/prefetcher.h"

#include <algorithm>
#include <deque>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "base/logging.h"

namespace naiad::fs {
namespace {

using rafs::ChunkRef;

constexpr size_t kMaxListedFiles = 1 << 20;
// Prefetch waits until readers have fetched nothing for this long.
constexpr absl::Duration kReaderQuietPeriod =
    absl::Milliseconds(300);  // a hostile table cannot make the plan unbounded

uint64_t Key(const ChunkRef& chunk) { return (uint64_t{chunk.blob_index} << 32) | chunk.ci_index; }

// The regular files under the bootstrap's prefetch table; sets `everything` when the table names
// the root (the converter's "/" policy).
std::vector<uint64_t> ListedFiles(const rafs::Bootstrap& boot, bool* everything) {
  std::vector<uint64_t> files;
  absl::flat_hash_set<uint64_t> seen;
  std::deque<uint64_t> queue(boot.prefetch_nids().begin(), boot.prefetch_nids().end());
  while (!queue.empty() && files.size() < kMaxListedFiles) {
    uint64_t nid = queue.front();
    queue.pop_front();
    if (!seen.insert(nid).second) continue;
    if (nid == boot.root_nid()) *everything = true;
    absl::StatusOr<rafs::Inode> inode = boot.GetInode(nid);
    if (!inode.ok()) continue;
    if (inode->is_regular()) {
      files.push_back(nid);
    } else if (inode->is_dir()) {
      absl::StatusOr<std::vector<rafs::DirEntry>> entries = boot.ReadDir(nid);
      if (!entries.ok()) continue;
      for (const rafs::DirEntry& entry : *entries) {
        if (entry.name != "." && entry.name != "..") queue.push_back(entry.nid);
      }
    }
  }
  return files;
}

}  // namespace

Prefetcher::Prefetcher(ChunkStore* store, PrefetchConfig config) : store_(store), config_(config) {}

Prefetcher::~Prefetcher() { Stop(); }

std::vector<Prefetcher::Batch> Prefetcher::Plan() {
  const rafs::Bootstrap& boot = store_->bootstrap();
  bool everything = false;
  std::vector<uint64_t> files = ListedFiles(boot, &everything);
  absl::flat_hash_set<uint64_t> planned;
  std::vector<ChunkRef> order;
  // The listed files' chunks first, each blob's in offset order so that they merge.
  std::vector<ChunkRef> listed;
  for (uint64_t nid : files) {
    absl::StatusOr<std::vector<ChunkRef>> chunks = boot.FileChunks(nid);
    if (!chunks.ok()) continue;
    for (const ChunkRef& chunk : *chunks) {
      if (!chunk.hole && planned.insert(Key(chunk)).second) listed.push_back(chunk);
    }
  }
  std::sort(listed.begin(), listed.end(), [](const ChunkRef& a, const ChunkRef& b) {
    return std::tie(a.blob_index, a.compressed_offset) <
           std::tie(b.blob_index, b.compressed_offset);
  });
  order = std::move(listed);
  if (config_.prefetch_all || everything) {
    for (const std::vector<ChunkRef>& blob : boot.ChunksByBlob()) {
      for (const ChunkRef& chunk : blob) {
        if (planned.insert(Key(chunk)).second) order.push_back(chunk);
      }
    }
  }
  {
    absl::MutexLock lock(&mu_);
    progress_.listed_files = files.size();
  }
  std::vector<Batch> batches;
  for (const ChunkRef& chunk : order) {
    if (store_->IsCached(chunk)) continue;
    bool extend = !batches.empty() && !batches.back().chunks.empty();
    if (extend) {
      const ChunkRef& last = batches.back().chunks.back();
      uint64_t start = batches.back().chunks.front().compressed_offset;
      extend = last.blob_index == chunk.blob_index &&
               chunk.compressed_offset >= last.compressed_offset + last.compressed_size &&
               chunk.compressed_offset + chunk.compressed_size - start <= config_.merging_size;
    }
    if (!extend) batches.emplace_back();
    batches.back().chunks.push_back(chunk);
    batches.back().bytes += chunk.compressed_size;
  }
  return batches;
}

void Prefetcher::Start() {
  if (!config_.enable || !store_->has_cache()) {
    if (config_.enable) LogWarn("fs_prefetch is enabled but there is no blob cache: skipped");
    absl::MutexLock lock(&mu_);
    progress_.finished = true;
    return;
  }
  batches_ = Plan();
  {
    absl::MutexLock lock(&mu_);
    progress_.total_requests = batches_.size();
    for (const Batch& batch : batches_) progress_.total_bytes += batch.bytes;
    progress_.finished = batches_.empty();
    running_ = config_.threads_count;
  }
  LogInfo("prefetch started", {{"requests", batches_.size()}, {"threads", config_.threads_count}});
  for (int i = 0; i < config_.threads_count; ++i) workers_.emplace_back([this] { Work(); });
}

bool Prefetcher::Throttle(uint64_t bytes) {
  if (config_.bandwidth_rate == 0) return !stop_.HasBeenNotified();
  absl::Time send_at;
  {
    absl::MutexLock lock(&mu_);
    send_at = std::max(absl::Now(), next_send_);
    next_send_ = send_at + absl::Seconds(static_cast<double>(bytes) / config_.bandwidth_rate);
  }
  return !stop_.WaitForNotificationWithTimeout(send_at - absl::Now());
}

void Prefetcher::Work() {
  while (!stop_.HasBeenNotified()) {
    size_t index = next_.fetch_add(1);
    if (index >= batches_.size()) break;
    const Batch& batch = batches_[index];
    store_->WaitForOnDemandIdle(kReaderQuietPeriod, absl::Seconds(5));
    if (!Throttle(batch.bytes)) break;
    absl::Status status = store_->Warm(batch.chunks, config_.merging_size);
    absl::MutexLock lock(&mu_);
    ++progress_.done_requests;
    progress_.done_bytes += batch.bytes;
    if (!status.ok()) {
      ++progress_.failed_requests;
      LogWarn("prefetch request failed", {{"error", status}});
    }
  }
  absl::MutexLock lock(&mu_);
  if (--running_ == 0) {
    progress_.finished = true;
    LogInfo("prefetch finished",
            {{"requests", progress_.done_requests}, {"failed", progress_.failed_requests}});
  }
}

void Prefetcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!stop_.HasBeenNotified()) stop_.Notify();
  }
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
}

PrefetchProgress Prefetcher::progress() const {
  absl::MutexLock lock(&mu_);
  return progress_;
}

void Prefetcher::WaitUntilFinished() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](PrefetchProgress* progress) { return progress->finished; }, &progress_));
}

}  // namespace naiad::fs
