// File: base/env.h
//
// The seam between Naiad and the operating system's clock and filesystem. Components take a
// Clock* and a FileSystem* instead of calling absl::Now(), sleep or open(2) directly, so tests
// can substitute a SimulatedClock (base/simulated_clock.h) or a FaultInjectingFileSystem
// (base/fault_injection.h) and exercise timeouts, I/O errors and crashes deterministically.
//
//   class PieceStore {
//    public:
//     PieceStore(FileSystem* fs, Clock* clock) : fs_(fs), clock_(clock) {}
//     absl::Status Put(const std::string& path, std::string_view data) {
//       ASSIGN_OR_RETURN(auto file, fs_->OpenForReadWrite(path, /*create=*/true));
//       RETURN_IF_ERROR(file->WriteAt(0, data));
//       return file->Sync();
//     }
//   };
//   PieceStore store(FileSystem::Default(), Clock::Real());
//
// Errors from the POSIX implementation come from naiad::ErrnoError() and name the operation and
// the path: "open /var/lib/naiad/x: No such file or directory" (NotFound).
//
// Thread safety: Clock::Real() and FileSystem::Default() are thread-safe. A file object may be
// used by one thread at a time, except that ReadAt() (a const method) may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace naiad {

class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() = 0;
  // Blocks the calling thread for `d`; returns at once if d <= 0.
  virtual void SleepFor(absl::Duration d) = 0;

  // The system clock (absl::Now(), absl::SleepFor()). Never null, never destroyed.
  static Clock* Real();
};

// A file opened for reading.
class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;

  // Reads up to out.size() bytes at `offset` into `out` and returns how many were read; fewer
  // than out.size() only at the end of the file (0 at or past it).
  virtual absl::StatusOr<size_t> ReadAt(uint64_t offset, std::span<char> out) const = 0;
  virtual absl::StatusOr<uint64_t> Size() const = 0;
};

// A file opened for reading and writing at arbitrary offsets (blob caches, piece stores).
class RandomRwFile {
 public:
  virtual ~RandomRwFile() = default;

  // As RandomAccessFile::ReadAt().
  virtual absl::StatusOr<size_t> ReadAt(uint64_t offset, std::span<char> out) const = 0;
  // Writes all of `data` at `offset`, extending the file if needed.
  virtual absl::Status WriteAt(uint64_t offset, std::string_view data) = 0;
  // Makes everything written so far durable.
  virtual absl::Status Sync() = 0;
  virtual absl::Status Truncate(uint64_t size) = 0;
  virtual absl::StatusOr<uint64_t> Size() const = 0;
};

// A file opened for appending (logs, temporary files).
class WritableFile {
 public:
  // Closes the file if Close() was not called, ignoring errors.
  virtual ~WritableFile() = default;

  virtual absl::Status Append(std::string_view data) = 0;
  // Makes everything appended so far durable.
  virtual absl::Status Sync() = 0;
  // Reports errors a destructor would lose. Any call after Close() fails.
  virtual absl::Status Close() = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // The POSIX filesystem. Never null, never destroyed.
  static FileSystem* Default();

  virtual absl::StatusOr<std::unique_ptr<RandomAccessFile>> OpenForRead(
      const std::string& path) = 0;
  // Opens an existing file, or with `create`, creates it (0644) if missing.
  virtual absl::StatusOr<std::unique_ptr<RandomRwFile>> OpenForReadWrite(const std::string& path,
                                                                         bool create) = 0;
  // Opens for appending, creating the file (0644) if missing; `truncate` empties it first.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path,
                                                                      bool truncate) = 0;

  // rename(2): atomically replaces `to`.
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  // Removes a file or an empty directory; NotFound if missing.
  virtual absl::Status Remove(const std::string& path) = 0;
  // rm -rf; a missing path is not an error.
  virtual absl::Status RemoveAll(const std::string& path) = 0;
  // mkdir -p (0755).
  virtual absl::Status CreateDirectories(const std::string& path) = 0;
  // The names in a directory (not "." or ".."), sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& path) = 0;
  virtual absl::StatusOr<uint64_t> FileSize(const std::string& path) = 0;
  // False if missing; an error only if the answer is unknown (e.g. permission denied).
  virtual absl::StatusOr<bool> Exists(const std::string& path) = 0;
  // fsync(2) on a directory: makes creations, renames and removals in it durable.
  virtual absl::Status SyncDirectory(const std::string& path) = 0;

  // Helpers built only on the primitives above, so wrappers see every step.

  // The whole content of a file.
  absl::StatusOr<std::string> ReadFile(const std::string& path);
  // Writes "<dir>/.<name>.tmp-<unique>", syncs it, renames it over `path` and syncs the
  // directory: a crash leaves the old content or the new, never a mix. The temporary file is
  // removed on failure.
  absl::Status WriteFileAtomically(const std::string& path, std::string_view data);
};

}  // namespace naiad
