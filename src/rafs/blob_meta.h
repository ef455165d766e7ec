// File: rafs/blob_meta.h
//
// Reads the self-describing tail of a RAFS data blob: the TOC (found by reading the blob's last
// 4 KiB), the blob-meta section (chunk-info array + 4 KiB header), the chunk-digest array and an
// inline bootstrap. With these a blob can be used without its bootstrap's chunk table, and an
// image can be recovered from its blobs alone.
//
//   ASSIGN_OR_RETURN(BlobTail tail, ReadBlobTail(reader, blob_size));
//   ASSIGN_OR_RETURN(std::vector<ChunkMeta> chunks, ReadChunkMeta(reader, tail));
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/digest.h"
#include "rafs/layout.h"

namespace naiad::rafs {

// Reads `size` bytes at `offset` of a blob (from a file, a cache, or a registry).
using BlobReadFn = std::function<absl::StatusOr<std::string>(uint64_t offset, uint64_t size)>;

struct TocSection {
  std::string name;
  Compressor compressor = Compressor::kNone;
  Digest sha256;  // of the uncompressed section
  uint64_t offset = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
};

struct BlobTail {
  uint64_t blob_size = 0;
  uint64_t toc_offset = 0;  // where the TOC entries start
  uint32_t toc_size = 0;    // entries plus their tar header
  Digest toc_digest;        // sha256 over entries and tar header, as the blob table records it
  std::vector<TocSection> sections;

  const TocSection* Find(std::string_view name) const;
};

// One record of a blob's chunk-info array.
struct ChunkMeta {
  uint64_t compressed_offset = 0;
  uint32_t compressed_size = 0;
  uint64_t uncompressed_offset = 0;
  uint32_t uncompressed_size = 0;
  bool compressed = false;
  std::optional<uint32_t> crc32;
};

// Parses a GNU/ustar header as written after each blob section: returns (name, size).
absl::StatusOr<std::pair<std::string, uint64_t>> ParseSectionTarHeader(std::string_view header);

// Locates and parses the TOC from the end of a blob.
absl::StatusOr<BlobTail> ReadBlobTail(const BlobReadFn& read, uint64_t blob_size);

// Reads the blob-meta header and the chunk-info array it describes, decompressing if needed.
absl::StatusOr<BlobMetaHeader> ReadBlobMetaHeader(const BlobReadFn& read, const BlobTail& tail);
absl::StatusOr<std::vector<ChunkMeta>> ReadChunkMeta(const BlobReadFn& read, const BlobTail& tail);

// Decodes a chunk-info array (v1: 16-byte records, v2: 24-byte records).
absl::StatusOr<std::vector<ChunkMeta>> DecodeChunkInfoArray(std::string_view data, bool v2,
                                                            uint32_t count);

// The chunk digests (32 bytes each) of the "blob.digest" section.
absl::StatusOr<std::vector<Digest>> ReadChunkDigests(const BlobReadFn& read, const BlobTail& tail,
                                                     DigestAlgorithm algorithm);

// The inline bootstrap ("image.boot"), decompressed and checked against its TOC digest.
absl::StatusOr<std::string> ReadInlineBootstrap(const BlobReadFn& read, const BlobTail& tail);

// A BlobReadFn over bytes in memory (tests, small blobs).
BlobReadFn MemoryBlobReader(std::string_view bytes);

}  // namespace naiad::rafs
