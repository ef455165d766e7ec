// File: fs/fuse_fs.h
//
// Serves a RAFS image over FUSE (libfuse3 low-level API, multi-threaded), read-only: lookup,
// forget, getattr, readlink, open/read/release, opendir/readdir/readdirplus/releasedir, statfs,
// getxattr/listxattr (when enabled) and access. Inode numbers: the root is FUSE_ROOT_ID, every
// other inode is its nid + 2, so hardlinks (one nid) are one inode to the kernel.
//
// The image never changes, so the kernel is told to cache everything: entries and attributes for
// a day, file pages across opens (keep_cache), directory listings (cache_readdir), symlinks, and
// negative lookups.
//
//   ASSIGN_OR_RETURN(auto fs, FuseFs::Mount(boot, store, trace, {.mountpoint = "/mnt/img"}));
//   RETURN_IF_ERROR(fs->Run());        // serves until Exit() or an external umount
//
// Exit() may be called from any thread (e.g. a signal thread): it detaches the mount (lazy
// unmount), and if readers keep it busy for longer than a grace period, aborts the connection.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "fs/access_trace.h"
#include "fs/chunk_store.h"
#include "rafs/bootstrap.h"

struct fuse_session;

namespace naiad::fs {

struct FuseOptions {
  std::string mountpoint;
  int threads = 4;  // idle worker threads kept; more are started under load
  bool enable_xattr = false;
  absl::Duration cache_timeout = absl::Hours(24);  // entry and attribute validity
  absl::Duration exit_grace = absl::Seconds(5);    // busy mount: abort the connection after this
  std::string fsname = "naiad";
};

// Read latency buckets (upper bounds, microseconds); the last bucket is unbounded.
inline constexpr std::array<uint64_t, 10> kLatencyBucketsUs = {
    100, 500, 1000, 5000, 10000, 50000, 100000, 500000, 1000000, UINT64_MAX};

struct FuseMetrics {
  std::atomic<uint64_t> lookups{0};
  std::atomic<uint64_t> opens{0};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> read_bytes{0};
  std::atomic<uint64_t> read_errors{0};
  std::atomic<uint64_t> errors{0};  // any operation answered with an error other than ENOENT
  std::array<std::atomic<uint64_t>, kLatencyBucketsUs.size()> read_latency{};
};

class FuseFs {
 public:
  static absl::StatusOr<std::unique_ptr<FuseFs>> Mount(const rafs::Bootstrap& boot,
                                                       ChunkStore* store, AccessTrace* trace,
                                                       FuseOptions options);
  ~FuseFs();

  // Serves requests until Exit() or the filesystem is unmounted from outside.
  absl::Status Run();
  void Exit();

  const FuseMetrics& metrics() const { return metrics_; }
  const std::string& mountpoint() const { return options_.mountpoint; }

 private:
  friend struct FuseOps;
  FuseFs(const rafs::Bootstrap& boot, ChunkStore* store, AccessTrace* trace, FuseOptions options)
      : boot_(boot), store_(store), trace_(trace), options_(std::move(options)) {}

  const rafs::Bootstrap& boot_;
  ChunkStore* const store_;
  AccessTrace* const trace_;
  const FuseOptions options_;
  FuseMetrics metrics_;
  fuse_session* session_ = nullptr;
  dev_t device_ = 0;  // of the mount, to find its connection in /sys/fs/fuse/connections
  std::atomic<bool> exiting_{false};
  absl::Notification run_done_;
  uint64_t total_blocks_ = 0;
};

}  // namespace naiad::fs
