// File: fs/access_trace.h
//
// What a mounted image's readers touched: the path of every inode the kernel looked up, and for
// each file opened, its open/read counts and when it was first opened. Files() lists them in
// first-access order; TraceText() is that order as a file list, one path per line, which
// `naiad image create --prefetch-policy fs` reads on stdin: a recorded start-up becomes the next
// image's prefetch table.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace naiad::fs {

struct FileAccess {
  uint64_t nid = 0;
  std::string path;
  uint64_t opens = 0;
  uint64_t reads = 0;
  uint64_t bytes_read = 0;
  absl::Duration first_access;  // since the trace started
  uint64_t order = 0;           // 0 for the first file accessed
};

class AccessTrace {
 public:
  AccessTrace() : start_(absl::Now()) {}

  // Remembers the path of an inode (first path wins for hardlinks).
  void NotePath(uint64_t nid, std::string_view parent_path, std::string_view name);
  void NoteRoot(uint64_t nid);
  std::string PathOf(uint64_t nid) const;

  void RecordOpen(uint64_t nid);
  void RecordRead(uint64_t nid, uint64_t bytes);

  std::vector<FileAccess> Files() const;  // first-access order
  std::string TraceText() const;          // "/usr/bin/python3\n/usr/lib/...\n"

 private:
  FileAccess& Touch(uint64_t nid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Time start_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::string> paths_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, FileAccess> files_ ABSL_GUARDED_BY(mu_);
};

}  // namespace naiad::fs
