#include "rafs/tree.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::rafs {

// A layer holds one per file: keep them small (see the header).
static_assert(sizeof(ChunkList) == 16);
static_assert(sizeof(TreeInode) <= 88);

namespace {

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view part = path.substr(0, slash);
    if (!part.empty()) parts.push_back(part);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

// A copy of `inode` without its children.
std::shared_ptr<TreeInode> CopyAttributes(const TreeInode& inode) {
  auto copy = std::make_shared<TreeInode>();
  copy->mode = inode.mode;
  copy->uid = inode.uid;
  copy->gid = inode.gid;
  copy->rdev = inode.rdev;
  copy->size = inode.size;
  copy->mtime = inode.mtime;
  copy->mtime_nsec = inode.mtime_nsec;
  copy->chunks = inode.chunks;
  if (!inode.symlink().empty()) copy->set_symlink(std::string(inode.symlink()));
  if (!inode.xattrs().empty()) copy->mutable_xattrs() = inode.xattrs();
  return copy;
}

void DropOpaqueMarker(TreeInode& inode) {
  if (inode.xattrs().empty()) return;
  std::erase_if(inode.mutable_xattrs(), [](const auto& x) { return x.first == kOpaqueXattr; });
}

// Merges `upper` (a directory of a layer) into `lower` (the accumulated view).
void MergeDir(TreeInode& lower, const TreeInode& upper) {
  for (const auto& [name, inode] : upper.children) {
    if (inode->is_whiteout()) {
      lower.children.erase(name);
      continue;
    }
    auto it = lower.children.find(name);
    bool merge = inode->is_dir() && !inode->is_opaque() && it != lower.children.end() &&
                 it->second->is_dir();
    if (merge) {
      std::shared_ptr<TreeInode> merged = CopyAttributes(*inode);  // upper's attributes
      merged->children = it->second->children;
      MergeDir(*merged, *inode);
      it->second = std::move(merged);
      continue;
    }
    std::shared_ptr<TreeInode> replacement = inode;
    if (inode->is_dir()) {
      // An opaque or new directory: its own content only, with markers resolved.
      replacement = CopyAttributes(*inode);
      DropOpaqueMarker(*replacement);
      MergeDir(*replacement, *inode);
    }
    if (it != lower.children.end()) {
      it->second = std::move(replacement);
    } else {
      lower.children.emplace(name, std::move(replacement));  // the name lives in upper's arena
    }
  }
}

}  // namespace

ChunkList::ChunkList(size_t count) : size_(static_cast<uint32_t>(count)) {
  if (count > 1) {
    heap_ = std::make_unique_for_overwrite<uint32_t[]>(count);
    std::fill_n(heap_.get(), count, kHoleChunk);
  }
}

ChunkList::ChunkList(const ChunkList& other) : size_(other.size_), inline_(other.inline_) {
  if (size_ > 1) {
    heap_ = std::make_unique_for_overwrite<uint32_t[]>(size_);
    std::copy_n(other.heap_.get(), size_, heap_.get());
  }
}

ChunkList& ChunkList::operator=(const ChunkList& other) {
  if (this != &other) *this = ChunkList(other);
  return *this;
}

ChunkList::ChunkList(ChunkList&& other) noexcept
    : size_(std::exchange(other.size_, 0)),
      inline_(std::exchange(other.inline_, kHoleChunk)),
      heap_(std::move(other.heap_)) {}

ChunkList& ChunkList::operator=(ChunkList&& other) noexcept {
  size_ = std::exchange(other.size_, 0);
  inline_ = std::exchange(other.inline_, kHoleChunk);
  heap_ = std::move(other.heap_);
  return *this;
}

TreeInode::TreeInode(const TreeInode& other)
    : mode(other.mode),
      uid(other.uid),
      gid(other.gid),
      rdev(other.rdev),
      size(other.size),
      mtime(other.mtime),
      mtime_nsec(other.mtime_nsec),
      chunks(other.chunks),
      children(other.children),
      extra_(other.extra_ ? std::make_unique<Extra>(*other.extra_) : nullptr) {}

