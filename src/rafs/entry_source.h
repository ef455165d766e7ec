// File: rafs/entry_source.h
//
// Where the builder's files come from: a layer tarball (tar_source.h) or a directory
// (DirectorySource below). A source yields entries in order; for a regular file, Read() then
// returns its content.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
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
class DirectorySource : public EntrySource {
 public:
  static absl::StatusOr<std::unique_ptr<DirectorySource>> Create(const std::string& root);
  ~DirectorySource() override;

  absl::StatusOr<std::optional<SourceEntry>> Next() override;
  absl::StatusOr<size_t> Read(char* buf, size_t size) override;
  // Holes of sparse files, found with lseek(SEEK_DATA) where the file system supports it.
  absl::StatusOr<bool> SkipHole(uint64_t size) override;

 private:
  explicit DirectorySource(std::string root) : root_(std::move(root)) {}
  absl::StatusOr<SourceEntry> Stat(const std::string& path);

  std::string root_;
  std::vector<std::string> pending_;  // relative paths, popped from the back
  std::unordered_map<uint64_t, std::string> seen_inodes_;
  int fd_ = -1;
  uint64_t allocated_ = 0;       // disk bytes of the last regular file stat'ed
  bool may_have_holes_ = false;  // the open file has fewer blocks than its size needs
};

}  // namespace naiad::rafs
