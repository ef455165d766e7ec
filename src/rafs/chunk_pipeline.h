// File: rafs/chunk_pipeline.h
//
// Hashes and compresses chunks on worker threads while the caller keeps reading the layer, and
// hands results back in submission order so the blob's layout is deterministic. The window is
// sized in bytes: submitted chunks are in flight until Next() returns them, and full() says when
// their input bytes reach `window_bytes`. That bounds memory (about twice the window: inputs not
// yet compressed plus outputs not yet collected) whatever the size of the layer, and keeps the
// workers busy when most chunks are small files, which a window counted in chunks would not.
//
//   ChunkPipeline pipeline({.compressor = Compressor::kZstd, .threads = 2});
//   ChunkBuffer data(size);                              // not zero-filled
//   ... fill data.data() ...
//   pipeline.Submit(std::move(data));
//   while (pipeline.full()) {
//     ASSIGN_OR_RETURN(PreparedChunk chunk, pipeline.Next());   // oldest submitted chunk
//     ...
//   }
//
// Submit(), Next(), pending() and full() must be called from one thread; MarkKnown() from any.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "rafs/blob_writer.h"

namespace naiad::rafs {

struct ChunkPipelineOptions {
  Compressor compressor = Compressor::kZstd;
  int compression_level = kDefaultZstdLevel;  // zstd only
  DigestAlgorithm digester = DigestAlgorithm::kBlake3;
  int threads = 2;
  // Input bytes in flight before full(); 0: kDefaultWindowBytesPerThread per thread. One chunk
  // is always accepted, however big.
  size_t window_bytes = 0;
  // Chunks in flight before full(), whatever their size (bounds per-chunk bookkeeping).
  size_t max_chunks = 4096;
};

class ChunkPipeline {
 public:
  // Enough queued work to keep a worker busy while the caller parses tar headers or waits for
  // the writer; a bigger window measured no faster, only bigger.
  static constexpr size_t kDefaultWindowBytesPerThread = size_t{4} << 20;

  explicit ChunkPipeline(const ChunkPipelineOptions& options);
  ~ChunkPipeline();
  ChunkPipeline(const ChunkPipeline&) = delete;
  ChunkPipeline& operator=(const ChunkPipeline&) = delete;

  void Submit(ChunkBuffer data);
  // Digests whose chunks are already stored (or in a chunk dictionary): workers hash such chunks
  // but do not compress them, since the caller will reuse the stored copy. Thread-safe.
  void MarkKnown(const Digest& digest);
  // The oldest submitted chunk, once ready. FailedPrecondition if nothing is pending.
  absl::StatusOr<PreparedChunk> Next();
  size_t pending() const { return pending_chunks_; }
  bool full() const {
    return in_flight_bytes_ >= window_bytes_ || pending_chunks_ >= options_.max_chunks;
  }

 private:
  // Small chunks (most files of a layer are small) travel to the workers in batches of about
  // kBatchBytes: one hand-over, so one thread wake-up, per batch rather than per chunk. Waking a
  // thread is the dearest part of a tiny chunk's trip, dearer still inside a VM.
  static constexpr size_t kBatchBytes = size_t{256} << 10;
  static constexpr size_t kBatchChunks = 64;
  struct Batch {
    std::vector<ChunkBuffer> inputs;
    std::vector<size_t> sizes;
    size_t bytes = 0;
    std::vector<absl::StatusOr<PreparedChunk>> results;
    bool done = false;  // guarded by mu_
  };
  void Queue(std::shared_ptr<Batch> batch);
  void Work();
  absl::StatusOr<PreparedChunk> Prepare(ChunkBuffer data);

  ChunkPipelineOptions options_;
  size_t window_bytes_;
  // The caller's thread only.
  size_t in_flight_bytes_ = 0;  // input bytes of the pending chunks
  size_t pending_chunks_ = 0;
  std::deque<std::shared_ptr<Batch>> batches_;  // submission order
  size_t taken_from_front_ = 0;                 // results of batches_.front() already returned
  std::shared_ptr<Batch> forming_;              // the last batch, not handed to a worker yet
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const Batch* awaited_ = nullptr;  // the batch Next() waits for; workers wake it only for that
  std::deque<std::shared_ptr<Batch>> queue_;  // not yet picked by a worker
  bool stopping_ = false;
  std::mutex known_mu_;
  absl::flat_hash_set<DigestBytes, DigestBytesHash> known_;
  std::vector<std::thread> workers_;
};

}  // namespace naiad::rafs
