// File: tar/input_stream.h
//
// The byte-stream seam under the tar reader: a layer arrives as a file, a network body or a test
// string, possibly gzip- or zstd-compressed, and the reader only ever pulls bytes from it in large
// chunks. Nothing here seeks, so a layer can be read straight off a pipe or a download.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<InputStream> layer, OpenLayer("/layers/sha256:ab12"));
//   char buf[1 << 16];
//   for (;;) {
//     ASSIGN_OR_RETURN(size_t n, layer->Read(buf, sizeof(buf)));
//     if (n == 0) break;  // end of the (decompressed) stream
//     Consume(buf, n);
//   }
//
// OpenLayer() sniffs the first bytes: gzip (1f 8b) and zstd (28 b5 2f fd) are decompressed
// transparently (see tar/compression.h); anything else is passed through as a plain tar.
//
// Thread safety: a stream is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "base/file.h"

namespace naiad::tar {

class InputStream {
 public:
  virtual ~InputStream() = default;

  // Reads up to `n` bytes into `buf`. Returns the number read; 0 means end of stream (and only
  // that: a stream never returns 0 for n > 0 before its end). Short reads are normal.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t n) = 0;
};

// Reads a file descriptor sequentially (pipes and sockets too); retries EINTR.
class FileInputStream final : public InputStream {
 public:
  explicit FileInputStream(UniqueFd fd, std::string name = "")
      : fd_(std::move(fd)), name_(std::move(name)) {}

  // Opens `path` read-only.
  static absl::StatusOr<std::unique_ptr<FileInputStream>> Open(const std::string& path);

  absl::StatusOr<size_t> Read(char* buf, size_t n) override;

 private:
  UniqueFd fd_;
  std::string name_;  // for error messages
};

// Serves an in-memory string (tests, small manifests). `chunk_limit` > 0 caps every Read() to
// that many bytes, so tests can prove the consumer copes with short reads.
class StringInputStream final : public InputStream {
 public:
  explicit StringInputStream(std::string data, size_t chunk_limit = 0)
      : data_(std::move(data)), chunk_limit_(chunk_limit) {}

  absl::StatusOr<size_t> Read(char* buf, size_t n) override;

 private:
  std::string data_;
  size_t pos_ = 0;
  size_t chunk_limit_;
};

}  // namespace naiad::tar
