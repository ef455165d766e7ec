// File: storage/localfs_backend.h
//
// The `localfs` backend: blobs are files in a directory (named by their id), or one explicit
// blob file, with `alt_dirs` searched after `dir`.
//
//   ASSIGN_OR_RETURN(auto backend, LocalfsBackend::Create({.dir = "/var/lib/naiad/blobs"}));
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "base/file.h"
#include "storage/backend.h"
#include "storage/config.h"

namespace naiad::storage {

class LocalfsBackend : public BlobBackend {
 public:
  static absl::StatusOr<std::unique_ptr<LocalfsBackend>> Create(const LocalfsBackendConfig& config);

  absl::StatusOr<uint64_t> BlobSize(const std::string& blob_id) override;
  absl::Status Read(const BlobRange& range, BlobRead* out) override;
  void ReportBadData(const std::string& source) override;
  std::vector<SourceMetrics> Metrics() const override;

 private:
  explicit LocalfsBackend(LocalfsBackendConfig config) : config_(std::move(config)) {}
  // The open file of a blob (opened once, kept).
  absl::StatusOr<int> BlobFd(const std::string& blob_id);

  const LocalfsBackendConfig config_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, UniqueFd> fds_ ABSL_GUARDED_BY(mu_);
  SourceMetrics metrics_ ABSL_GUARDED_BY(mu_){.source = "localfs"};
};

}  // namespace naiad::storage
