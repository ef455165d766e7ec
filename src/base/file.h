// File: base/file.h
//
// RAII owners for file descriptors, memory mappings and temporary directories, and whole-file
// helpers. WriteFileAtomically() is how every file that other code trusts is written: the data
// goes to a temporary file in the same directory, is fsynced, and is renamed over the target,
// so a crash leaves either the old file or the new one, never a partial one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace naiad {

// Owns a file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  // open(2) with O_CLOEXEC added; the error names the path.
  static absl::StatusOr<UniqueFd> Open(const std::string& path, int flags, mode_t mode = 0644);

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Reads exactly out.size() bytes at `offset` (retrying short reads and EINTR). Reading past the
// end of the file is an OutOfRange error.
absl::Status PreadFull(int fd, std::span<char> out, uint64_t offset);
// Writes all of `data` at `offset`, retrying short writes and EINTR.
absl::Status PwriteFull(int fd, std::string_view data, uint64_t offset);
// Writes all of `data` at the current position.
absl::Status WriteFull(int fd, std::string_view data);
// Writes every piece of `pieces`, in order, at the current position: one writev per up to
// IOV_MAX pieces, retrying short writes and EINTR.
absl::Status WriteFull(int fd, std::span<const std::string_view> pieces);

// A read-only memory mapping of a whole file. Move-only.
class MappedFile {
 public:
  MappedFile() = default;
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  static absl::StatusOr<MappedFile> Open(const std::string& path);

  std::string_view data() const { return {static_cast<const char*>(addr_), size_}; }
  size_t size() const { return size_; }

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
};

// A directory created under $TMPDIR (or /tmp) and removed, with everything in it, on destruction.
// Move-only.
class TempDir {
 public:
  TempDir() = default;
  ~TempDir();
  TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Creates "<base>/<prefix>XXXXXX"; `base` defaults to $TMPDIR or /tmp.
  static absl::StatusOr<TempDir> Create(std::string_view prefix = "naiad-", std::string base = "");

  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string Join(std::string_view name) const;

 private:
  std::string path_;
};

absl::StatusOr<std::string> ReadFileToString(const std::string& path);
// Temp file + fsync + rename + fsync of the directory; never leaves a partial `path`.
absl::Status WriteFileAtomically(const std::string& path, std::string_view data,
                                 mode_t mode = 0644);
// rm -rf; a missing path is not an error.
absl::Status RemoveAll(const std::string& path);
// mkdir -p.
absl::Status CreateDirectories(const std::string& path, mode_t mode = 0755);

}  // namespace naiad
