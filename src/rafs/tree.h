// File: rafs/tree.h
//
// The in-memory file tree that the builder fills (from a tar stream or a directory), that the
// merger combines layer by layer with overlay semantics, and that the bootstrap writer lays out.
// It holds metadata and chunk references only, never file data, so its size follows the number
// of files, not the size of the layer.
//
// Memory is per entry, so the representation is lean (`naiad image create` of a layer of a
// million small files holds a million of each): names live in arenas owned by the tree, not in
// per-entry strings; directories keep their children in a B-tree, not a node per name; a regular
// file's chunks are 4-byte slots of the tree's chunk table (one ChunkRef per distinct chunk),
// stored inline for one-chunk files; symlink targets and xattrs, rare, are kept out of line.
//
// Hardlinks are names sharing one TreeInode. Whiteouts are kept in overlayfs form, as RAFS layer
// bootstraps store them: a removed name is a character device 0:0, an opaque directory carries
// the xattr trusted.overlay.opaque = "y". ApplyLayer() resolves them.
//
// Not thread-safe.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "rafs/bootstrap.h"

namespace naiad::rafs {

inline constexpr char kOpaqueXattr[] = "trusted.overlay.opaque";

using Xattrs = std::vector<std::pair<std::string, std::string>>;

// A chunk slot of a file that is a hole: no data, reads as zeros (a chunk index whose block
// address is 0xFFFFFFFF). Every other slot value is an index into the tree's chunk table.
inline constexpr uint32_t kHoleChunk = 0xFFFFFFFF;

// The chunk slots of a regular file, in file order: 16 bytes, with no allocation for files of
// at most one chunk (most files of most layers).
class ChunkList {
 public:
  ChunkList() = default;
  // `count` slots, each kHoleChunk.
  explicit ChunkList(size_t count);
  ChunkList(const ChunkList& other);
  ChunkList& operator=(const ChunkList& other);
  ChunkList(ChunkList&& other) noexcept;
  ChunkList& operator=(ChunkList&& other) noexcept;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  uint32_t& operator[](size_t i) { return data()[i]; }
  uint32_t operator[](size_t i) const { return data()[i]; }
  uint32_t* begin() { return data(); }
  uint32_t* end() { return data() + size_; }
  const uint32_t* begin() const { return data(); }
  const uint32_t* end() const { return data() + size_; }

 private:
  uint32_t* data() { return size_ <= 1 ? &inline_ : heap_.get(); }
  const uint32_t* data() const { return size_ <= 1 ? &inline_ : heap_.get(); }

  uint32_t size_ = 0;
  uint32_t inline_ = kHoleChunk;  // the slot of a one-chunk file
  std::unique_ptr<uint32_t[]> heap_;
};

struct TreeInode {
  // Children by name, sorted byte-wise. Names point into an arena of the tree that holds the
  // inode: insert through Tree, never directly.
  using Children = absl::btree_map<std::string_view, std::shared_ptr<TreeInode>>;

  TreeInode() = default;
  TreeInode(const TreeInode& other);
  TreeInode& operator=(const TreeInode& other);
  TreeInode(TreeInode&&) = default;
  TreeInode& operator=(TreeInode&&) = default;

  uint32_t mode = S_IFDIR | 0755;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t rdev = 0;  // device number as stored in EROFS: new-style encoding of (major, minor)
  uint64_t size = 0;  // regular files; directories and symlinks get theirs at layout
  uint64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  // Scratch space of the bootstrap writer (the inode's record while it lays out a tree); it
  // validates what it finds here, so the value is meaningless anywhere else.
  mutable uint32_t layout_slot = 0;
  ChunkList chunks;   // regular files: slots of the tree's chunk table, in file order
  Children children;  // directories

  std::string_view symlink() const { return extra_ ? std::string_view(extra_->symlink) : ""; }
  void set_symlink(std::string target);
  // Extended attributes, sorted by name.
  const Xattrs& xattrs() const;
  Xattrs& mutable_xattrs();

