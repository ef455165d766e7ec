#include "base/fault_injection.h"

#include <algorithm>
#include <utility>

#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad {

class FaultInjectingFileSystem::FaultyReadFile : public RandomAccessFile {
 public:
  FaultyReadFile(FaultInjectingFileSystem* fs, std::unique_ptr<RandomAccessFile> base,
                 std::string path, uint64_t epoch)
      : fs_(fs), base_(std::move(base)), path_(std::move(path)), epoch_(epoch) {}

  absl::StatusOr<size_t> ReadAt(uint64_t offset, std::span<char> out) const override {
    RETURN_IF_ERROR(fs_->Intercept(FsOp::kRead, path_, "", epoch_));
    return base_->ReadAt(offset, out);
  }
  absl::StatusOr<uint64_t> Size() const override {
    RETURN_IF_ERROR(fs_->Intercept(FsOp::kStat, path_, "", epoch_));
    return base_->Size();
  }

 private:
  FaultInjectingFileSystem* fs_;
  std::unique_ptr<RandomAccessFile> base_;
  std::string path_;
  uint64_t epoch_;
};

class FaultInjectingFileSystem::FaultyRwFile : public RandomRwFile {
 public:
  FaultyRwFile(FaultInjectingFileSystem* fs, std::unique_ptr<RandomRwFile> base, std::string path,
               uint64_t epoch)
      : fs_(fs), base_(std::move(base)), path_(std::move(path)), epoch_(epoch) {}

  absl::StatusOr<size_t> ReadAt(uint64_t offset, std::span<char> out) const override {
    RETURN_IF_ERROR(fs_->Intercept(FsOp::kRead, path_, "", epoch_));
    return base_->ReadAt(offset, out);
  }
  absl::Status WriteAt(uint64_t offset, std::string_view data) override {
    WritePlan plan = fs_->BeforeWrite(path_, epoch_);
    if (!plan.torn_write.has_value()) {
      RETURN_IF_ERROR(plan.status);
      return base_->WriteAt(offset, data);
    }
    RETURN_IF_ERROR(base_->WriteAt(offset, data.substr(0, *plan.torn_write)));
    return plan.status;
  }
  absl::Status Sync() override {
    RETURN_IF_ERROR(fs_->Intercept(FsOp::kSync, path_, "", epoch_));
    RETURN_IF_ERROR(base_->Sync());
    fs_->MarkSynced(path_);
    return absl::OkStatus();
  }
  absl::Status Truncate(uint64_t size) override {
    RETURN_IF_ERROR(fs_->Intercept(FsOp::kTruncate, path_, "", epoch_));
    RETURN_IF_ERROR(fs_->MarkDirty(path_));
    return base_->Truncate(size);
  }
  absl::StatusOr<uint64_t> Size() const override {
    RETURN_IF_ERROR(fs_->Intercept(FsOp::kStat, path_, "", epoch_));
    return base_->Size();
  }

 private:
  FaultInjectingFileSystem* fs_;
  std::unique_ptr<RandomRwFile> base_;
  std::string path_;
  uint64_t epoch_;
};

class FaultInjectingFileSystem::FaultyAppendFile : public WritableFile {
 public:
  FaultyAppendFile(FaultInjectingFileSystem* fs, std::unique_ptr<WritableFile> base,
                   std::string path, uint64_t epoch)
      : fs_(fs), base_(std::move(base)), path_(std::move(path)), epoch_(epoch) {}

  absl::Status Append(std::string_view data) override {
    WritePlan plan = fs_->BeforeWrite(path_, epoch_);
    if (!plan.torn_write.has_value()) {
      RETURN_IF_ERROR(plan.status);
      return base_->Append(data);
    }
    RETURN_IF_ERROR(base_->Append(data.substr(0, *plan.torn_write)));
    return plan.status;
  }
  absl::Status Sync() override {
    RETURN_IF_ERROR(fs_->Intercept(FsOp::kSync, path_, "", epoch_));
    RETURN_IF_ERROR(base_->Sync());
    fs_->MarkSynced(path_);
    return absl::OkStatus();
  }
  absl::Status Close() override {
    RETURN_IF_ERROR(fs_->Intercept(FsOp::kClose, path_, "", epoch_));
    return base_->Close();
  }