TreeInode& TreeInode::operator=(const TreeInode& other) {
  if (this != &other) *this = TreeInode(other);
  return *this;
}

void TreeInode::set_symlink(std::string target) {
  if (target.empty() && extra_ == nullptr) return;
  if (extra_ == nullptr) extra_ = std::make_unique<Extra>();
  extra_->symlink = std::move(target);
}

const Xattrs& TreeInode::xattrs() const {
  static const Xattrs* const kNone = new Xattrs();
  return extra_ ? extra_->xattrs : *kNone;
}

Xattrs& TreeInode::mutable_xattrs() {
  if (extra_ == nullptr) extra_ = std::make_unique<Extra>();
  return extra_->xattrs;
}

bool TreeInode::is_opaque() const {
  return is_dir() && std::any_of(xattrs().begin(), xattrs().end(), [](const auto& x) {
           return x.first == kOpaqueXattr && x.second == "y";
         });
}

uint32_t EncodeDev(uint32_t major, uint32_t minor) {
  return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xffu) << 12);
}

std::string_view NameArena::Add(std::string_view name) {
  if (name.empty()) return {};
  char* at;
  if (name.size() > kBlockSize / 16) {
    blocks_.push_back(std::make_unique_for_overwrite<char[]>(name.size()));  // a block of its own
    at = blocks_.back().get();
  } else {
    if (name.size() > kBlockSize - used_) {
      blocks_.push_back(std::make_unique_for_overwrite<char[]>(kBlockSize));
      current_ = blocks_.back().get();
      used_ = 0;
    }
    at = current_ + used_;
    used_ += name.size();
  }
  std::memcpy(at, name.data(), name.size());
  return {at, name.size()};
}

Tree::Tree() : root_(std::make_shared<TreeInode>()), arenas_({std::make_shared<NameArena>()}) {}

absl::StatusOr<TreeInode*> Tree::ParentOf(std::string_view path, std::string_view* name) {
  std::vector<std::string_view> parts = SplitPath(path);
  if (parts.empty()) return absl::InvalidArgumentError("the root has no parent");
  TreeInode* dir = root_.get();
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    auto it = dir->children.find(parts[i]);
    if (it == dir->children.end()) {
      it = dir->children.emplace(InternName(parts[i]), std::make_shared<TreeInode>()).first;
    }
    if (!it->second->is_dir()) {
      return absl::InvalidArgumentError(
          StrCat("\"", path, "\": \"", parts[i], "\" on its path is not a directory"));
    }
    dir = it->second.get();
  }
  *name = parts.back();
  return dir;
}

absl::Status Tree::Insert(std::string_view path, std::shared_ptr<TreeInode> inode) {
  if (SplitPath(path).empty()) {
    if (!inode->is_dir()) return absl::InvalidArgumentError("the layer root must be a directory");
    inode->children = std::move(root_->children);
    root_ = std::move(inode);
    return absl::OkStatus();
  }
  std::string_view name;
  ASSIGN_OR_RETURN(TreeInode * parent, ParentOf(path, &name));
  auto it = parent->children.find(name);
  if (it == parent->children.end()) {
    parent->children.emplace(InternName(name), std::move(inode));
    return absl::OkStatus();
  }
  if (it->second->is_dir() && inode->is_dir()) {
    inode->children = std::move(it->second->children);  // a directory entry after its content
  }
  it->second = std::move(inode);
  return absl::OkStatus();
}

