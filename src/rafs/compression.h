// File: rafs/compression.h
//
// Chunk compression for RAFS blobs: zstd (frames), lz4_block (raw LZ4 blocks, no frame) and
// none. Following upstream, a chunk whose compressed form is not smaller than its input is stored
// raw; Compress() reports which happened.
#pragma once

#include <cstdint>
#include <span>
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

// The room CompressInto() needs for `input_size` bytes; 0 for none (and for lz4 inputs it
// cannot take).
size_t CompressBound(Compressor compressor, size_t input_size);

// Compresses `input` into `out`, which must hold CompressBound() bytes, without allocating: the
// builder's workers reuse one buffer. Returns the compressed size, or 0 when the compressed form
// is not smaller than the input (or the compressor is none): then the input is stored raw.
absl::StatusOr<size_t> CompressInto(Compressor compressor, std::string_view input,
                                    std::span<char> out, int level = 3);

// Decompresses into exactly `uncompressed_size` bytes. DataLoss when the input is corrupt or
// decodes to a different size.
absl::StatusOr<std::string> Decompress(Compressor compressor, std::string_view input,
                                       uint64_t uncompressed_size);

}  // namespace naiad::rafs
