#include "rafs/chunk_pipeline.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/status_macros.h"
#include "rafs/compression.h"

namespace naiad::rafs {

absl::StatusOr<PreparedChunk> ChunkPipeline::Prepare(ChunkBuffer data) {
  PreparedChunk chunk;
  chunk.digest = Digest::Of(options_.digester, data.view());
  chunk.uncompressed_size = static_cast<uint32_t>(data.size());
  {
    std::lock_guard lock(known_mu_);
    chunk.skipped = known_.contains(chunk.digest.bytes);
  }
  if (chunk.skipped) return chunk;
  if (options_.compressor != Compressor::kNone) {
    // Compressed into this worker's scratch buffer, then copied to one of the exact size: the
    // bound (over 1 MiB) is neither zero-filled nor allocated per chunk, and a chunk that does
    // not compress costs no copy at all.
    thread_local std::vector<char> scratch;
    size_t bound = CompressBound(options_.compressor, data.size());
    if (scratch.size() < bound) scratch.resize(bound);
    ASSIGN_OR_RETURN(size_t n, CompressInto(options_.compressor, data.view(), scratch,
                                            options_.compression_level));
    if (n > 0) {
      chunk.stored = ChunkBuffer(n);
      std::memcpy(chunk.stored.data(), scratch.data(), n);
      chunk.compressed = true;
      return chunk;
    }
  }
  // Stored raw: the input buffer itself, rather than Compress()'s copy of it.
  chunk.stored = std::move(data);
  return chunk;
}

void ChunkPipeline::MarkKnown(const Digest& digest) {
  std::lock_guard lock(known_mu_);
  known_.insert(digest.bytes);
}

ChunkPipeline::ChunkPipeline(const ChunkPipelineOptions& options)
    : options_(options),
      window_bytes_(options.window_bytes > 0
                        ? options.window_bytes
                        : kDefaultWindowBytesPerThread * std::max(1, options.threads)) {
  options_.max_chunks = std::max<size_t>(1, options_.max_chunks);
  for (int i = 0; i < std::max(1, options.threads); ++i) workers_.emplace_back([this] { Work(); });
}

ChunkPipeline::~ChunkPipeline() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ChunkPipeline::Submit(ChunkBuffer data) {
  if (!forming_) {
    forming_ = std::make_shared<Batch>();
    batches_.push_back(forming_);
  }
  size_t size = data.size();
  in_flight_bytes_ += size;
  ++pending_chunks_;
  forming_->bytes += size;
  forming_->sizes.push_back(size);
  forming_->inputs.push_back(std::move(data));
  if (forming_->bytes >= kBatchBytes || forming_->inputs.size() >= kBatchChunks)
    Queue(std::move(forming_));
}

void ChunkPipeline::Queue(std::shared_ptr<Batch> batch) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(batch));
  }
  work_cv_.notify_one();
}

absl::StatusOr<PreparedChunk> ChunkPipeline::Next() {
  if (batches_.empty()) return absl::FailedPreconditionError("no chunk pending");
  std::shared_ptr<Batch>& batch = batches_.front();
  if (batch == forming_) Queue(std::move(forming_));  // its chunks are wanted now
  if (taken_from_front_ == 0) {
    std::unique_lock lock(mu_);
    awaited_ = batch.get();
    done_cv_.wait(lock, [&] { return batch->done; });
    awaited_ = nullptr;
  }
  size_t i = taken_from_front_++;
  in_flight_bytes_ -= batch->sizes[i];
  --pending_chunks_;
  absl::StatusOr<PreparedChunk> result = std::move(batch->results[i]);
  if (taken_from_front_ == batch->results.size()) {
    batches_.pop_front();
    taken_from_front_ = 0;
  }
  return result;
}

void ChunkPipeline::Work() {
  while (true) {
    std::shared_ptr<Batch> batch;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      batch = std::move(queue_.front());
      queue_.pop_front();
    }
    batch->results.reserve(batch->inputs.size());
    for (ChunkBuffer& input : batch->inputs) batch->results.push_back(Prepare(std::move(input)));
    std::vector<ChunkBuffer>().swap(batch->inputs);
    bool awaited;
    {
      std::lock_guard lock(mu_);
      batch->done = true;
      awaited = awaited_ == batch.get();
    }
    if (awaited) done_cv_.notify_one();
  }
}

}  // namespace naiad::rafs
