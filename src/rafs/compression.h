// File: rafs/compression.h
//
// Chunk compression for RAFS blobs: zstd (frames), lz4_block (raw LZ4 blocks, no frame) and
// none. Following upstream, a chunk whose compressed form is not smaller than its input is stored
// raw; Compress() reports which happened.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "rafs/layout.h"

namespace naiad::rafs {

absl::StatusOr<Compressor> ParseCompressor(std::string_view name);  // "zstd", "lz4_block", "none"
std::string_view CompressorName(Compressor compressor);

struct Compressed {
  std::string data;
  bool compressed = false;  // false: `data` is the input, stored raw
};

// Compresses `input`; zstd at `level` (default 3, upstream's level).
absl::StatusOr<Compressed> Compress(Compressor compressor, std::string_view input, int level = 3);

// Decompresses into exactly `uncompressed_size` bytes. DataLoss when the input is corrupt or
// decodes to a different size.
absl::StatusOr<std::string> Decompress(Compressor compressor, std::string_view input,
                                       uint64_t uncompressed_size);

}  // namespace naiad::rafs
