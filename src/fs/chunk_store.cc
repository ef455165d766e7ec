#include "fs/chunk_store.h"

#include <algorithm>
#include <cstring>
#include <tuple>

#include "absl/synchronization/notification.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "rafs/compression.h"

namespace naiad::fs {
namespace {

using rafs::ChunkRef;
using storage::ReadPriority;

constexpr size_t kNoIndex = static_cast<size_t>(-1);

uint64_t Key(const ChunkRef& chunk) { return (uint64_t{chunk.blob_index} << 32) | chunk.ci_index; }
uint64_t CompressedEnd(const ChunkRef& chunk) {
  return chunk.compressed_offset + chunk.compressed_size;
}

}  // namespace

struct ChunkStore::Pending {
  absl::Notification done;
  absl::Status status;
  ChunkData data;
};

struct ChunkStore::Claim {
  ChunkRef chunk;
  std::shared_ptr<Pending> pending;
  size_t out_index = kNoIndex;  // where GetChunks() wants the bytes; kNoIndex for read-ahead
};

absl::StatusOr<std::unique_ptr<ChunkStore>> ChunkStore::Create(const rafs::Bootstrap& boot,
                                                               storage::BlobBackend* backend,
                                                               cache::BlobCache* cache,
                                                               ChunkStoreOptions options) {
  std::unique_ptr<ChunkStore> store(new ChunkStore(boot, backend, cache, options));
  store->blob_chunks_ = boot.ChunksByBlob();
  for (const rafs::BlobInfo& blob : boot.blobs()) {
    std::shared_ptr<cache::BlobCacheFile> file;
    if (cache != nullptr) {
      absl::StatusOr<std::shared_ptr<cache::BlobCacheFile>> opened = cache->OpenBlob(blob);
      if (!opened.ok()) return Annotate(opened.status(), StrCat("blob cache for ", blob.id));
      file = std::move(*opened);
      file->RegisterChunks(store->blob_chunks_[blob.index]);
    }
    store->cache_files_.push_back(std::move(file));
  }
  if (cache != nullptr) store->writer_ = std::thread([raw = store.get()] { raw->WriteLoop(); });
  return store;
}

ChunkStore::ChunkStore(const rafs::Bootstrap& boot, storage::BlobBackend* backend,
                       cache::BlobCache* cache, ChunkStoreOptions options)
    : boot_(boot), backend_(backend), cache_(cache), options_(options), memo_(options.memo_bytes) {}

ChunkStore::~ChunkStore() {
  {
    absl::MutexLock lock(&write_mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();  // after it has written everything queued
}

void ChunkStore::WriteLoop() {
  absl::MutexLock lock(&write_mu_);
  while (true) {
    write_mu_.Await(absl::Condition(
        +[](ChunkStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->write_mu_) {
          return s->stopping_ || !s->writes_.empty();
        },
        this));
    if (writes_.empty()) return;  // stopping, and nothing is left to write
    CacheWrite write = std::move(writes_.front());
    writes_.pop_front();
    write_mu_.Unlock();
    WriteToCache(write.chunk, *write.stored);
    write_mu_.Lock();
    queued_bytes_ -= write.stored->size();
    queued_.erase(Key(write.chunk));  // only now: until the bytes are in the file, read the queue
  }
}

ChunkStore::ChunkData ChunkStore::Queued(const ChunkRef& chunk) const {
  if (!writer_.joinable()) return nullptr;
  absl::MutexLock lock(&write_mu_);
  auto it = queued_.find(Key(chunk));
  return it == queued_.end() ? nullptr : it->second;
}

cache::BlobCacheFile* ChunkStore::CacheFile(uint32_t blob_index) const {
  return blob_index < cache_files_.size() ? cache_files_[blob_index].get() : nullptr;
}

bool ChunkStore::IsCached(const ChunkRef& chunk) const {
  if (chunk.hole) return true;
  cache::BlobCacheFile* file = CacheFile(chunk.blob_index);
  return file != nullptr && (file->IsReady(chunk.ci_index) || Queued(chunk) != nullptr);
}

absl::StatusOr<std::string> ChunkStore::Decode(const ChunkRef& chunk, std::string_view raw) const {
  const rafs::BlobInfo& blob = boot_.blobs()[chunk.blob_index];
  std::string data;
  if (chunk.compressed) {
    absl::StatusOr<std::string> decompressed =
        rafs::Decompress(blob.compressor, raw, chunk.uncompressed_size);
    if (!decompressed.ok()) {
      return Annotate(decompressed.status(),
                      StrCat("chunk ", chunk.ci_index, " of blob ", blob.id));
    }
    data = std::move(*decompressed);
  } else if (raw.size() != chunk.uncompressed_size) {
    return absl::DataLossError(StrCat("chunk ", chunk.ci_index, " of blob ", blob.id, ": ",
                                      raw.size(), " bytes, want ", chunk.uncompressed_size));
  } else {
    data.assign(raw);
  }
  RETURN_IF_ERROR(Verify(chunk, data));
  return data;
}

absl::Status ChunkStore::Verify(const ChunkRef& chunk, std::string_view data) const {
  if (Digest::Of(chunk.digest.algorithm, data) != chunk.digest) {
    return absl::DataLossError(StrCat("chunk ", chunk.ci_index, " of blob ",
                                      boot_.blobs()[chunk.blob_index].id,
                                      ": digest mismatch (want ", chunk.digest.ToString(), ")"));
  }
  return absl::OkStatus();
}

ChunkStore::ChunkData ChunkStore::ReadCached(const ChunkRef& chunk) {
  cache::BlobCacheFile* file = CacheFile(chunk.blob_index);
  if (file == nullptr || !file->IsReady(chunk.ci_index)) return nullptr;
  std::string bytes;
  absl::Status status = file->Read(chunk, &bytes);
  if (!status.ok()) {
    if (!absl::IsFailedPrecondition(status)) LogWarn("blob cache read failed", {{"error", status}});
    return nullptr;
  }
  absl::Status valid;
  if (options_.cache_compressed) {
    absl::StatusOr<std::string> data = Decode(chunk, bytes);
    valid = data.status();
    if (data.ok()) bytes = std::move(*data);
  } else if (options_.validate_cached) {
    valid = Verify(chunk, bytes);
  }
  if (!valid.ok()) {
    ++metrics_.corrupt_cached;
    LogWarn("dropping corrupt cached chunk", {{"error", valid}});
    file->Invalidate(chunk).IgnoreError();
    return nullptr;
  }
  ++metrics_.cache_hits;
  auto shared = std::make_shared<const std::string>(std::move(bytes));
  memo_.Put(Key(chunk), shared);
  return shared;
}

bool ChunkStore::ReadCachedSlice(const ChunkRef& chunk, uint64_t offset, std::span<char> out) {
  if (options_.cache_compressed || options_.validate_cached) return false;
  cache::BlobCacheFile* file = CacheFile(chunk.blob_index);
  if (file == nullptr || file->data_fd() < 0 || !file->IsReady(chunk.ci_index)) return false;
  if (!PreadFull(file->data_fd(), out, chunk.uncompressed_offset + offset).ok()) return false;
  // Eviction may have punched the range out while we read: trust the bytes only if the chunk is
  // still marked ready afterwards.
  if (!file->IsReady(chunk.ci_index)) return false;
  ++metrics_.cache_hits;
  return true;
}

void ChunkStore::Store(const ChunkRef& chunk, std::string_view raw, const ChunkData& data) {
  memo_.Put(Key(chunk), data);
  if (CacheFile(chunk.blob_index) == nullptr) return;
  ChunkData stored = options_.cache_compressed ? std::make_shared<const std::string>(raw) : data;
  {
    absl::MutexLock lock(&write_mu_);
    if (queued_.contains(Key(chunk))) return;
    if (writer_.joinable() && queued_bytes_ + stored->size() <= kMaxQueuedWriteBytes) {
      queued_bytes_ += stored->size();
      queued_.emplace(Key(chunk), data);
      writes_.push_back({chunk, std::move(stored)});
      return;
    }
  }
  WriteToCache(chunk, *stored);  // the queue is full: write here
}

void ChunkStore::WriteToCache(const ChunkRef& chunk, std::string_view bytes) {
  absl::Status status = CacheFile(chunk.blob_index)->Write(chunk, bytes);
  if (!status.ok()) LogWarn("blob cache write failed", {{"error", status}});
}

absl::Status ChunkStore::FetchRange(std::span<Claim> claims, ReadPriority priority) {
  const rafs::BlobInfo& blob = boot_.blobs()[claims[0].chunk.blob_index];
  std::vector<std::string> excluded;
  size_t next = 0;
  while (next < claims.size()) {
    uint64_t start = claims[next].chunk.compressed_offset;
    uint64_t end = start;
    for (size_t i = next; i < claims.size(); ++i)
      end = std::max(end, CompressedEnd(claims[i].chunk));
    storage::BlobRead read;
    ++metrics_.backend_reads;
    RETURN_IF_ERROR(backend_->Read({.blob_id = blob.id,
                                    .offset = start,
                                    .length = end - start,
                                    .priority = priority,
                                    .exclude_sources = excluded},
                                   &read));
    metrics_.fetched_bytes += read.data.size();
    for (; next < claims.size(); ++next) {
      const ChunkRef& chunk = claims[next].chunk;
      std::string_view raw = std::string_view(read.data).substr(chunk.compressed_offset - start,
                                                                chunk.compressed_size);
      absl::StatusOr<std::string> data = Decode(chunk, raw);
      if (!data.ok()) {
        ++metrics_.bad_fetches;
        backend_->ReportBadData(read.source);
        LogWarn("bad chunk from backend, fetching again elsewhere",
                {{"source", read.source}, {"error", data.status()}});
        excluded.push_back(read.source);
        if (static_cast<int>(excluded.size()) >= options_.max_bad_sources) {
          return Annotate(data.status(), StrCat("from ", excluded.size(), " sources"));
        }
        break;
      }
      ++metrics_.fetched_chunks;
      if (priority == ReadPriority::kPrefetch) {
        ++metrics_.prefetched_chunks;
        metrics_.prefetched_bytes += chunk.compressed_size;
      }
      auto shared = std::make_shared<const std::string>(std::move(*data));
      Store(chunk, raw, shared);
      claims[next].pending->data = std::move(shared);
    }
  }
  return absl::OkStatus();
}

void ChunkStore::FetchClaims(std::vector<Claim>& claims, ReadPriority priority,
                             uint64_t max_request) {
  std::sort(claims.begin(), claims.end(), [](const Claim& a, const Claim& b) {
    return std::tie(a.chunk.blob_index, a.chunk.compressed_offset) <
           std::tie(b.chunk.blob_index, b.chunk.compressed_offset);
  });
  const uint64_t max_gap = max_request >> 7;
  size_t begin = 0;
  while (begin < claims.size()) {
    const ChunkRef& first = claims[begin].chunk;
    uint64_t end = CompressedEnd(first);
    size_t stop = begin + 1;
    for (; stop < claims.size(); ++stop) {
      const ChunkRef& next = claims[stop].chunk;
      if (next.blob_index != first.blob_index || next.compressed_offset > end + max_gap ||
          std::max(end, CompressedEnd(next)) - first.compressed_offset > max_request) {
        break;
      }
      end = std::max(end, CompressedEnd(next));
    }
    absl::Status status = FetchRange(std::span(claims).subspan(begin, stop - begin), priority);
    for (size_t i = begin; i < stop; ++i) {
      if (claims[i].pending->data == nullptr) {
        claims[i].pending->status =
            status.ok() ? absl::InternalError("chunk was not fetched") : status;
      }
    }
    begin = stop;
  }
  absl::MutexLock lock(&mu_);
  for (Claim& claim : claims) {
    auto it = inflight_.find(Key(claim.chunk));
    if (it != inflight_.end() && it->second == claim.pending) inflight_.erase(it);
    claim.pending->done.Notify();
  }
}

// The offset an amplified request of a blob may reach: `amplify_io` bytes past the first chunk
// claimed, brought back to a multiple of `amplify_align` when that still covers every claimed
// chunk. Through a Naiad (or Dragonfly) peer the origin is read in whole pieces, so a request
// that ends on a piece boundary leaves no fetched byte of its last piece unread.
uint64_t ChunkStore::AmplifyLimit(uint64_t first_offset, uint64_t claimed_end) const {
  const uint64_t limit = first_offset + options_.amplify_io;
  const uint64_t align = options_.amplify_align;
  if (align == 0) return limit;
  const uint64_t aligned = limit / align * align;
  return aligned >= claimed_end ? aligned : limit;
}

void ChunkStore::AddAmplification(std::vector<Claim>& claims) {
  if (options_.amplify_io == 0) return;
  struct Extent {
    uint64_t begin = UINT64_MAX;  // of the first claimed chunk
    uint64_t end = 0;             // of the last claimed chunk
  };
  absl::flat_hash_map<uint32_t, Extent> extents;  // by blob
  for (const Claim& claim : claims) {
    Extent& extent = extents[claim.chunk.blob_index];
    extent.begin = std::min(extent.begin, claim.chunk.compressed_offset);
    extent.end = std::max(extent.end, CompressedEnd(claim.chunk));
  }
  const uint64_t max_gap = options_.amplify_io >> 7;
  for (const auto& [blob, extent] : extents) {
    uint64_t end = extent.end;
    const uint64_t limit = AmplifyLimit(extent.begin, end);
    cache::BlobCacheFile* file = CacheFile(blob);
    const std::vector<ChunkRef>& chunks = blob_chunks_[blob];
    auto it = std::lower_bound(
        chunks.begin(), chunks.end(), end,
        [](const ChunkRef& chunk, uint64_t offset) { return chunk.compressed_offset < offset; });
    for (; it != chunks.end(); ++it) {
      if (it->compressed_offset > end + max_gap) break;
      if (CompressedEnd(*it) > limit) break;
      if (file == nullptr || file->IsReady(it->ci_index) || inflight_.contains(Key(*it))) break;
      auto pending = std::make_shared<Pending>();
      inflight_.emplace(Key(*it), pending);
      claims.push_back({*it, std::move(pending)});
      end = CompressedEnd(*it);
    }
  }
}

absl::Status ChunkStore::GetChunks(std::span<const ChunkRef> chunks, ReadPriority priority,
                                   std::vector<ChunkData>* out) {
  out->assign(chunks.size(), nullptr);
  std::vector<size_t> missing;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const ChunkRef& chunk = chunks[i];
    if (chunk.hole) {
      (*out)[i] = std::make_shared<const std::string>(chunk.uncompressed_size, '\0');
    } else if (ChunkData data = memo_.Get(Key(chunk))) {
      ++metrics_.memo_hits;
      (*out)[i] = std::move(data);
    } else if (ChunkData queued = Queued(chunk)) {
      ++metrics_.memo_hits;
      (*out)[i] = std::move(queued);
    } else if (ChunkData cached = ReadCached(chunk)) {
      (*out)[i] = std::move(cached);
    } else {
      missing.push_back(i);
    }
  }
  if (missing.empty()) return absl::OkStatus();
  metrics_.cache_misses += missing.size();

  std::vector<Claim> claims;
  std::vector<std::pair<size_t, std::shared_ptr<Pending>>> waits;
  const bool on_demand = priority == ReadPriority::kOnDemand;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i : missing) {
      uint64_t key = Key(chunks[i]);
      if (auto it = inflight_.find(key); it != inflight_.end()) {
        waits.emplace_back(i, it->second);
        continue;
      }
      auto pending = std::make_shared<Pending>();
      inflight_.emplace(key, pending);
      claims.push_back({chunks[i], pending, i});
    }
    if (!claims.empty() && on_demand) {
      if (cache_ != nullptr) AddAmplification(claims);
      ++on_demand_fetches_;
    }
  }
  if (!claims.empty()) {
    FetchClaims(claims, priority, std::max<uint64_t>(options_.amplify_io, boot_.chunk_size()));
    if (on_demand) {
      absl::MutexLock lock(&mu_);
      --on_demand_fetches_;
      last_on_demand_ = absl::Now();
    }
  }
  absl::Status status;
  for (const Claim& claim : claims) {
    if (claim.out_index == kNoIndex) continue;
    if (!claim.pending->status.ok()) status.Update(claim.pending->status);
    (*out)[claim.out_index] = claim.pending->data;
  }
  for (auto& [index, pending] : waits) {
    pending->done.WaitForNotification();
    ++metrics_.shared_waits;
    if (!pending->status.ok()) status.Update(pending->status);
    (*out)[index] = pending->data;
  }
  return status;
}

