#include "rafs/compression.h"

#include <lz4.h>
#include <zstd.h>

#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::rafs {
namespace {

// One compression and one decompression context per thread, reused across chunks: creating a
// zstd context per call allocates and initializes its workspace each time, which dominated the
// cost of compressing the many small chunks of a typical layer.
struct ZstdContexts {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  ~ZstdContexts() {
    ZSTD_freeCCtx(cctx);
    ZSTD_freeDCtx(dctx);
  }
};

ZstdContexts& ThreadZstd() {
  thread_local ZstdContexts contexts;
  return contexts;
}

}  // namespace

absl::StatusOr<Compressor> ParseCompressor(std::string_view name) {
  if (name == "zstd") return Compressor::kZstd;
  if (name == "lz4_block") return Compressor::kLz4Block;
  if (name == "none") return Compressor::kNone;
  return absl::InvalidArgumentError(
      StrCat("unknown compressor \"", name, "\": expected zstd, lz4_block or none"));
}

std::string_view CompressorName(Compressor compressor) {
  switch (compressor) {
    case Compressor::kNone:
      return "none";
    case Compressor::kLz4Block:
      return "lz4_block";
    case Compressor::kGzip:
      return "gzip";
    case Compressor::kZstd:
      return "zstd";
  }
  return "unknown";
}

size_t CompressBound(Compressor compressor, size_t input_size) {
  switch (compressor) {
    case Compressor::kZstd:
      return ZSTD_compressBound(input_size);
    case Compressor::kLz4Block:
      return input_size > LZ4_MAX_INPUT_SIZE
                 ? 0
                 : static_cast<size_t>(LZ4_compressBound(static_cast<int>(input_size)));
    default:
      return 0;
  }
}

absl::StatusOr<size_t> CompressInto(Compressor compressor, std::string_view input,
                                    std::span<char> out, int level) {
  if (compressor == Compressor::kNone) return 0;
  if (out.size() < CompressBound(compressor, input.size()))
    return absl::InvalidArgumentError("compression buffer smaller than the bound");
  size_t n = 0;
  if (compressor == Compressor::kZstd) {
    n = ZSTD_compressCCtx(ThreadZstd().cctx, out.data(), out.size(), input.data(), input.size(),
                          level);
    if (ZSTD_isError(n)) return absl::InternalError(StrCat("zstd: ", ZSTD_getErrorName(n)));
  } else if (compressor == Compressor::kLz4Block) {
    if (input.size() > LZ4_MAX_INPUT_SIZE)
      return absl::InvalidArgumentError("lz4: input too large");
    int written = LZ4_compress_default(input.data(), out.data(), static_cast<int>(input.size()),
                                       static_cast<int>(out.size()));
    if (written <= 0) return absl::InternalError("lz4: compression failed");
    n = static_cast<size_t>(written);
  } else {
    return absl::UnimplementedError(StrCat("compressor ", CompressorName(compressor)));
  }
  return n < input.size() ? n : 0;
}

absl::StatusOr<Compressed> Compress(Compressor compressor, std::string_view input, int level) {
  Compressed out;
  if (compressor != Compressor::kNone) {
    out.data.resize(CompressBound(compressor, input.size()));
    ASSIGN_OR_RETURN(size_t n, CompressInto(compressor, input, out.data, level));
    out.data.resize(n);
    out.compressed = n > 0;
  }
  if (!out.compressed) out.data.assign(input);
  return out;
}

absl::StatusOr<std::string> Decompress(Compressor compressor, std::string_view input,
                                       uint64_t uncompressed_size) {
  if (uncompressed_size > kMaxChunkSize * 64ull) {
    return absl::InvalidArgumentError(StrCat("decompress: absurd size ", uncompressed_size));
  }
  std::string out(uncompressed_size, '\0');
  if (compressor == Compressor::kZstd) {
    size_t n =
        ZSTD_decompressDCtx(ThreadZstd().dctx, out.data(), out.size(), input.data(), input.size());
    if (ZSTD_isError(n)) return absl::DataLossError(StrCat("zstd: ", ZSTD_getErrorName(n)));
    if (n != uncompressed_size) {
      return absl::DataLossError(StrCat("zstd: decoded ", n, " bytes, want ", uncompressed_size));
    }
  } else if (compressor == Compressor::kLz4Block) {
    int n = LZ4_decompress_safe(input.data(), out.data(), static_cast<int>(input.size()),
                                static_cast<int>(out.size()));
    if (n < 0 || static_cast<uint64_t>(n) != uncompressed_size) {
      return absl::DataLossError(StrCat("lz4: corrupt block (", n, " of ", uncompressed_size, ")"));
    }
  } else if (compressor == Compressor::kNone) {
    if (input.size() != uncompressed_size) {
      return absl::DataLossError(
          StrCat("raw chunk is ", input.size(), " bytes, want ", uncompressed_size));
    }
    out.assign(input);
  } else {
    return absl::UnimplementedError(StrCat("compressor ", CompressorName(compressor)));
  }
  return out;
}

}  // namespace naiad::rafs
