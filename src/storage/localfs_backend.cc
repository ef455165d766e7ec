#include "storage/localfs_backend.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::storage {
namespace {

bool IsBlobId(std::string_view id) {
  if (id.size() != 64) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalfsBackend>> LocalfsBackend::Create(
    const LocalfsBackendConfig& config) {
  RETURN_IF_ERROR(config.Validate());
  return std::unique_ptr<LocalfsBackend>(new LocalfsBackend(config));
}

absl::StatusOr<int> LocalfsBackend::BlobFd(const std::string& blob_id) {
  absl::MutexLock lock(&mu_);
  if (auto it = fds_.find(blob_id); it != fds_.end()) return it->second.get();
  if (!IsBlobId(blob_id)) {
    return absl::InvalidArgumentError(StrCat("blob id \"", blob_id, "\" is not sha256 hex"));
  }
  std::vector<std::string> candidates;
  if (!config_.blob_file.empty()) candidates.push_back(config_.blob_file);
  if (!config_.dir.empty()) candidates.push_back(StrCat(config_.dir, "/", blob_id));
  for (const std::string& dir : config_.alt_dirs) candidates.push_back(StrCat(dir, "/", blob_id));
  absl::Status last = absl::NotFoundError(StrCat("blob ", blob_id, " not found"));
  for (const std::string& path : candidates) {
    absl::StatusOr<UniqueFd> fd = UniqueFd::Open(path, O_RDONLY);
    if (fd.ok()) {
      int raw = fd->get();
      fds_.emplace(blob_id, std::move(*fd));
      return raw;
    }
    last = fd.status();
  }
  return Annotate(last, StrCat("localfs backend: blob ", blob_id));
}

absl::StatusOr<uint64_t> LocalfsBackend::BlobSize(const std::string& blob_id) {
  ASSIGN_OR_RETURN(int fd, BlobFd(blob_id));
  struct stat st {};
  if (fstat(fd, &st) != 0) return ErrnoError(errno, StrCat("fstat blob ", blob_id));
  return static_cast<uint64_t>(st.st_size);
}

absl::Status LocalfsBackend::Read(const BlobRange& range, BlobRead* out) {
  ASSIGN_OR_RETURN(int fd, BlobFd(range.blob_id));
  out->source = "localfs";
  out->data.resize(range.length);
  absl::Status status = PreadFull(fd, std::span<char>(out->data), range.offset);
  absl::MutexLock lock(&mu_);
  ++metrics_.requests;
  if (!status.ok()) {
    ++metrics_.errors;
    if (absl::IsOutOfRange(status)) {
      return absl::DataLossError(StrCat("blob ", range.blob_id, " is shorter than ",
                                        range.offset + range.length, " bytes"));
    }
    return Annotate(status, StrCat("localfs backend: blob ", range.blob_id));
  }
  metrics_.bytes += range.length;
  return absl::OkStatus();
}

void LocalfsBackend::ReportBadData(const std::string& source) {
  absl::MutexLock lock(&mu_);
  if (source == metrics_.source) ++metrics_.bad_data;
}

std::vector<SourceMetrics> LocalfsBackend::Metrics() const {
  absl::MutexLock lock(&mu_);
  return {metrics_};
}

}  // namespace naiad::storage