absl::Status ChunkStore::Read(std::span<const ChunkRef> file_chunks, uint64_t offset,
                              std::span<char> out) {
  const uint64_t end = offset + out.size();
  auto it =
      std::upper_bound(file_chunks.begin(), file_chunks.end(), offset,
                       [](uint64_t off, const ChunkRef& chunk) { return off < chunk.file_offset; });
  if (it != file_chunks.begin()) --it;
  std::vector<ChunkRef> needed;
  std::vector<std::pair<uint64_t, std::span<char>>> needed_slices;  // offset in chunk, target
  uint64_t covered = offset;
  for (; it != file_chunks.end() && it->file_offset < end; ++it) {
    const ChunkRef& chunk = *it;
    uint64_t lo = std::max(offset, chunk.file_offset);
    uint64_t hi = std::min(end, chunk.file_offset + chunk.uncompressed_size);
    if (lo >= hi) continue;
    if (lo != covered) break;
    covered = hi;
    std::span<char> target = out.subspan(lo - offset, hi - lo);
    uint64_t in_chunk = lo - chunk.file_offset;
    if (chunk.hole) {
      std::memset(target.data(), 0, target.size());
    } else if (ChunkData data = memo_.Get(Key(chunk))) {
      ++metrics_.memo_hits;
      std::memcpy(target.data(), data->data() + in_chunk, target.size());
    } else if (!ReadCachedSlice(chunk, in_chunk, target)) {
      needed.push_back(chunk);
      needed_slices.emplace_back(in_chunk, target);
    }
  }
  if (covered != end) {
    return absl::DataLossError(StrCat("file bytes [", covered, ", ", end, ") lie in no chunk"));
  }
  if (needed.empty()) return absl::OkStatus();
  std::vector<ChunkData> data;
  RETURN_IF_ERROR(GetChunks(needed, ReadPriority::kOnDemand, &data));
  for (size_t i = 0; i < needed.size(); ++i) {
    auto [in_chunk, target] = needed_slices[i];
    std::memcpy(target.data(), data[i]->data() + in_chunk, target.size());
  }
  return absl::OkStatus();
}

