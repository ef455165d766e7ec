// File: rafs/chunk_pipeline.h
//
// Hashes and compresses chunks on worker threads while the caller keeps reading the layer, and
// hands results back in submission order so the blob's layout is deterministic. At most
// `window` chunks are in flight, which bounds memory at window x chunk size whatever the size of
// the layer.
//
//   ChunkPipeline pipeline({.compressor = Compressor::kZstd, .threads = 2});
//   pipeline.Submit(std::move(data));                 // blocks while the window is full
//   ASSIGN_OR_RETURN(PreparedChunk chunk, pipeline.Next());   // oldest submitted chunk
//
// Submit() and Next() must be called from one thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"
#include "rafs/blob_writer.h"

namespace naiad::rafs {

struct ChunkPipelineOptions {
  Compressor compressor = Compressor::kZstd;
  DigestAlgorithm digester = DigestAlgorithm::kBlake3;
  int threads = 2;
  int window = 0;  // 0: 2 x threads + 2
};

class ChunkPipeline {
 public:
  explicit ChunkPipeline(const ChunkPipelineOptions& options);
  ~ChunkPipeline();
  ChunkPipeline(const ChunkPipeline&) = delete;
  ChunkPipeline& operator=(const ChunkPipeline&) = delete;

  void Submit(std::string data);
  // Digests whose chunks are already stored (or in a chunk dictionary): workers hash such chunks
  // but do not compress them, since the caller will reuse the stored copy. Thread-safe.
  void MarkKnown(const Digest& digest);
  // The oldest submitted chunk, once ready. FailedPrecondition if nothing is pending.
  absl::StatusOr<PreparedChunk> Next();
  size_t pending() const { return jobs_.size(); }
  bool full() const { return static_cast<int>(jobs_.size()) >= window_; }

 private:
  struct Job {
    std::string data;
    absl::StatusOr<PreparedChunk> result = absl::UnknownError("not done");
    bool done = false;
  };
  void Work();
  absl::StatusOr<PreparedChunk> Prepare(const std::string& data);

  ChunkPipelineOptions options_;
  int window_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::deque<std::shared_ptr<Job>> jobs_;   // submission order; owned by the caller's thread
  std::deque<std::shared_ptr<Job>> queue_;  // not yet picked by a worker
  bool stopping_ = false;
  std::mutex known_mu_;
  std::unordered_set<std::string> known_;  // digest bytes
  std::vector<std::thread> workers_;
};

}  // namespace naiad::rafs