absl::Status Tree::Link(std::string_view path, std::string_view target) {
  auto found = Find(target);
  if (!found.ok()) {
    return absl::InvalidArgumentError(
        StrCat("hardlink \"", path, "\" -> \"", target, "\": target not found"));
  }
  if ((*found)->is_dir()) {
    return absl::InvalidArgumentError(
        StrCat("hardlink \"", path, "\" -> \"", target, "\": target is a directory"));
  }
  std::string_view name;
  ASSIGN_OR_RETURN(TreeInode * parent, ParentOf(path, &name));
  auto it = parent->children.find(name);
  if (it == parent->children.end()) {
    parent->children.emplace(InternName(name), *std::move(found));
  } else {
    it->second = *std::move(found);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<TreeInode>> Tree::Find(std::string_view path) const {
  std::shared_ptr<TreeInode> node = root_;
  for (std::string_view part : SplitPath(path)) {
    auto it = node->children.find(part);
    if (it == node->children.end()) return absl::NotFoundError(StrCat("\"", path, "\" not found"));
    node = it->second;
  }
  return node;
}

absl::StatusOr<uint32_t> Tree::AddChunk(const ChunkRef& chunk) {
  if (chunks_.size() >= kHoleChunk) {
    return absl::ResourceExhaustedError(StrCat("more than ", kHoleChunk - 1, " distinct chunks"));
  }
  chunks_.push_back(chunk);
  return static_cast<uint32_t>(chunks_.size() - 1);
}

absl::Status Tree::ApplyLayer(Tree upper) {
  if (upper.chunks_.size() >= kHoleChunk - chunks_.size()) {
    return absl::ResourceExhaustedError(StrCat("more than ", kHoleChunk - 1, " distinct chunks"));
  }
  // Upper's chunk slots move to the end of this tree's table.
  auto base = static_cast<uint32_t>(chunks_.size());
  if (base > 0 && !upper.chunks_.empty()) {
    upper.ForEachInode([&](TreeInode& inode) {
      for (uint32_t& slot : inode.chunks) {
        if (slot != kHoleChunk) slot += base;
      }
    });
  }
  chunks_.insert(chunks_.end(), std::make_move_iterator(upper.chunks_.begin()),
                 std::make_move_iterator(upper.chunks_.end()));
  upper.chunks_.clear();
  arenas_.insert(arenas_.end(), upper.arenas_.begin(), upper.arenas_.end());

  if (upper.root().is_opaque()) root_->children.clear();
  std::shared_ptr<TreeInode> merged = CopyAttributes(upper.root());
  merged->children = root_->children;
  DropOpaqueMarker(*merged);
  MergeDir(*merged, upper.root());
  root_ = std::move(merged);
  return absl::OkStatus();
}

void Tree::Walk(const std::function<void(const std::string&, const TreeInode&)>& visit) const {
  std::function<void(const std::string&, const TreeInode&)> recurse = [&](const std::string& path,
                                                                          const TreeInode& inode) {
    visit(path, inode);
    for (const auto& [name, child] : inode.children) {
      recurse(path.empty() ? std::string(name) : StrCat(path, "/", name), *child);
    }
  };
  recurse("", *root_);
}

void Tree::ForEachInode(const std::function<void(TreeInode&)>& fn) {
  absl::flat_hash_set<const TreeInode*> seen;
  std::function<void(TreeInode&)> recurse = [&](TreeInode& inode) {
    if (!seen.insert(&inode).second) return;
    fn(inode);
    for (auto& [name, child] : inode.children) recurse(*child);
  };
  recurse(*root_);
}

namespace {

// Loads a bootstrap's tree into a Tree, chunk references deduplicated into its chunk table.
class BootstrapLoader {
 public:
  BootstrapLoader(const Bootstrap& boot, uint32_t blob_index_base, Tree& tree)
      : boot_(boot), blob_index_base_(blob_index_base), tree_(tree) {}

  absl::StatusOr<std::shared_ptr<TreeInode>> Load(uint64_t nid, int depth,
                                                  std::string_view parent_path,
                                                  std::string_view name);

 private:
  absl::Status LoadChunks(uint64_t nid, TreeInode& node);
  absl::Status LoadChildren(uint64_t nid, int depth, const std::string& path, TreeInode& node);

  const Bootstrap& boot_;
  uint32_t blob_index_base_;
  Tree& tree_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<TreeInode>> by_nid_;
  absl::flat_hash_map<uint64_t, uint32_t> slot_by_chunk_;  // (blob << 32 | ci) -> slot
  DirectoryClaims claims_;
};

absl::Status BootstrapLoader::LoadChunks(uint64_t nid, TreeInode& node) {
  ASSIGN_OR_RETURN(std::vector<ChunkRef> chunks, boot_.FileChunks(nid));
  if (chunks.size() >= kHoleChunk) {
    return absl::DataLossError(StrCat("inode ", nid, " has ", chunks.size(), " chunks"));
  }
  node.chunks = ChunkList(chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    ChunkRef& c = chunks[i];
    if (c.hole) continue;  // the slot is kHoleChunk already
    c.blob_index += blob_index_base_;
    uint64_t key = (uint64_t{c.blob_index} << 32) | c.ci_index;
    auto it = slot_by_chunk_.find(key);
    if (it == slot_by_chunk_.end()) {
      ASSIGN_OR_RETURN(uint32_t slot, tree_.AddChunk(c));
      it = slot_by_chunk_.emplace(key, slot).first;
    }
    node.chunks[i] = it->second;
  }
  return absl::OkStatus();
}

absl::Status BootstrapLoader::LoadChildren(uint64_t nid, int depth, const std::string& path,
                                           TreeInode& node) {
  RETURN_IF_ERROR(claims_.Claim(boot_, nid, path.empty() ? "/" : path));
  ASSIGN_OR_RETURN(std::vector<DirEntry> entries, boot_.ReadDir(nid));
  for (const DirEntry& e : entries) {
    if (e.name == "." || e.name == "..") continue;
    if (e.name.find('/') != std::string::npos) return absl::DataLossError("a name contains '/'");
    ASSIGN_OR_RETURN(std::shared_ptr<TreeInode> child, Load(e.nid, depth + 1, path, e.name));
    auto it = node.children.find(e.name);
    if (it == node.children.end()) {
      node.children.emplace(tree_.InternName(e.name), std::move(child));
    } else {
      it->second = std::move(child);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<TreeInode>> BootstrapLoader::Load(uint64_t nid, int depth,
                                                                 std::string_view parent_path,
                                                                 std::string_view name) {
  if (depth > 1024) return absl::DataLossError("directory nesting deeper than 1024 (a cycle?)");
  if (auto it = by_nid_.find(nid); it != by_nid_.end()) {
    if (it->second->is_dir()) {
      return absl::DataLossError(StrCat("directory inode ", nid, " is reachable twice (a cycle?)"));
    }
    return it->second;
  }
  ASSIGN_OR_RETURN(Inode inode, boot_.GetInode(nid));
  auto node = std::make_shared<TreeInode>();
  node->mode = inode.mode;
  node->uid = inode.uid;
  node->gid = inode.gid;
  node->rdev = inode.rdev;
  node->mtime = inode.mtime;
  node->mtime_nsec = inode.mtime_nsec;
  node->size = inode.is_regular() ? inode.size : 0;
  ASSIGN_OR_RETURN(Xattrs xattrs, boot_.Xattrs(nid));
  if (!xattrs.empty()) {
    std::sort(xattrs.begin(), xattrs.end());
    node->mutable_xattrs() = std::move(xattrs);
  }
  if (inode.is_symlink()) {
    ASSIGN_OR_RETURN(std::string target, boot_.ReadLink(nid));
    node->set_symlink(std::move(target));
  }
  if (inode.is_regular()) RETURN_IF_ERROR(LoadChunks(nid, *node));
  by_nid_[nid] = node;
  if (inode.is_dir()) {
    std::string path = depth == 0 ? "" : StrCat(parent_path, "/", name);
    RETURN_IF_ERROR(LoadChildren(nid, depth, path, *node));
  }
  return node;
}

}  // namespace

absl::StatusOr<Tree> Tree::FromBootstrap(const Bootstrap& boot, uint32_t blob_index_base) {
  Tree tree;
  BootstrapLoader loader(boot, blob_index_base, tree);
  ASSIGN_OR_RETURN(tree.root_, loader.Load(boot.root_nid(), 0, "", ""));
  return tree;
}

}  // namespace naiad::rafs
