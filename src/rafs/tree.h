// File: rafs/tree.h
//
// The in-memory file tree that the builder fills (from a tar stream or a directory), that the
// merger combines layer by layer with overlay semantics, and that the bootstrap writer lays out.
// It holds metadata and chunk references only, never file data, so its size follows the number
// of files, not the size of the layer.
//
// Hardlinks are names sharing one TreeInode. Whiteouts are kept in overlayfs form, as RAFS layer
// bootstraps store them: a removed name is a character device 0:0, an opaque directory carries
// the xattr trusted.overlay.opaque = "y". ApplyLayer() resolves them.
//
// Not thread-safe.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "rafs/bootstrap.h"

namespace naiad::rafs {

inline constexpr char kOpaqueXattr[] = "trusted.overlay.opaque";

using Xattrs = std::vector<std::pair<std::string, std::string>>;

struct TreeInode {
  uint32_t mode = S_IFDIR | 0755;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t rdev = 0;  // device number as stored in EROFS: new-style encoding of (major, minor)
  uint64_t size = 0;  // regular files; directories and symlinks get theirs at layout
  uint64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  std::string symlink;
  Xattrs xattrs;                 // sorted by name
  std::vector<ChunkRef> chunks;  // regular files, in file order
  std::map<std::string, std::shared_ptr<TreeInode>, std::less<>> children;  // directories

  bool is_dir() const { return S_ISDIR(mode); }
  bool is_regular() const { return S_ISREG(mode); }
  bool is_whiteout() const { return S_ISCHR(mode) && rdev == 0; }
  bool is_opaque() const;
};

// EROFS stores device numbers in the new Linux encoding.
uint32_t EncodeDev(uint32_t major, uint32_t minor);

class Tree {
 public:
  Tree();

  TreeInode& root() { return *root_; }
  const TreeInode& root() const { return *root_; }
  const std::shared_ptr<TreeInode>& root_ptr() const { return root_; }

  // Inserts (or replaces) `path` ("a/b/c", relative, normalized). Missing parent directories
  // are created 0755 root:root; a non-directory in the way is an error naming the path.
  absl::Status Insert(std::string_view path, std::shared_ptr<TreeInode> inode);
  // Makes `path` another name of the inode at `target`.
  absl::Status Link(std::string_view path, std::string_view target);
  absl::StatusOr<std::shared_ptr<TreeInode>> Find(std::string_view path) const;

  // Overlays `upper` on this tree: whiteouts remove names, opaque directories hide what was
  // below them, directories merge, everything else replaces. The result holds no whiteouts and
  // no opaque markers.
  void ApplyLayer(const Tree& upper);

  // Builds a tree from a bootstrap; chunk blob indexes are offset by `blob_index_base`.
  static absl::StatusOr<Tree> FromBootstrap(const Bootstrap& boot, uint32_t blob_index_base = 0);

  // Calls `fn` once for every distinct inode (hardlinked inodes once), depth-first.
  void ForEachInode(const std::function<void(TreeInode&)>& fn);

  // Calls `visit` for every name in depth-first order with its path ("" for the root).
  void Walk(
      const std::function<void(const std::string& path, const TreeInode& inode)>& visit) const;

 private:
  absl::StatusOr<TreeInode*> ParentOf(std::string_view path, std::string_view* name);

  std::shared_ptr<TreeInode> root_;
};

// Whiteout names in OCI layers.
inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueWhiteout = ".wh..wh..opq";

}  // namespace naiad::rafs
