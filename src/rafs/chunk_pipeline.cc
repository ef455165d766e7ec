#include "rafs/chunk_pipeline.h"

#include "base/status_macros.h"
#include "rafs/compression.h"

namespace naiad::rafs {

absl::StatusOr<PreparedChunk> ChunkPipeline::Prepare(const std::string& data) {
  PreparedChunk chunk;
  chunk.digest = Digest::Of(options_.digester, data);
  chunk.uncompressed_size = static_cast<uint32_t>(data.size());
  {
    std::lock_guard lock(known_mu_);
    chunk.skipped =
        known_.contains(std::string(chunk.digest.bytes.begin(), chunk.digest.bytes.end()));
  }
  if (chunk.skipped) return chunk;
  ASSIGN_OR_RETURN(Compressed compressed, Compress(options_.compressor, data));
  chunk.stored = std::move(compressed.data);
  chunk.compressed = compressed.compressed;
  return chunk;
}

void ChunkPipeline::MarkKnown(const Digest& digest) {
  std::lock_guard lock(known_mu_);
  known_.emplace(digest.bytes.begin(), digest.bytes.end());
}

ChunkPipeline::ChunkPipeline(const ChunkPipelineOptions& options)
    : options_(options), window_(options.window > 0 ? options.window : 2 * options.threads + 2) {
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

void ChunkPipeline::Submit(std::string data) {
  auto job = std::make_shared<Job>();
  job->data = std::move(data);
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
  std::unique_lock lock(mu_);
  done_cv_.wait(lock, [&] { return job->done; });
  return std::move(job->result);
}

void ChunkPipeline::Work() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    absl::StatusOr<PreparedChunk> result = Prepare(job->data);
    std::string().swap(job->data);
    {
      std::lock_guard lock(mu_);
      job->result = std::move(result);
      job->done = true;
    }
    done_cv_.notify_all();
  }
}

}  // namespace naiad::rafs