absl::Status ChunkStore::Warm(std::span<const ChunkRef> chunks, uint64_t max_request) {
  if (cache_ == nullptr) return absl::OkStatus();
  std::vector<Claim> claims;
  {
    absl::MutexLock lock(&mu_);
    for (const ChunkRef& chunk : chunks) {
      if (IsCached(chunk) || inflight_.contains(Key(chunk))) continue;
      auto pending = std::make_shared<Pending>();
      inflight_.emplace(Key(chunk), pending);
      claims.push_back({chunk, std::move(pending)});
    }
  }
  if (claims.empty()) return absl::OkStatus();
  FetchClaims(claims, ReadPriority::kPrefetch, max_request);
  for (const Claim& claim : claims) RETURN_IF_ERROR(claim.pending->status);
  return absl::OkStatus();
}

void ChunkStore::WaitForOnDemandIdle(absl::Duration quiet, absl::Duration limit) {
  absl::Time deadline = absl::Now() + limit;
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.AwaitWithDeadline(absl::Condition(
                              +[](int* fetches) { return *fetches == 0; }, &on_demand_fetches_),
                          deadline);
    absl::Time quiet_at = last_on_demand_ + quiet;
    absl::Time now = absl::Now();
    if (on_demand_fetches_ > 0 || now >= deadline || now >= quiet_at) return;
    // Sleep out the rest of the quiet period (woken early when a reader starts fetching).
    mu_.AwaitWithDeadline(absl::Condition(
                              +[](int* fetches) { return *fetches > 0; }, &on_demand_fetches_),
                          std::min(quiet_at, deadline));
  }
}

}  // namespace naiad::fs
