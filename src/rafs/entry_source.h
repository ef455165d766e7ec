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
};

// Walks a directory tree (not following symlinks), in sorted order. Hardlinks are reported as
// such, by (device, inode).
class DirectorySource : public EntrySource {
 public:
  static absl::StatusOr<std::unique_ptr<DirectorySource>> Create(const std::string& root);
  ~DirectorySource() override;

  absl::StatusOr<std::optional<SourceEntry>> Next() override;
  absl::StatusOr<size_t> Read(char* buf, size_t size) override;

 private:
  explicit DirectorySource(std::string root) : root_(std::move(root)) {}
  absl::StatusOr<SourceEntry> Stat(const std::string& path);

  std::string root_;
  std::vector<std::string> pending_;  // relative paths, popped from the back
  std::unordered_map<uint64_t, std::string> seen_inodes_;
  int fd_ = -1;
};

}  // namespace naiad::rafs
