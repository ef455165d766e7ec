// File: tar/compression.h
//
// Decompressing input streams for OCI layers (application/vnd.oci.image.layer.v1.tar+gzip and
// +zstd) and OpenLayer(), which picks one by sniffing the stream's first bytes, so callers need
// not trust the media type a manifest claims.
//
//   ASSIGN_OR_RETURN(auto layer, OpenLayer(path));          // tar, tar.gz or tar.zst
//   ASSIGN_OR_RETURN(auto reader, Reader::Create(std::move(layer), {}));
//
// Both decoders accept concatenations (multi-member gzip, multi-frame zstd, zstd skippable
// frames), as pigz and zstd -T produce. Corrupt or truncated compressed data is DataLoss naming
// the format and the compressed offset. Memory is fixed: one input buffer plus the decoder's
// window (32 KiB for gzip; for zstd at most 128 MiB, the decoder's default windowLogMax of 27).
//
// Thread safety: a stream is used by one thread at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tar/input_stream.h"

namespace naiad::tar {

enum class Compression { kNone, kGzip, kZstd };

std::string_view CompressionName(Compression compression);  // "none", "gzip", "zstd"

// Classifies a stream by its first bytes (at least 4 are needed to recognize zstd).
Compression DetectCompression(std::string_view first_bytes);

// Compressed bytes are pulled from the source in chunks of this size. Large chunks keep the
// decoders in their fast loops and cut calls into the source.
inline constexpr size_t kDefaultCompressedBufferSize = size_t{1} << 20;

// gzip (RFC 1952) decoder on zlib's inflate.
class GzipInputStream final : public InputStream {
 public:
  static absl::StatusOr<std::unique_ptr<GzipInputStream>> Create(
      std::unique_ptr<InputStream> source, size_t buffer_size = kDefaultCompressedBufferSize);
  ~GzipInputStream() override;

  absl::StatusOr<size_t> Read(char* buf, size_t n) override;

 private:
  struct State;
  explicit GzipInputStream(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// zstd decoder on ZSTD_decompressStream.
class ZstdInputStream final : public InputStream {
 public:
  static absl::StatusOr<std::unique_ptr<ZstdInputStream>> Create(
      std::unique_ptr<InputStream> source, size_t buffer_size = kDefaultCompressedBufferSize);
  ~ZstdInputStream() override;

  absl::StatusOr<size_t> Read(char* buf, size_t n) override;

 private:
  struct State;
  explicit ZstdInputStream(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Wraps `source` in the decoder its first bytes call for. `detected`, if set, receives the
// choice. An empty source is returned as an empty plain stream (an empty layer).
absl::StatusOr<std::unique_ptr<InputStream>> OpenLayer(std::unique_ptr<InputStream> source,
                                                       Compression* detected = nullptr);
// Opens the file at `path` and calls OpenLayer() on it.
absl::StatusOr<std::unique_ptr<InputStream>> OpenLayer(const std::string& path,
                                                       Compression* detected = nullptr);

}  // namespace naiad::tar
