#include "rafs/chunk_pipeline.h"

#include <algorithm>

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
    ASSIGN_OR_RETURN(Compressed compressed,
                     Compress(options_.compressor, data.view(), options_.compression_level));
    if (compressed.compressed) {
      // Compress() sized the string for the worst case; until the writer thread has written it,
      // hold only what it stores.
      compressed.data.shrink_to_fit();
      chunk.stored = ChunkBuffer(std::move(compressed.data));
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
  auto job = std::make_shared<Job>();
  job->size = data.size();
  job->data = std::move(data);
  in_flight_bytes_ += job->size;
  jobs_.push_back(job);
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(job));
  }
  work_cv_.notify_one();
}

absl::StatusOr<PreparedChunk> ChunkPipeline::Next() {
  if (jobs_.empty()) return absl::FailedPreconditionError("no chunk pending");
  std::shared_ptr<Job> job = std::move(jobs_.front());
  jobs_.pop_front();
  in_flight_bytes_ -= job->size;
  std::unique_lock lock(mu_);
  awaited_ = job.get();
  done_cv_.wait(lock, [&] { return job->done; });
  awaited_ = nullptr;
  return std::move(job->result);
}

void ChunkPipeline::Work() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    absl::StatusOr<PreparedChunk> result = Prepare(std::move(job->data));
    bool awaited;
    {
      std::lock_guard lock(mu_);
      job->result = std::move(result);
      job->done = true;
      awaited = awaited_ == job.get();
    }
    if (awaited) done_cv_.notify_one();
  }
}

}  // namespace naiad::rafs
