// File: rafs/entry_source.h
//
// Where the builder's files come from: a layer tarball (tar_source.h) or a directory
// (DirectorySource below). A source yields entries in order; for a regular file, Read() then
// returns its content.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "rafs/tree.h"

namespace naiad::rafs {

struct SourceEntry {
  std::string path;   // relative, normalized; "" is the root
  uint32_t mode = 0;  // st_mode: type and permissions
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  uint32_t rdev_major = 0;
  uint32_t rdev_minor = 0;
  uint64_t size = 0;        // regular files
  std::string symlink;      // symlinks
  std::string hardlink_to;  // non-empty: another name of an earlier entry
  Xattrs xattrs;
};

class EntrySource {
 public:
  virtual ~EntrySource() = default;
  // The next entry, or nullopt at the end.
  virtual absl::StatusOr<std::optional<SourceEntry>> Next() = 0;
  // Content of the current regular file; 0 at its end.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t size) = 0;
  // If the next `size` bytes of the current regular file are a hole that the source knows of
  // without reading it (a hole of a sparse file: zeros), moves past them and returns true;
  // otherwise returns false and stays where it is. The builder records such chunks as holes, so
  // a huge sparse file costs an index entry per chunk instead of its size in zeros to hash and
  // compress. Sources that know of no holes keep this default.
  virtual absl::StatusOr<bool> SkipHole(uint64_t size) {
    (void)size;
    return false;
  }
};

// Walks a directory tree (not following symlinks), in sorted order. Hardlinks are reported as
// such, by (device, inode).
//
// A walker thread reads ahead of the caller: it stats each entry, lists its xattrs and reads
// small regular files whole (up to kReadAheadBytes queued), so the builder's thread only hands
// chunks to the workers. A layer is mostly small files, and done on the caller's thread those
// system calls left the compressing workers waiting. Files over kWholeFileBytes, and sparse
// ones, stay open and are read by the caller, so memory stays flat whatever the file sizes.
class DirectorySource : public EntrySource {
 public:
  static constexpr size_t kWholeFileBytes = size_t{1} << 20;
  static constexpr size_t kReadAheadBytes = size_t{8} << 20;
  static constexpr size_t kReadAheadEntries = 1024;

  static absl::StatusOr<std::unique_ptr<DirectorySource>> Create(const std::string& root);
  ~DirectorySource() override;

  absl::StatusOr<std::optional<SourceEntry>> Next() override;
  absl::StatusOr<size_t> Read(char* buf, size_t size) override;
  // Holes of sparse files, found with lseek(SEEK_DATA) where the file system supports it.
  absl::StatusOr<bool> SkipHole(uint64_t size) override;

 private:
  // One entry as the walker prepared it. A regular file comes with either its content or an
  // open descriptor.
  struct Item {
    absl::StatusOr<SourceEntry> entry;  // default: kUnknown, no message to allocate
    std::string content;
    int fd = -1;
    bool may_have_holes = false;  // the file has fewer blocks than its size needs
  };

  explicit DirectorySource(std::string root) : root_(std::move(root)) {}
  void Walk();
  absl::StatusOr<Item> Prepare(const std::string& relative);
  absl::StatusOr<SourceEntry> Stat(const std::string& relative, const std::string& path);
  bool Push(Item item);  // false: the source is being destroyed
  void CloseCurrent();
  bool WorthWaking() const;  // mu_ held: the caller has enough to go on

  const std::string root_;
  // The walker thread's own.
  std::vector<std::string> pending_;  // relative paths, popped from the back
  std::unordered_map<uint64_t, std::string> seen_inodes_;
  uint64_t allocated_ = 0;  // disk bytes of the last regular file stat'ed
  // Shared; guarded by mu_. Each side sleeps only when it must and is woken only when the
  // other has made real progress (a batch of entries, or half the room), not per entry.
  std::mutex mu_;
  std::condition_variable ready_cv_;  // the caller waits for entries
  std::condition_variable room_cv_;   // the walker waits for room
  std::deque<Item> queue_;
  size_t queued_bytes_ = 0;   // content held in queue_
  size_t files_to_read_ = 0;  // entries in queue_ with a descriptor for the caller to read
  bool walk_done_ = false;
  bool stopping_ = false;
  bool caller_waiting_ = false;
  bool walker_waiting_ = false;
  std::thread walker_;
  // The caller's: the entry last returned by Next().
  Item current_;
  size_t content_pos_ = 0;
};

}  // namespace naiad::rafs