 private:
  FaultInjectingFileSystem* fs_;
  std::unique_ptr<WritableFile> base_;
  std::string path_;
  uint64_t epoch_;
};

int FaultInjectingFileSystem::AddFault(Fault fault) {
  absl::MutexLock lock(&mu_);
  int id = next_fault_id_++;
  faults_[id] = FaultState{std::move(fault)};
  return id;
}

void FaultInjectingFileSystem::RemoveFault(int id) {
  absl::MutexLock lock(&mu_);
  faults_.erase(id);
}

void FaultInjectingFileSystem::ClearFaults() {
  absl::MutexLock lock(&mu_);
  faults_.clear();
}

int64_t FaultInjectingFileSystem::calls(FsOp op) const {
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

uint64_t FaultInjectingFileSystem::epoch() const {
  absl::MutexLock lock(&mu_);
  return epoch_;
}

absl::Status FaultInjectingFileSystem::Intercept(FsOp op, std::string_view path,
                                                 std::string_view path2, uint64_t epoch,
                                                 std::optional<size_t>* torn_write) {
  absl::MutexLock lock(&mu_);
  ++calls_[op];
  if (epoch != 0 && epoch != epoch_) {
    return absl::FailedPreconditionError(
        StrCat(path, ": file was opened before a simulated crash"));
  }
  const Fault* fired = nullptr;
  for (auto& [id, state] : faults_) {
    const Fault& fault = state.fault;
    bool matches = path.find(fault.path) != std::string_view::npos ||
                   (!path2.empty() && path2.find(fault.path) != std::string_view::npos);
    if (fault.op != op || !matches) continue;
    ++state.seen;
    if (fired == nullptr && (fault.nth == 0 || fault.nth == state.seen)) fired = &fault;
  }
  if (fired == nullptr) return absl::OkStatus();
  if (torn_write != nullptr) *torn_write = fired->torn_write;
  return fired->status;
}

FaultInjectingFileSystem::WritePlan FaultInjectingFileSystem::BeforeWrite(const std::string& path,
                                                                          uint64_t epoch) {
  WritePlan plan;
  plan.status = Intercept(FsOp::kWrite, path, "", epoch, &plan.torn_write);
  if (!plan.status.ok() && !plan.torn_write.has_value()) return plan;
  absl::Status dirty = MarkDirty(path);
  if (!dirty.ok()) return WritePlan{dirty, std::nullopt};
  return plan;
}

absl::Status FaultInjectingFileSystem::MarkDirty(const std::string& path) {
  absl::MutexLock lock(&mu_);
  if (dirty_.contains(path)) return absl::OkStatus();
  DirtyFile file;
  ASSIGN_OR_RETURN(bool exists, base_->Exists(path));
  if (exists) {
    ASSIGN_OR_RETURN(file.synced, base_->ReadFile(path));
  }
  dirty_.emplace(path, std::move(file));
  return absl::OkStatus();
}

void FaultInjectingFileSystem::MarkSynced(const std::string& path) {
  absl::MutexLock lock(&mu_);
  dirty_.erase(path);
}

absl::Status FaultInjectingFileSystem::Restore(const std::string& path, const DirtyFile& file) {
  if (!file.synced.has_value()) {
    absl::Status status = base_->Remove(path);
    return absl::IsNotFound(status) ? absl::OkStatus() : status;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> out, base_->OpenForAppend(path, true));
  RETURN_IF_ERROR(out->Append(*file.synced));
  RETURN_IF_ERROR(out->Sync());
  return out->Close();
}

absl::Status FaultInjectingFileSystem::DropUnsyncedData() {
  std::map<std::string, DirtyFile> dirty;
  {
    absl::MutexLock lock(&mu_);
    ++epoch_;
    dirty.swap(dirty_);
  }
  absl::Status result;
  for (const auto& [path, file] : dirty) {
    absl::Status status = Restore(path, file);
    if (result.ok()) result = Annotate(status, StrCat("restoring ", path));
  }
  return result;
}

std::vector<std::string> FaultInjectingFileSystem::UnsyncedFiles() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> paths;
  for (const auto& [path, file] : dirty_) paths.push_back(path);
  return paths;
}