  bool is_dir() const { return S_ISDIR(mode); }
  bool is_regular() const { return S_ISREG(mode); }
  bool is_whiteout() const { return S_ISCHR(mode) && rdev == 0; }
  bool is_opaque() const;

 private:
  struct Extra {
    std::string symlink;
    Xattrs xattrs;
  };
  std::unique_ptr<Extra> extra_;
};

// EROFS stores device numbers in the new Linux encoding.
uint32_t EncodeDev(uint32_t major, uint32_t minor);

// Append-only storage for names: each name is copied once into a big block, and the views it
// hands out stay valid as long as the arena lives.
class NameArena {
 public:
  std::string_view Add(std::string_view name);

 private:
  static constexpr size_t kBlockSize = 64 << 10;
  std::vector<std::unique_ptr<char[]>> blocks_;
  char* current_ = nullptr;   // the block names are added to
  size_t used_ = kBlockSize;  // of the current block
};

class Tree {
 public:
  Tree();
  Tree(Tree&&) = default;
  Tree& operator=(Tree&&) = default;

  TreeInode& root() { return *root_; }
  const TreeInode& root() const { return *root_; }
  const std::shared_ptr<TreeInode>& root_ptr() const { return root_; }

  // Inserts (or replaces) `path` ("a/b/c", relative, normalized). Missing parent directories
  // are created 0755 root:root; a non-directory in the way is an error naming the path.
  absl::Status Insert(std::string_view path, std::shared_ptr<TreeInode> inode);
  // Makes `path` another name of the inode at `target`.
  absl::Status Link(std::string_view path, std::string_view target);
  absl::StatusOr<std::shared_ptr<TreeInode>> Find(std::string_view path) const;
  // A copy of `name` in the tree's arena, valid as long as the tree: the key for a child added
  // to TreeInode::children by hand.
  std::string_view InternName(std::string_view name) { return arenas_.front()->Add(name); }

  // The distinct chunks that files refer to by slot (ChunkList); file_offset is meaningless here
  // (a chunk can belong to many files at many offsets: slot i of a file is at i * chunk size).
  const ChunkRef& chunk(uint32_t slot) const { return chunks_[slot]; }
  std::deque<ChunkRef>& mutable_chunks() { return chunks_; }
  const std::deque<ChunkRef>& chunks() const { return chunks_; }
  // Adds a chunk to the table and returns its slot.
  absl::StatusOr<uint32_t> AddChunk(const ChunkRef& chunk);

  // Overlays `upper` on this tree: whiteouts remove names, opaque directories hide what was
  // below them, directories merge, everything else replaces. The result holds no whiteouts and
  // no opaque markers. `upper` is consumed: its inodes, names and chunks move into this tree
  // (its inodes must not be shared with this tree).
  absl::Status ApplyLayer(Tree upper);

  // Builds a tree from a bootstrap; chunk blob indexes are offset by `blob_index_base`. A
  // directory reachable twice, or two directories sharing entry blocks, is DataLoss.
  static absl::StatusOr<Tree> FromBootstrap(const Bootstrap& boot, uint32_t blob_index_base = 0);

  // Calls `fn` once for every distinct inode (hardlinked inodes once), depth-first.
  void ForEachInode(const std::function<void(TreeInode&)>& fn);

  // Calls `visit` for every name in depth-first order with its path ("" for the root).
  void Walk(
      const std::function<void(const std::string& path, const TreeInode& inode)>& visit) const;

 private:
  absl::StatusOr<TreeInode*> ParentOf(std::string_view path, std::string_view* name);

  std::shared_ptr<TreeInode> root_;
  std::deque<ChunkRef> chunks_;
  // Where the names of this tree's inodes live: its own arena first, then those of the layers
  // applied on it.
  std::vector<std::shared_ptr<NameArena>> arenas_;
};

// Whiteout names in OCI layers.
inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueWhiteout = ".wh..wh..opq";

}  // namespace naiad::rafs
