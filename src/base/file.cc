#include "base/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad {

absl::StatusOr<UniqueFd> UniqueFd::Open(const std::string& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError(errno, StrCat("open ", path));
  return UniqueFd(fd);
}

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

absl::Status PreadFull(int fd, std::span<char> out, uint64_t offset) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "pread");
    }
    if (n == 0) {
      return absl::OutOfRangeError(StrCat("pread: end of file at offset ", offset + done,
                                          ", wanted ", out.size() - done, " more bytes"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status PwriteFull(int fd, std::string_view data, uint64_t offset) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "pwrite");
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status WriteFull(int fd, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "write");
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status WriteFull(int fd, std::span<const std::string_view> pieces) {
  std::vector<iovec> iov;
  iov.reserve(std::min<size_t>(pieces.size(), IOV_MAX));
  size_t next = 0;  // the first piece not yet in `iov`
  while (next < pieces.size() || !iov.empty()) {
    while (next < pieces.size() && iov.size() < IOV_MAX) {
      std::string_view p = pieces[next++];
      if (!p.empty()) iov.push_back({const_cast<char*>(p.data()), p.size()});
    }
    if (iov.empty()) break;
    ssize_t n = ::writev(fd, iov.data(), static_cast<int>(iov.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "write");
    }
    // Drop what was written: whole pieces, then the start of a partly written one.
    size_t done = static_cast<size_t>(n);
    size_t whole = 0;
    while (whole < iov.size() && iov[whole].iov_len <= done) done -= iov[whole++].iov_len;
    iov.erase(iov.begin(), iov.begin() + static_cast<ptrdiff_t>(whole));
    if (!iov.empty()) {
      iov.front().iov_base = static_cast<char*>(iov.front().iov_base) + done;
      iov.front().iov_len -= done;
    }
  }
  return absl::OkStatus();
}

MappedFile::~MappedFile() {
  if (addr_ != nullptr) ::munmap(addr_, size_);
}

MappedFile::MappedFile(MappedFile&& other) noexcept : addr_(other.addr_), size_(other.size_) {
  other.addr_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (addr_ != nullptr) ::munmap(addr_, size_);
    addr_ = std::exchange(other.addr_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

absl::StatusOr<MappedFile> MappedFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, StrCat("stat ", path));
  MappedFile file;
  file.size_ = static_cast<size_t>(st.st_size);
  if (file.size_ == 0) return file;
  void* addr = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (addr == MAP_FAILED) return ErrnoError(errno, StrCat("mmap ", path));
  file.addr_ = addr;
  return file;
}

TempDir::~TempDir() {
  if (!path_.empty()) RemoveAll(path_).IgnoreError();
}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    if (!path_.empty()) RemoveAll(path_).IgnoreError();
    path_ = std::exchange(other.path_, std::string());
  }
  return *this;
}

absl::StatusOr<TempDir> TempDir::Create(std::string_view prefix, std::string base) {
  if (base.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    base = (tmpdir != nullptr && *tmpdir != '\0') ? tmpdir : "/tmp";
  }
  std::string templ = StrCat(base, "/", prefix, "XXXXXX");
  if (::mkdtemp(templ.data()) == nullptr) {
    return ErrnoError(errno, StrCat("mkdtemp ", templ));
  }
  TempDir dir;
  dir.path_ = std::move(templ);
  return dir;
}

std::string TempDir::Join(std::string_view name) const { return StrCat(path_, "/", name); }

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_RDONLY));
  std::string out;
  char buf[64 * 1024];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, StrCat("read ", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::Status WriteFileAtomically(const std::string& path, std::string_view data, mode_t mode) {
  std::filesystem::path target(path);
  std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  std::string temp = StrCat(dir, "/.", target.filename().string(), ".tmp-XXXXXX");
  int raw = ::mkstemp(temp.data());
  if (raw < 0) return ErrnoError(errno, StrCat("create temp file for ", path));
  UniqueFd fd(raw);
  absl::Status status = WriteFull(fd.get(), data);
  if (status.ok() && ::fchmod(fd.get(), mode) != 0) status = ErrnoError(errno, "fchmod");
  if (status.ok() && ::fsync(fd.get()) != 0) status = ErrnoError(errno, "fsync");
  fd.Reset();
  if (status.ok() && ::rename(temp.c_str(), path.c_str()) != 0) {
    status = ErrnoError(errno, StrCat("rename to ", path));
  }
  if (!status.ok()) {
    ::unlink(temp.c_str());
    return Annotate(status, StrCat("writing ", path));
  }
  ASSIGN_OR_RETURN(UniqueFd dir_fd, UniqueFd::Open(dir, O_RDONLY | O_DIRECTORY));
  if (::fsync(dir_fd.get()) != 0) return ErrnoError(errno, StrCat("fsync ", dir));
  return absl::OkStatus();
}

absl::Status RemoveAll(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return ErrnoError(ec.value(), StrCat("remove ", path));
  return absl::OkStatus();
}

absl::Status CreateDirectories(const std::string& path, mode_t mode) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return ErrnoError(ec.value(), StrCat("mkdir -p ", path));
  return absl::OkStatus();
}

}  // namespace naiad
