// File: rafs/tree_snapshot.h (test-only)
//
// A comparable description of a file tree: for every path its type, permission bits, owner,
// size, content digest, symlink target, xattrs and hardlink group. Taken from a directory on disk
// or from a bootstrap plus its blobs, so tests can assert that an image holds exactly the tree it
// was built from (and that an unpacked or kernel-mounted image matches too).
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "rafs/bootstrap.h"
#include "rafs/chunk_reader.h"
#include "rafs/tree.h"

namespace naiad::rafs::testing {

struct FileSnapshot {
  uint32_t mode = 0;  // full st_mode
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;   // regular files
  std::string sha256;  // regular files
  std::string symlink;
  uint32_t rdev = 0;       // devices, EROFS encoding
  Xattrs xattrs;           // sorted; trusted.overlay.* and security.* kept
  std::string link_group;  // regular files with nlink > 1: the first path of the group

  friend bool operator==(const FileSnapshot&, const FileSnapshot&) = default;
};

using TreeSnapshot = std::map<std::string, FileSnapshot>;  // path ("" = root) -> file

struct SnapshotOptions {
  bool compare_root = true;
  bool include_xattrs = true;
};

absl::StatusOr<TreeSnapshot> SnapshotDirectory(const std::string& root,
                                               const SnapshotOptions& options = {});
absl::StatusOr<TreeSnapshot> SnapshotImage(const Bootstrap& boot, const LocalChunkReader& reader,
                                           const SnapshotOptions& options = {});

// Lists the differences, one line each ("a/b: mode 100644 vs 100755"); empty when equal.
std::string DiffSnapshots(const TreeSnapshot& want, const TreeSnapshot& got);

}  // namespace naiad::rafs::testing
