#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

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

// Reads up to `size` bytes (less only at the end of the file).
absl::StatusOr<std::string> ReadWhole(int fd, size_t size, const std::string& path) {
  std::string content(size, '\0');
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::read(fd, content.data() + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, StrCat("read ", path));
    if (n == 0) break;  // shrank since its stat: the builder reports the short file
    got += static_cast<size_t>(n);
  }
  content.resize(got);
  return content;
}

// What the walker has ready before it wakes a waiting caller (or a file the caller reads
// itself): one wake-up per batch rather than per entry.
constexpr size_t kWakeEntries = 32;
constexpr size_t kWakeBytes = size_t{1} << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<DirectorySource>> DirectorySource::Create(const std::string& root) {
  struct stat st;
  if (::lstat(root.c_str(), &st) != 0) return ErrnoError(errno, StrCat("stat ", root));
  if (!S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(StrCat(root, " is not a directory"));
  std::unique_ptr<DirectorySource> source(new DirectorySource(root));
  source->pending_.push_back("");
  source->walker_ = std::thread([s = source.get()] { s->Walk(); });
  return source;
}

DirectorySource::~DirectorySource() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  room_cv_.notify_one();
  walker_.join();
  for (Item& item : queue_) {
    if (item.fd >= 0) ::close(item.fd);
  }
  CloseCurrent();
}

void DirectorySource::CloseCurrent() {
  if (current_.fd >= 0) ::close(current_.fd);
  current_ = Item();
  content_pos_ = 0;
}

absl::StatusOr<SourceEntry> DirectorySource::Stat(const std::string& relative,
                                                  const std::string& path) {
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

absl::StatusOr<DirectorySource::Item> DirectorySource::Prepare(const std::string& relative) {
  std::string path = relative.empty() ? root_ : root_ + "/" + relative;
  Item item;
  ASSIGN_OR_RETURN(SourceEntry entry, Stat(relative, path));
  if (S_ISDIR(entry.mode)) {
    ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(path));
    for (auto it = names.rbegin(); it != names.rend(); ++it) {
      pending_.push_back(relative.empty() ? *it : relative + "/" + *it);
    }
  } else if (S_ISREG(entry.mode) && entry.hardlink_to.empty()) {
    item.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (item.fd < 0) return ErrnoError(errno, StrCat("open ", path));
    item.may_have_holes = allocated_ < entry.size;
    if (entry.size <= kWholeFileBytes && !item.may_have_holes) {
      absl::StatusOr<std::string> content = ReadWhole(item.fd, entry.size, path);
      ::close(item.fd);
      item.fd = -1;
      if (!content.ok()) return content.status();
      item.content = *std::move(content);
    }
  }
  item.entry = std::move(entry);
  return item;
}

void DirectorySource::Walk() {
  while (!pending_.empty()) {
    std::string relative = std::move(pending_.back());
    pending_.pop_back();
    absl::StatusOr<Item> item = Prepare(relative);
    if (!item.ok()) {
      Item failed;
      failed.entry = item.status();
      Push(std::move(failed));
      break;
    }
    if (!Push(*std::move(item))) return;
  }
  {
    std::lock_guard lock(mu_);
    walk_done_ = true;
  }
  ready_cv_.notify_one();
}

bool DirectorySource::Push(Item item) {
  std::unique_lock lock(mu_);
  auto has_room = [&] {
    return stopping_ || (queued_bytes_ < kReadAheadBytes && queue_.size() < kReadAheadEntries);
  };
  if (!has_room()) {
    walker_waiting_ = true;
    if (caller_waiting_) ready_cv_.notify_one();  // what is queued is all there is for now
    room_cv_.wait(lock, has_room);
    walker_waiting_ = false;
  }
  if (stopping_) {
    if (item.fd >= 0) ::close(item.fd);
    return false;
  }
  queued_bytes_ += item.content.size();
  files_to_read_ += item.fd >= 0;
  queue_.push_back(std::move(item));
  bool wake = caller_waiting_ && WorthWaking();
  lock.unlock();
  if (wake) ready_cv_.notify_one();
  return true;
}

bool DirectorySource::WorthWaking() const {
  return walk_done_ || queue_.size() >= kWakeEntries || queued_bytes_ >= kWakeBytes ||
         files_to_read_ > 0 || (walker_waiting_ && !queue_.empty());
}

absl::StatusOr<std::optional<SourceEntry>> DirectorySource::Next() {
  CloseCurrent();
  bool wake;
  {
    std::unique_lock lock(mu_);
    caller_waiting_ = true;
    ready_cv_.wait(lock, [&] { return WorthWaking(); });
    caller_waiting_ = false;
    if (queue_.empty()) return std::nullopt;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= current_.content.size();
    files_to_read_ -= current_.fd >= 0;
    wake = walker_waiting_ && queued_bytes_ <= kReadAheadBytes / 2 &&
           queue_.size() <= kReadAheadEntries / 2;
  }
  if (wake) room_cv_.notify_one();
  if (!current_.entry.ok()) return current_.entry.status();
  return *current_.entry;
}

absl::StatusOr<bool> DirectorySource::SkipHole(uint64_t size) {
  int fd = current_.fd;
  if (fd < 0 || !current_.may_have_holes || size == 0) return false;
  off_t pos = ::lseek(fd, 0, SEEK_CUR);
  if (pos < 0) return ErrnoError(errno, "lseek");
  off_t data = ::lseek(fd, pos, SEEK_DATA);  // moves the file position: restored below
  if (data < 0 && errno != ENXIO) {
    current_.may_have_holes = false;  // no SEEK_DATA here (EINVAL): read everything
    return false;
  }
  // ENXIO: no data from `pos` to the end of the file.
  bool hole = data < 0 || static_cast<uint64_t>(data - pos) >= size;
  off_t next = hole ? pos + static_cast<off_t>(size) : pos;
  if (::lseek(fd, next, SEEK_SET) < 0) return ErrnoError(errno, "lseek");
  return hole;
}

absl::StatusOr<size_t> DirectorySource::Read(char* buf, size_t size) {
  if (current_.fd < 0) {
    size_t n = std::min(size, current_.content.size() - content_pos_);
    std::memcpy(buf, current_.content.data() + content_pos_, n);
    content_pos_ += n;
    return n;
  }
  while (true) {
    ssize_t n = ::read(current_.fd, buf, size);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return ErrnoError(errno, "read");
  }
}

}  // namespace naiad::rafs
