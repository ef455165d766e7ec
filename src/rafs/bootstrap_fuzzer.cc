// libFuzzer target for the bootstrap reader: arbitrary bytes go through Bootstrap::FromBytes(),
// then everything reachable is read with every accessor (GetInode, Xattrs, ReadLink, FileChunks,
// ReadDir, Lookup, Resolve, ChunkTable, the prefetch table) and through Tree::FromBootstrap(), as
// `naiad image merge` reads a layer. Errors are fine; crashes, hangs, sanitizer reports and
// results that contradict each other (see Check below) are bugs.
//
//   scripts/fuzz rafs_bootstrap_fuzzer 300     # clang build in build-fuzz, 300 seconds
//
// rafs_fuzz_test compiles this file with g++ and runs it over thousands of deterministic
// mutations of valid bootstraps (bootstrap_fuzz_test.cc).
#include "rafs/bootstrap_fuzzer.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "rafs/bootstrap.h"
#include "rafs/tree.h"

namespace naiad::rafs::fuzzing {
namespace {

// Bounds on the walk: a hostile bootstrap can list a directory inside itself, share one
// directory block between thousands of inodes or nest names deeply.
constexpr uint64_t kMaxVisits = 1 << 12;   // inodes looked at
constexpr uint64_t kMaxDirents = 1 << 15;  // directory entries followed
constexpr int kMaxDepth = 64;              // directory nesting followed
constexpr size_t kLookupsPerDir = 4;       // Lookup() re-reads the directory: keep it linear
constexpr size_t kMaxResolvedPaths = 16;

// A violated reader contract is a bug even when nothing crashed: make the fuzzer report it.
void Check(bool condition) {
  if (!condition) __builtin_trap();
}

void CheckChunks(const Bootstrap& boot, const Inode& inode, const std::vector<ChunkRef>& chunks) {
  uint64_t next_offset = 0;
  for (const ChunkRef& c : chunks) {
    Check(c.file_offset >= next_offset);  // in file order, no overlap in starting points
    Check(c.file_offset < inode.size);    // every chunk starts inside the file
    next_offset = c.file_offset + 1;
    if (c.hole) {
      Check(c.uncompressed_size > 0 && c.uncompressed_size <= boot.chunk_size());
    } else {
      Check(c.blob_index < boot.blobs().size());  // readers index the blob table with it
    }
  }
}

struct Pending {
  uint64_t nid;
  int depth;
  std::string path;
};

void WalkTree(const Bootstrap& boot, WalkStats& stats, std::vector<std::string>& paths) {
  std::vector<Pending> stack = {{boot.root_nid(), 0, ""}};
  std::unordered_set<uint64_t> listed;  // directories whose entries were followed
  uint64_t visits = 0;
  uint64_t followed = 0;
  while (!stack.empty() && visits < kMaxVisits) {
    Pending item = std::move(stack.back());
    stack.pop_back();
    ++visits;
    absl::StatusOr<Inode> inode = boot.GetInode(item.nid);
    if (!inode.ok()) continue;
    Check(inode->nid == item.nid);
    ++stats.inodes;
    if (auto xattrs = boot.Xattrs(item.nid); xattrs.ok()) stats.xattrs += xattrs->size();
    // Every accessor runs on every inode: the wrong-type paths must fail cleanly too.
    if (auto target = boot.ReadLink(item.nid); target.ok()) {
      Check(inode->is_symlink());
      ++stats.symlinks;
    }
    if (auto chunks = boot.FileChunks(item.nid); chunks.ok()) {
      Check(inode->is_regular());
      CheckChunks(boot, *inode, *chunks);
      stats.chunks += chunks->size();
    }
    absl::StatusOr<std::vector<DirEntry>> entries = boot.ReadDir(item.nid);
    if (!entries.ok()) continue;
    Check(inode->is_dir());
    stats.dirents += entries->size();
    if (item.depth >= kMaxDepth || !listed.insert(item.nid).second) continue;
    size_t looked_up = 0;
    for (const DirEntry& e : *entries) {
      Check(!e.name.empty() && e.name.size() <= kMaxNameLength);
      Check(e.name.find('\0') == std::string::npos);
      if (looked_up < kLookupsPerDir) {
        ++looked_up;
        absl::StatusOr<DirEntry> found = boot.Lookup(item.nid, e.name);
        Check(found.ok() && found->name == e.name);  // a listed name is found again
      }
      if (e.name == "." || e.name == "..") continue;
      if (++followed > kMaxDirents) return;
      std::string path = item.path + "/" + e.name;
      if (paths.size() < kMaxResolvedPaths) paths.push_back(path);
      stack.push_back({e.nid, item.depth + 1, std::move(path)});
    }
  }
}

}  // namespace

WalkStats WalkBootstrap(std::string bytes) {
  WalkStats stats;
  absl::StatusOr<std::unique_ptr<Bootstrap>> opened = Bootstrap::FromBytes(std::move(bytes));
  if (!opened.ok()) return stats;
  const Bootstrap& boot = **opened;
  stats.opened = true;
  (void)boot.compressor();
  (void)boot.digester();
  std::vector<ChunkInfo> table = boot.ChunkTable();
  Check(table.size() == boot.ext().chunk_table_size / sizeof(ChunkInfo));
  stats.chunk_table = table.size();
  for (size_t i = 0; i < boot.prefetch_nids().size() && i < kMaxVisits; ++i) {
    (void)boot.GetInode(boot.prefetch_nids()[i]);
  }

  std::vector<std::string> paths;
  WalkTree(boot, stats, paths);

  absl::StatusOr<uint64_t> root = boot.Resolve("/");
  Check(root.ok() && *root == boot.root_nid());
  for (const char* odd : {"", "//", "/.", "/..", "/./.././", "/no/such/file"}) {
    if (boot.Resolve(odd).ok()) ++stats.resolved;
  }
  for (const std::string& path : paths) {
    if (boot.Resolve(path).ok()) ++stats.resolved;
    if (boot.Resolve(path + "/").ok()) ++stats.resolved;
  }

  absl::StatusOr<Tree> tree = Tree::FromBootstrap(boot, 1);
  if (tree.ok()) {
    stats.tree_loaded = true;
    uint64_t names = 0;
    tree->Walk([&](const std::string&, const TreeInode&) { ++names; });
    Check(names >= 1);
  }
  return stats;
}

}  // namespace naiad::rafs::fuzzing

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  naiad::rafs::fuzzing::WalkBootstrap(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