absl::StatusOr<std::unique_ptr<RandomAccessFile>> FaultInjectingFileSystem::OpenForRead(
    const std::string& path) {
  RETURN_IF_ERROR(Intercept(FsOp::kOpen, path));
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, base_->OpenForRead(path));
  return std::make_unique<FaultyReadFile>(this, std::move(file), path, epoch());
}

absl::StatusOr<std::unique_ptr<RandomRwFile>> FaultInjectingFileSystem::OpenForReadWrite(
    const std::string& path, bool create) {
  RETURN_IF_ERROR(Intercept(FsOp::kOpen, path));
  if (create) {
    ASSIGN_OR_RETURN(bool exists, base_->Exists(path));
    if (!exists) RETURN_IF_ERROR(MarkDirty(path));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<RandomRwFile> file, base_->OpenForReadWrite(path, create));
  return std::make_unique<FaultyRwFile>(this, std::move(file), path, epoch());
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectingFileSystem::OpenForAppend(
    const std::string& path, bool truncate) {
  RETURN_IF_ERROR(Intercept(FsOp::kOpen, path));
  ASSIGN_OR_RETURN(bool exists, base_->Exists(path));
  if (truncate || !exists) RETURN_IF_ERROR(MarkDirty(path));
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, base_->OpenForAppend(path, truncate));
  return std::make_unique<FaultyAppendFile>(this, std::move(file), path, epoch());
}

absl::Status FaultInjectingFileSystem::Rename(const std::string& from, const std::string& to) {
  RETURN_IF_ERROR(Intercept(FsOp::kRename, from, to));
  RETURN_IF_ERROR(base_->Rename(from, to));
  absl::MutexLock lock(&mu_);
  auto node = dirty_.extract(from);
  dirty_.erase(to);
  if (!node.empty()) {
    node.key() = to;
    dirty_.insert(std::move(node));
  }
  return absl::OkStatus();
}

absl::Status FaultInjectingFileSystem::Remove(const std::string& path) {
  RETURN_IF_ERROR(Intercept(FsOp::kRemove, path));
  RETURN_IF_ERROR(base_->Remove(path));
  absl::MutexLock lock(&mu_);
  dirty_.erase(path);
  return absl::OkStatus();
}

absl::Status FaultInjectingFileSystem::RemoveAll(const std::string& path) {
  RETURN_IF_ERROR(Intercept(FsOp::kRemove, path));
  RETURN_IF_ERROR(base_->RemoveAll(path));
  absl::MutexLock lock(&mu_);
  std::string prefix = StrCat(path, "/");
  std::erase_if(dirty_, [&](const auto& entry) {
    return entry.first == path || entry.first.starts_with(prefix);
  });
  return absl::OkStatus();
}

absl::Status FaultInjectingFileSystem::CreateDirectories(const std::string& path) {
  RETURN_IF_ERROR(Intercept(FsOp::kCreateDirectories, path));
  return base_->CreateDirectories(path);
}

absl::StatusOr<std::vector<std::string>> FaultInjectingFileSystem::ListDirectory(
    const std::string& path) {
  RETURN_IF_ERROR(Intercept(FsOp::kList, path));
  return base_->ListDirectory(path);
}

absl::StatusOr<uint64_t> FaultInjectingFileSystem::FileSize(const std::string& path) {
  RETURN_IF_ERROR(Intercept(FsOp::kStat, path));
  return base_->FileSize(path);
}

absl::StatusOr<bool> FaultInjectingFileSystem::Exists(const std::string& path) {
  RETURN_IF_ERROR(Intercept(FsOp::kStat, path));
  return base_->Exists(path);
}

absl::Status FaultInjectingFileSystem::SyncDirectory(const std::string& path) {
  RETURN_IF_ERROR(Intercept(FsOp::kSyncDirectory, path));
  return base_->SyncDirectory(path);
}

}  // namespace naiad
