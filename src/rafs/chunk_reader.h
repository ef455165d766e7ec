// File: rafs/chunk_reader.h
//
// Reads chunks of an image from blob files on local disk, decompresses them and verifies each
// against its digest (DataLoss on mismatch). Used by `naiad image check/unpack` and the tests;
// the FUSE daemon has its own cached, networked reader.
//
//   ASSIGN_OR_RETURN(auto reader, LocalChunkReader::Open(*boot, {.blob_dir = "blobs/"}));
//   ASSIGN_OR_RETURN(std::string data, reader->Read(chunk));
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/file.h"
#include "rafs/bootstrap.h"

namespace naiad::rafs {

struct BlobLocation {
  std::string blob_dir;                 // blobs named by their id
  std::vector<std::string> blob_files;  // or explicit files, in blob-table order
};

class LocalChunkReader {
 public:
  static absl::StatusOr<std::unique_ptr<LocalChunkReader>> Open(const Bootstrap& boot,
                                                                const BlobLocation& location);

  // The uncompressed, verified bytes of a chunk (zeros for a hole).
  absl::StatusOr<std::string> Read(const ChunkRef& chunk) const;
  // A whole regular file, chunk by chunk, into `sink`.
  absl::Status ReadFile(uint64_t nid,
                        const std::function<absl::Status(std::string_view)>& sink) const;

 private:
  LocalChunkReader(const Bootstrap& boot, std::vector<UniqueFd> fds)
      : boot_(boot), fds_(std::move(fds)) {}

  const Bootstrap& boot_;
  std::vector<UniqueFd> fds_;  // by blob index
};

}  // namespace naiad::rafs
