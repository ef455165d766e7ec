// File: rafs/tar_source.h
//
// An EntrySource over an OCI layer tarball (plain, gzip or zstd), read as a stream by
// naiad::tar::Reader: `naiad image create -t tar-rafs|targz-rafs` builds from it without
// unpacking the layer.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "rafs/entry_source.h"
#include "tar/reader.h"

namespace naiad::rafs {

class TarSource : public EntrySource {
 public:
  // `path` "-" reads standard input.
  static absl::StatusOr<std::unique_ptr<TarSource>> Open(const std::string& path,
                                                         const tar::ReaderOptions& options = {});
  static absl::StatusOr<std::unique_ptr<TarSource>> FromStream(
      std::unique_ptr<tar::InputStream> stream, const tar::ReaderOptions& options = {});

  absl::StatusOr<std::optional<SourceEntry>> Next() override;
  absl::StatusOr<size_t> Read(char* buf, size_t size) override;
  // Holes of GNU sparse entries.
  absl::StatusOr<bool> SkipHole(uint64_t size) override;

 private:
  explicit TarSource(std::unique_ptr<tar::Reader> reader) : reader_(std::move(reader)) {}
  std::unique_ptr<tar::Reader> reader_;
};

}  // namespace naiad::rafs
