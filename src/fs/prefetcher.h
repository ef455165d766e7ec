// File: fs/prefetcher.h
//
// Background prefetch (`fs_prefetch`): warms the blob cache with, first, the chunks of the
// files the bootstrap's prefetch table names (directories recursively), then, with prefetch_all,
// every other chunk of every blob, in blob order. Work is cut into ranged requests of at most
// merging_size bytes over adjacent chunks, served by threads_count workers, within bandwidth_rate
// bytes per second for all of them. Before each request a worker waits while any on-demand read
// is fetching, so readers always go first.
//
//   Prefetcher prefetcher(store, config.fs_prefetch);
//   prefetcher.Start();
//   ...
//   prefetcher.Stop();  // also done by the destructor
//
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "fs/chunk_store.h"
#include "fs/config.h"

namespace naiad::fs {

struct PrefetchProgress {
  uint64_t total_requests = 0;
  uint64_t done_requests = 0;
  uint64_t total_bytes = 0;  // compressed bytes planned
  uint64_t done_bytes = 0;
  uint64_t failed_requests = 0;
  uint64_t listed_files = 0;  // files named (or found under directories named) by the table
  bool finished = false;
};

class Prefetcher {
 public:
  Prefetcher(ChunkStore* store, PrefetchConfig config);
  ~Prefetcher();

  // Plans the work and starts the workers. Does nothing without a blob cache or when disabled.
  void Start();
  void Stop();
  PrefetchProgress progress() const;
  // Blocks until all work is done or Stop() (for tests and benchmarks).
  void WaitUntilFinished();

 private:
  struct Batch {
    std::vector<rafs::ChunkRef> chunks;
    uint64_t bytes = 0;
  };

  std::vector<Batch> Plan();
  void Work();
  // Sleeps as needed to keep within bandwidth_rate; false once stopping.
  bool Throttle(uint64_t bytes);

  ChunkStore* const store_;
  const PrefetchConfig config_;
  std::vector<Batch> batches_;
  std::atomic<size_t> next_{0};
  std::vector<std::thread> workers_;
  absl::Notification stop_;

  mutable absl::Mutex mu_;
  PrefetchProgress progress_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time next_send_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace naiad::fs
