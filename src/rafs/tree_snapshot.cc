#include "rafs/tree_snapshot.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <functional>

#include "base/digest.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "rafs/entry_source.h"

namespace naiad::rafs::testing {
namespace {

std::string Describe(const FileSnapshot& f) {
  std::string xattrs;
  for (const auto& [k, v] : f.xattrs) StrAppend(&xattrs, k, "=", v.size(), "B ");
  return StrCat("mode=", absl::Hex(f.mode), " uid=", f.uid, " gid=", f.gid, " size=", f.size,
                " sha=", f.sha256.substr(0, 12), " link=", f.symlink, " rdev=", f.rdev, " xattrs=[",
                xattrs, "] group=", f.link_group);
}

}  // namespace

absl::StatusOr<TreeSnapshot> SnapshotDirectory(const std::string& root,
                                               const SnapshotOptions& options) {
  ASSIGN_OR_RETURN(auto source, DirectorySource::Create(root));
  TreeSnapshot snapshot;
  std::map<std::string, std::string> group_of;  // path -> first path with the same inode
  while (true) {
    ASSIGN_OR_RETURN(std::optional<SourceEntry> entry, source->Next());
    if (!entry) break;
    if (entry->path.empty() && !options.compare_root) continue;
    if (!entry->hardlink_to.empty()) {
      FileSnapshot copy = snapshot[entry->hardlink_to];
      copy.link_group = entry->hardlink_to;
      snapshot[entry->hardlink_to].link_group = entry->hardlink_to;
      snapshot[entry->path] = copy;
      continue;
    }
    FileSnapshot f{entry->mode, entry->uid, entry->gid};
    if (options.include_xattrs) f.xattrs = entry->xattrs;
    f.symlink = entry->symlink;
    if (S_ISCHR(entry->mode) || S_ISBLK(entry->mode))
      f.rdev = EncodeDev(entry->rdev_major, entry->rdev_minor);
    if (S_ISREG(entry->mode)) {
      f.size = entry->size;
      Sha256 hasher;
      char buf[65536];
      while (true) {
        ASSIGN_OR_RETURN(size_t n, source->Read(buf, sizeof(buf)));
        if (n == 0) break;
        hasher.Update(std::string_view(buf, n));
      }
      f.sha256 = hasher.Finish().Hex();
    }
    snapshot[entry->path] = f;
  }
  return snapshot;
}

absl::StatusOr<TreeSnapshot> SnapshotImage(const Bootstrap& boot, const LocalChunkReader& reader,
                                           const SnapshotOptions& options) {
  TreeSnapshot snapshot;
  std::map<uint64_t, std::string> first_path;
  std::function<absl::Status(uint64_t, const std::string&)> walk =
      [&](uint64_t nid, const std::string& path) -> absl::Status {
    ASSIGN_OR_RETURN(Inode inode, boot.GetInode(nid));
    FileSnapshot f{inode.mode, inode.uid, inode.gid};
    if (options.include_xattrs) {
      ASSIGN_OR_RETURN(f.xattrs, boot.Xattrs(nid));
      std::sort(f.xattrs.begin(), f.xattrs.end());
    }
    if (inode.is_symlink()) {
      ASSIGN_OR_RETURN(f.symlink, boot.ReadLink(nid));
    }
    f.rdev = inode.rdev;
    if (inode.is_regular()) {
      f.size = inode.size;
      Sha256 hasher;
      RETURN_IF_ERROR(reader.ReadFile(nid, [&](std::string_view data) {
        hasher.Update(data);
        return absl::OkStatus();
      }));
      f.sha256 = hasher.Finish().Hex();
      if (inode.nlink > 1) {
        auto [it, inserted] = first_path.emplace(nid, path);
        f.link_group = it->second;
      }
    }
    if (!path.empty() || options.compare_root) snapshot[path] = f;
    if (!inode.is_dir()) return absl::OkStatus();
    ASSIGN_OR_RETURN(std::vector<DirEntry> entries, boot.ReadDir(nid));
    for (const DirEntry& e : entries) {
      if (e.name == "." || e.name == "..") continue;
      RETURN_IF_ERROR(walk(e.nid, path.empty() ? e.name : path + "/" + e.name));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(walk(boot.root_nid(), ""));
  return snapshot;
}

std::string DiffSnapshots(const TreeSnapshot& want, const TreeSnapshot& got) {
  std::string diff;
  for (const auto& [path, f] : want) {
    auto it = got.find(path);
    if (it == got.end()) {
      StrAppend(&diff, "missing: ", path, "\n");
    } else if (!(it->second == f)) {
      StrAppend(&diff, "differs: ", path, "\n  want ", Describe(f), "\n  got  ",
                Describe(it->second), "\n");
    }
  }
  for (const auto& [path, f] : got) {
    if (!want.contains(path)) StrAppend(&diff, "extra: ", path, "\n");
  }
  return diff;
}

}  // namespace naiad::rafs::testing
