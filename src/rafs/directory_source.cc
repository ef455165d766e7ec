#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>

#include "base/status_macros.h"
#include "base/strings.h"
#include "rafs/entry_source.h"

namespace naiad::rafs {
namespace {

absl::StatusOr<std::vector<std::string>> ListNames(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoError(errno, StrCat("opendir ", dir));
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// The names of `path`'s xattrs ("" for none): one call into a small buffer, which nearly every
// file fits (most have none), and a size query only when it does not.
absl::StatusOr<std::string> ListXattrNames(const std::string& path) {
  std::string names(256, '\0');
  while (true) {
    ssize_t size = ::llistxattr(path.c_str(), names.data(), names.size());
    if (size >= 0) {
      names.resize(static_cast<size_t>(size));
      return names;
    }
    if (errno == ENOTSUP) return std::string();
    if (errno != ERANGE) return ErrnoError(errno, StrCat("llistxattr ", path));
    size = ::llistxattr(path.c_str(), nullptr, 0);  // the list grew, or never fitted
    if (size < 0) return ErrnoError(errno, StrCat("llistxattr ", path));
    names.resize(static_cast<size_t>(size) + 1);
  }
}

absl::StatusOr<Xattrs> ReadXattrs(const std::string& path) {
  Xattrs xattrs;
  ASSIGN_OR_RETURN(std::string names, ListXattrNames(path));
  for (size_t pos = 0; pos < names.size();) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    ssize_t vsize = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (vsize < 0) return ErrnoError(errno, StrCat("lgetxattr ", path, " ", name));
    std::string value(static_cast<size_t>(vsize), '\0');
    vsize = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (vsize < 0) return ErrnoError(errno, StrCat("lgetxattr ", path, " ", name));
    value.resize(static_cast<size_t>(vsize));
    xattrs.emplace_back(std::move(name), std::move(value));
  }
  std::sort(xattrs.begin(), xattrs.end());
  return xattrs;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DirectorySource>> DirectorySource::Create(const std::string& root) {
  struct stat st;
  if (::lstat(root.c_str(), &st) != 0) return ErrnoError(errno, StrCat("stat ", root));
  if (!S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(StrCat(root, " is not a directory"));
  std::unique_ptr<DirectorySource> source(new DirectorySource(root));
  source->pending_.push_back("");
  return source;
}

DirectorySource::~DirectorySource() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<SourceEntry> DirectorySource::Stat(const std::string& relative) {
  std::string path = relative.empty() ? root_ : root_ + "/" + relative;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return ErrnoError(errno, StrCat("lstat ", path));
  SourceEntry e;
  e.path = relative;
  e.mode = st.st_mode;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  e.mtime = static_cast<uint64_t>(st.st_mtim.tv_sec);
  e.mtime_nsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  e.rdev_major = major(st.st_rdev);
  e.rdev_minor = minor(st.st_rdev);
  ASSIGN_OR_RETURN(e.xattrs, ReadXattrs(path));
  if (S_ISREG(st.st_mode)) {
    e.size = static_cast<uint64_t>(st.st_size);
    allocated_ = static_cast<uint64_t>(st.st_blocks) * 512;
    if (st.st_nlink > 1) {
      uint64_t key = (uint64_t{st.st_dev} << 40) ^ st.st_ino;
      auto [it, inserted] = seen_inodes_.emplace(key, relative);
      if (!inserted) e.hardlink_to = it->second;
    }
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
    if (n < 0) return ErrnoError(errno, StrCat("readlink ", path));
    target.resize(static_cast<size_t>(n));
    e.symlink = std::move(target);
  }
  return e;
}

absl::StatusOr<std::optional<SourceEntry>> DirectorySource::Next() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (pending_.empty()) return std::nullopt;
  std::string relative = std::move(pending_.back());
  pending_.pop_back();
  ASSIGN_OR_RETURN(SourceEntry entry, Stat(relative));
  std::string path = relative.empty() ? root_ : root_ + "/" + relative;
  if (S_ISDIR(entry.mode)) {
    ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(path));
    for (auto it = names.rbegin(); it != names.rend(); ++it) {
      pending_.push_back(relative.empty() ? *it : relative + "/" + *it);
    }
  } else if (S_ISREG(entry.mode) && entry.hardlink_to.empty()) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return ErrnoError(errno, StrCat("open ", path));
    may_have_holes_ = allocated_ < entry.size;
  }
  return entry;
}

absl::StatusOr<bool> DirectorySource::SkipHole(uint64_t size) {
  if (fd_ < 0 || !may_have_holes_ || size == 0) return false;
  off_t pos = ::lseek(fd_, 0, SEEK_CUR);
  if (pos < 0) return ErrnoError(errno, "lseek");
  off_t data = ::lseek(fd_, pos, SEEK_DATA);  // moves the file position: restored below
  if (data < 0 && errno != ENXIO) {
    may_have_holes_ = false;  // no SEEK_DATA here (EINVAL): read everything
    return false;
  }
  // ENXIO: no data from `pos` to the end of the file.
  bool hole = data < 0 || static_cast<uint64_t>(data - pos) >= size;
  off_t next = hole ? pos + static_cast<off_t>(size) : pos;
  if (::lseek(fd_, next, SEEK_SET) < 0) return ErrnoError(errno, "lseek");
  return hole;
}

absl::StatusOr<size_t> DirectorySource::Read(char* buf, size_t size) {
  if (fd_ < 0) return 0;
  while (true) {
    ssize_t n = ::read(fd_, buf, size);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return ErrnoError(errno, "read");
  }
}

}  // namespace naiad::rafs
