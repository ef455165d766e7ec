#include "base/env.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/time/clock.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad {
namespace {

class RealClock : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  void SleepFor(absl::Duration d) override {
    if (d > absl::ZeroDuration()) absl::SleepFor(d);
  }
};

// pread(2) until `out` is full or the file ends.
absl::StatusOr<size_t> ReadUpTo(int fd, const std::string& path, uint64_t offset,
                                std::span<char> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, StrCat("pread ", path));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

absl::StatusOr<uint64_t> SizeOf(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, StrCat("stat ", path));
  return static_cast<uint64_t>(st.st_size);
}

absl::Status SyncFd(int fd, const std::string& path) {
  if (::fdatasync(fd) != 0) return ErrnoError(errno, StrCat("fsync ", path));
  return absl::OkStatus();
}

class PosixRandomAccessFile : public RandomAccessFile {
 public:
  PosixRandomAccessFile(UniqueFd fd, std::string path)
      : fd_(std::move(fd)), path_(std::move(path)) {}

  absl::StatusOr<size_t> ReadAt(uint64_t offset, std::span<char> out) const override {
    return ReadUpTo(fd_.get(), path_, offset, out);
  }
  absl::StatusOr<uint64_t> Size() const override { return SizeOf(fd_.get(), path_); }

 private:
  UniqueFd fd_;
  std::string path_;
};

class PosixRandomRwFile : public RandomRwFile {
 public:
  PosixRandomRwFile(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  absl::StatusOr<size_t> ReadAt(uint64_t offset, std::span<char> out) const override {
    return ReadUpTo(fd_.get(), path_, offset, out);
  }
  absl::Status WriteAt(uint64_t offset, std::string_view data) override {
    return Annotate(PwriteFull(fd_.get(), data, offset), path_);
  }
  absl::Status Sync() override { return SyncFd(fd_.get(), path_); }
  absl::Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
      return ErrnoError(errno, StrCat("truncate ", path_));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> Size() const override { return SizeOf(fd_.get(), path_); }

 private:
  UniqueFd fd_;
  std::string path_;
};

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  absl::Status Append(std::string_view data) override {
    RETURN_IF_ERROR(CheckOpen());
    return Annotate(WriteFull(fd_.get(), data), path_);
  }
  absl::Status Sync() override {
    RETURN_IF_ERROR(CheckOpen());
    return SyncFd(fd_.get(), path_);
  }
  absl::Status Close() override {
    RETURN_IF_ERROR(CheckOpen());
    if (::close(fd_.Release()) != 0) return ErrnoError(errno, StrCat("close ", path_));
    return absl::OkStatus();
  }

 private:
  absl::Status CheckOpen() const {
    if (fd_.valid()) return absl::OkStatus();
    return absl::FailedPreconditionError(StrCat(path_, ": file is closed"));
  }

  UniqueFd fd_;
  std::string path_;
};

class PosixFileSystem : public FileSystem {
 public:
  absl::StatusOr<std::unique_ptr<RandomAccessFile>> OpenForRead(const std::string& path) override {
    ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_RDONLY));
    return std::make_unique<PosixRandomAccessFile>(std::move(fd), path);
  }

  absl::StatusOr<std::unique_ptr<RandomRwFile>> OpenForReadWrite(const std::string& path,
                                                                 bool create) override {
    ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_RDWR | (create ? O_CREAT : 0)));
    return std::make_unique<PosixRandomRwFile>(std::move(fd), path);
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path,
                                                              bool truncate) override {
    int flags = O_WRONLY | O_CREAT | O_APPEND | (truncate ? O_TRUNC : 0);
    ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, flags));
    return std::make_unique<PosixWritableFile>(std::move(fd), path);
  }

  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoError(errno, StrCat("rename ", from, " to ", to));
    }
    return absl::OkStatus();
  }

  absl::Status Remove(const std::string& path) override {
    if (::remove(path.c_str()) != 0) return ErrnoError(errno, StrCat("remove ", path));
    return absl::OkStatus();
  }

  absl::Status RemoveAll(const std::string& path) override { return naiad::RemoveAll(path); }

  absl::Status CreateDirectories(const std::string& path) override {
    return naiad::CreateDirectories(path);
  }

  absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& path) override {
    std::error_code ec;
    std::vector<std::string> names;
    for (std::filesystem::directory_iterator it(path, ec), end; !ec && it != end;
         it.increment(ec)) {
      names.push_back(it->path().filename().string());
    }
    if (ec) return ErrnoError(ec.value(), StrCat("list ", path));
    std::sort(names.begin(), names.end());
    return names;
  }

  absl::StatusOr<uint64_t> FileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoError(errno, StrCat("stat ", path));
    return static_cast<uint64_t>(st.st_size);
  }

  absl::StatusOr<bool> Exists(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    return ErrnoError(errno, StrCat("stat ", path));
  }

  absl::Status SyncDirectory(const std::string& path) override {
    ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_RDONLY | O_DIRECTORY));
    if (::fsync(fd.get()) != 0) return ErrnoError(errno, StrCat("fsync ", path));
    return absl::OkStatus();
  }
};

// The directory holding `path`: "a/b" -> "a", "b" -> ".".
std::string DirectoryOf(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

// "<dir>/.<name>.tmp-<pid>-<n>", unique within this process and across processes.
std::string TempPathFor(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  std::filesystem::path target(path);
  return StrCat(DirectoryOf(path), "/.", target.filename().string(), ".tmp-", ::getpid(), "-",
                counter.fetch_add(1));
}

}  // namespace

Clock* Clock::Real() {
  static Clock* const kClock = new RealClock();
  return kClock;
}

FileSystem* FileSystem::Default() {
  static FileSystem* const kFileSystem = new PosixFileSystem();
  return kFileSystem;
}

absl::StatusOr<std::string> FileSystem::ReadFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, OpenForRead(path));
  ASSIGN_OR_RETURN(uint64_t size_hint, file->Size());
  std::string out;
  size_t chunk = std::max<size_t>(static_cast<size_t>(size_hint) + 1, 64 * 1024);
  while (true) {
    size_t done = out.size();
    out.resize(done + chunk);
    ASSIGN_OR_RETURN(size_t n, file->ReadAt(done, std::span<char>(out).subspan(done)));
    out.resize(done + n);
    if (n < chunk) return out;
  }
}

absl::Status FileSystem::WriteFileAtomically(const std::string& path, std::string_view data) {
  std::string temp = TempPathFor(path);
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, OpenForAppend(temp, /*truncate=*/true));
    RETURN_IF_ERROR(file->Append(data));
    RETURN_IF_ERROR(file->Sync());
    RETURN_IF_ERROR(file->Close());
    return Rename(temp, path);
  }();
  if (!status.ok()) {
    Remove(temp).IgnoreError();
    return Annotate(status, StrCat("writing ", path));
  }
  return Annotate(SyncDirectory(DirectoryOf(path)), StrCat("writing ", path));
}

}  // namespace naiad
