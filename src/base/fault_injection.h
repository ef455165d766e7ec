// File: base/fault_injection.h
//
// A FileSystem wrapper that fails chosen calls and simulates crashes (test-only; library
// naiad::base_testing).
//
// Failing calls: a Fault names an operation, a path substring, which matching call fails (the
// nth, or every one) and the status it returns. A write fault can also be torn: it writes only a
// prefix of the data before returning its status (an OK status makes a silent short write).
//
//   FaultInjectingFileSystem fs(FileSystem::Default());
//   fs.AddFault({.op = FsOp::kSync, .path = "pieces/", .nth = 2,
//                .status = absl::DataLossError("disk gone")});
//   fs.AddFault({.op = FsOp::kWrite, .path = "index", .torn_write = 100});
//
// Crashes: the filesystem tracks the content of every file written through it as of that file's
// last Sync(). DropUnsyncedData() puts every file back to that content (deleting files that were
// created and never synced), as a power failure would, and invalidates the file objects opened
// before it; code under test then reopens the files and recovers.
//
//   ASSERT_OK(store.Put("a", data));   // written and synced
//   ASSERT_OK(store.Put("b", data2));  // written, not synced
//   ASSERT_OK(fs.DropUnsyncedData());  // "a" survives; "b" is gone or back to its old content
//
// The crash model tracks file data only: renames, removals and directory creations are durable
// as soon as they return (directory syncs are not modelled), and a file's state follows its
// path, so writing through a file object whose file was renamed is not modelled. Every tracked
// file's last synced content is held in memory; keep test files small.
//
// All methods are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "base/env.h"

namespace naiad {

// The operations a fault can target.
enum class FsOp {
  kOpen,               // OpenForRead, OpenForReadWrite, OpenForAppend
  kRead,               // ReadAt
  kWrite,              // WriteAt, Append
  kSync,               // Sync of a file
  kTruncate,           // RandomRwFile::Truncate
  kClose,              // WritableFile::Close
  kRename,             // Rename (matches if either path matches)
  kRemove,             // Remove, RemoveAll
  kCreateDirectories,  // CreateDirectories
  kList,               // ListDirectory
  kStat,               // FileSize, Exists, Size of a file
  kSyncDirectory,      // SyncDirectory
};

struct Fault {
  FsOp op = FsOp::kOpen;
  // The path must contain this; "" matches every path.
  std::string path;
  // 0: every matching call fails; n >= 1: only the nth matching call (counted from AddFault).
  int nth = 0;
  absl::Status status = absl::InternalError("injected fault");
  // kWrite only: first write this many leading bytes of the data, then return `status`.
  std::optional<size_t> torn_write;
};

class FaultInjectingFileSystem : public FileSystem {
 public:
  // `base` is not owned and must outlive this object.
  explicit FaultInjectingFileSystem(FileSystem* base) : base_(base) {}

  // Adds a fault and returns its id.
  int AddFault(Fault fault);
  void RemoveFault(int id);
  void ClearFaults();
  // How many times `op` was called, failed or not.
  int64_t calls(FsOp op) const;

  // Simulates a crash; see the file comment. Errors come from restoring files through `base`.
  absl::Status DropUnsyncedData();
  // The paths written since their last Sync(), which DropUnsyncedData() would restore; sorted.
  std::vector<std::string> UnsyncedFiles() const;

  absl::StatusOr<std::unique_ptr<RandomAccessFile>> OpenForRead(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<RandomRwFile>> OpenForReadWrite(const std::string& path,
                                                                 bool create) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path,
                                                              bool truncate) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status RemoveAll(const std::string& path) override;
  absl::Status CreateDirectories(const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& path) override;
  absl::StatusOr<uint64_t> FileSize(const std::string& path) override;
  absl::StatusOr<bool> Exists(const std::string& path) override;
  absl::Status SyncDirectory(const std::string& path) override;

 private:
  class FaultyReadFile;
  class FaultyRwFile;
  class FaultyAppendFile;

  struct FaultState {
    Fault fault;
    int seen = 0;
  };
  // A file with writes since its last Sync(): `synced` is its content then (nullopt: absent).
  struct DirtyFile {
    std::optional<std::string> synced;
  };
  // What a write should do.
  struct WritePlan {
    absl::Status status;
    std::optional<size_t> torn_write;
  };

  // Counts the call, then returns an error if a file object is stale or a fault fires.
  absl::Status Intercept(FsOp op, std::string_view path, std::string_view path2 = "",
                         uint64_t epoch = 0, std::optional<size_t>* torn_write = nullptr);
  // Intercept() for a write, which also records the file's synced content first.
  WritePlan BeforeWrite(const std::string& path, uint64_t epoch);
  // Records the content `path` has now as its synced content, unless already dirty.
  absl::Status MarkDirty(const std::string& path);
  void MarkSynced(const std::string& path);
  absl::Status Restore(const std::string& path, const DirtyFile& file);
  uint64_t epoch() const;

  FileSystem* const base_;
  mutable absl::Mutex mu_;
  std::map<int, FaultState> faults_ ABSL_GUARDED_BY(mu_);
  int next_fault_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<FsOp, int64_t> calls_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, DirtyFile> dirty_ ABSL_GUARDED_BY(mu_);
  // Incremented by every crash; file objects from an older epoch are stale.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace naiad
