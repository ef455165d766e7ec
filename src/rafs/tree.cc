#include "rafs/tree.h"

#include <algorithm>
#include <unordered_set>

#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::rafs {
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
      auto merged = std::make_shared<TreeInode>(*inode);  // upper's attributes
      merged->children = it->second->children;
      MergeDir(*merged, *inode);
      it->second = std::move(merged);
    } else {
      lower.children[name] = inode;
      if (inode->is_dir()) {
        // An opaque or new directory: its own content only, with markers resolved.
        auto copy = std::make_shared<TreeInode>(*inode);
        copy->children.clear();
        std::erase_if(copy->xattrs, [](const auto& x) { return x.first == kOpaqueXattr; });
        MergeDir(*copy, *inode);
        lower.children[name] = std::move(copy);
      }
    }
  }
}

}  // namespace

bool TreeInode::is_opaque() const {
  return is_dir() && std::any_of(xattrs.begin(), xattrs.end(), [](const auto& x) {
           return x.first == kOpaqueXattr && x.second == "y";
         });
}

uint32_t EncodeDev(uint32_t major, uint32_t minor) {
  return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xffu) << 12);
}

Tree::Tree() : root_(std::make_shared<TreeInode>()) {}

absl::StatusOr<TreeInode*> Tree::ParentOf(std::string_view path, std::string_view* name) {
  std::vector<std::string_view> parts = SplitPath(path);
  if (parts.empty()) return absl::InvalidArgumentError("the root has no parent");
  TreeInode* dir = root_.get();
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    auto it = dir->children.find(parts[i]);
    if (it == dir->children.end()) {
      it = dir->children.emplace(std::string(parts[i]), std::make_shared<TreeInode>()).first;
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
  if (it != parent->children.end() && it->second->is_dir() && inode->is_dir()) {
    inode->children = std::move(it->second->children);  // a directory entry after its content
  }
  parent->children[std::string(name)] = std::move(inode);
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
  parent->children[std::string(name)] = *found;
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

void Tree::ApplyLayer(const Tree& upper) {
  if (upper.root().is_opaque()) root_->children.clear();
  auto merged = std::make_shared<TreeInode>(upper.root());
  merged->children = root_->children;
  std::erase_if(merged->xattrs, [](const auto& x) { return x.first == kOpaqueXattr; });
  MergeDir(*merged, upper.root());
  root_ = std::move(merged);
}

void Tree::Walk(const std::function<void(const std::string&, const TreeInode&)>& visit) const {
  std::function<void(const std::string&, const TreeInode&)> recurse = [&](const std::string& path,
                                                                          const TreeInode& inode) {
    visit(path, inode);
    for (const auto& [name, child] : inode.children) {
      recurse(path.empty() ? name : path + "/" + name, *child);
    }
  };
  recurse("", *root_);
}

void Tree::ForEachInode(const std::function<void(TreeInode&)>& fn) {
  std::unordered_set<const TreeInode*> seen;
  std::function<void(TreeInode&)> recurse = [&](TreeInode& inode) {
    if (!seen.insert(&inode).second) return;
    fn(inode);
    for (auto& [name, child] : inode.children) recurse(*child);
  };
  recurse(*root_);
}

absl::StatusOr<Tree> Tree::FromBootstrap(const Bootstrap& boot, uint32_t blob_index_base) {
  Tree tree;
  std::map<uint64_t, std::shared_ptr<TreeInode>> by_nid;
  std::function<absl::StatusOr<std::shared_ptr<TreeInode>>(uint64_t, int)> load =
      [&](uint64_t nid, int depth) -> absl::StatusOr<std::shared_ptr<TreeInode>> {
    if (depth > 1024) return absl::DataLossError("directory nesting deeper than 1024 (a cycle?)");
    if (auto it = by_nid.find(nid); it != by_nid.end()) {
      if (it->second->is_dir()) {
        return absl::DataLossError(
            StrCat("directory inode ", nid, " is reachable twice (a cycle?)"));
      }
      return it->second;
    }
    ASSIGN_OR_RETURN(Inode inode, boot.GetInode(nid));
    auto node = std::make_shared<TreeInode>();
    node->mode = inode.mode;
    node->uid = inode.uid;
    node->gid = inode.gid;
    node->rdev = inode.rdev;
    node->mtime = inode.mtime;
    node->mtime_nsec = inode.mtime_nsec;
    node->size = inode.is_regular() ? inode.size : 0;
    ASSIGN_OR_RETURN(node->xattrs, boot.Xattrs(nid));
    std::sort(node->xattrs.begin(), node->xattrs.end());
    if (inode.is_symlink()) {
      ASSIGN_OR_RETURN(node->symlink, boot.ReadLink(nid));
    }
    if (inode.is_regular()) {
      ASSIGN_OR_RETURN(node->chunks, boot.FileChunks(nid));
      for (ChunkRef& c : node->chunks) c.blob_index += blob_index_base;
    }
    by_nid[nid] = node;
    if (inode.is_dir()) {
      ASSIGN_OR_RETURN(std::vector<DirEntry> entries, boot.ReadDir(nid));
      for (const DirEntry& e : entries) {
        if (e.name == "." || e.name == "..") continue;
        if (e.name.find('/') != std::string::npos)
          return absl::DataLossError("a name contains '/'");
        ASSIGN_OR_RETURN(node->children[e.name], load(e.nid, depth + 1));
      }
    }
    return node;
  };
  ASSIGN_OR_RETURN(tree.root_, load(boot.root_nid(), 0));
  return tree;
}

}  // namespace naiad::rafs
