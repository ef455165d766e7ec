#include "rafs/blob_meta.h"

#include <cstring>

#include "base/status_macros.h"
#include "base/strings.h"
#include "rafs/compression.h"
#include "tar/format.h"

namespace naiad::rafs {
namespace {

constexpr uint64_t kTarHeaderSize = kSectionHeaderSize;
constexpr uint64_t kMaxTocSize = 64 * 1024;

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(StrCat("corrupt blob: ", what));
}

absl::StatusOr<Compressor> TocCompressor(uint32_t flags) {
  switch (flags & 0xf) {
    case kTocNone:
      return Compressor::kNone;
    case kTocZstd:
      return Compressor::kZstd;
    case kTocLz4Block:
      return Compressor::kLz4Block;
    default:
      return Corrupt(StrCat("TOC entry flags 0x", absl::Hex(flags)));
  }
}

absl::StatusOr<std::string> ReadSection(const BlobReadFn& read, const TocSection& section,
                                        uint64_t blob_size) {
  if (section.offset > blob_size || section.compressed_size > blob_size - section.offset) {
    return Corrupt(StrCat("section ", section.name, " lies outside the blob"));
  }
  ASSIGN_OR_RETURN(std::string raw, read(section.offset, section.compressed_size));
  ASSIGN_OR_RETURN(std::string data,
                   Decompress(section.compressor, raw, section.uncompressed_size));
  if (Digest::Of(DigestAlgorithm::kSha256, data) != section.sha256) {
    return Corrupt(StrCat("section ", section.name, " does not match its TOC digest"));
  }
  return data;
}

}  // namespace

const TocSection* BlobTail::Find(std::string_view name) const {
  for (const TocSection& section : sections) {
    if (section.name == name) return &section;
  }
  return nullptr;
}

absl::StatusOr<std::pair<std::string, uint64_t>> ParseSectionTarHeader(std::string_view header) {
  if (header.size() != kTarHeaderSize) return Corrupt("short tar header");
  if (!tar::format::ChecksumMatches(header.data())) return Corrupt("section tar header checksum");
  tar::format::UstarHeader h;
  std::memcpy(&h, header.data(), sizeof(h));
  if (h.typeflag != tar::format::kTypeRegular && h.typeflag != tar::format::kTypeRegularV7) {
    return Corrupt("section tar header is not a regular file");
  }
  auto size = tar::format::ParseUnsigned(h.size);
  if (!size.ok()) return Corrupt("section tar header size");
  return std::make_pair(std::string(tar::format::FieldString(h.name)), *size);
}

absl::StatusOr<BlobTail> ReadBlobTail(const BlobReadFn& read, uint64_t blob_size) {
  if (blob_size < kTarHeaderSize)
    return Corrupt(StrCat("blob of ", blob_size, " bytes has no TOC"));
  ASSIGN_OR_RETURN(std::string header, read(blob_size - kTarHeaderSize, kTarHeaderSize));
  ASSIGN_OR_RETURN(auto name_size, ParseSectionTarHeader(header));
  auto [name, size] = name_size;
  if (name != kTocNameToc) return Corrupt(StrCat("last section is \"", name, "\", not the TOC"));
  if (size == 0 || size % sizeof(TocEntry) != 0 || size > kMaxTocSize ||
      size > blob_size - kTarHeaderSize) {
    return Corrupt(StrCat("TOC size ", size));
  }
  BlobTail tail;
  tail.blob_size = blob_size;
  tail.toc_offset = blob_size - kTarHeaderSize - size;
  tail.toc_size = static_cast<uint32_t>(size + kTarHeaderSize);
  ASSIGN_OR_RETURN(std::string entries, read(tail.toc_offset, size));
  tail.toc_digest = Digest::Of(DigestAlgorithm::kSha256, entries + header);
  for (uint64_t off = 0; off < size; off += sizeof(TocEntry)) {
    TocEntry e;
    std::memcpy(&e, entries.data() + off, sizeof(e));
    TocSection section;
    section.name.assign(e.name, strnlen(e.name, sizeof(e.name)));
    ASSIGN_OR_RETURN(section.compressor, TocCompressor(e.flags));
    std::memcpy(section.sha256.bytes.data(), e.uncompressed_digest, 32);
    section.offset = e.compressed_offset;
    section.compressed_size = e.compressed_size;
    section.uncompressed_size = e.uncompressed_size;
    // Upstream records the data section's end, not its start, as its offset; it always starts at 0.
    if (section.name == kTocNameBlob) section.offset = 0;
    tail.sections.push_back(std::move(section));
  }
  return tail;
}

absl::StatusOr<BlobMetaHeader> ReadBlobMetaHeader(const BlobReadFn& read, const BlobTail& tail) {
  const TocSection* section = tail.Find(kTocNameBlobMetaHeader);
  if (section == nullptr) return Corrupt("TOC has no blob.meta.header section");
  ASSIGN_OR_RETURN(std::string bytes, ReadSection(read, *section, tail.blob_size));
  if (bytes.size() != sizeof(BlobMetaHeader)) return Corrupt("blob meta header size");
  BlobMetaHeader header;
  std::memcpy(&header, bytes.data(), sizeof(header));
  if (header.magic != kBlobMetaMagic || header.magic2 != kBlobMetaMagic)
    return Corrupt("blob meta magic");
  return header;
}

absl::StatusOr<std::vector<ChunkMeta>> ReadChunkMeta(const BlobReadFn& read, const BlobTail& tail) {
  ASSIGN_OR_RETURN(BlobMetaHeader header, ReadBlobMetaHeader(read, tail));
  const TocSection* section = tail.Find(kTocNameBlobMeta);
  if (section == nullptr) return Corrupt("TOC has no blob.meta section");
  ASSIGN_OR_RETURN(std::string array, ReadSection(read, *section, tail.blob_size));
  if (header.ci_uncompressed_size > array.size())
    return Corrupt("chunk-info array is shorter than its header says");
  array.resize(header.ci_uncompressed_size);
  return DecodeChunkInfoArray(array, (header.features & kBlobChunkInfoV2) != 0, header.ci_entries);
}

absl::StatusOr<std::vector<ChunkMeta>> DecodeChunkInfoArray(std::string_view data, bool v2,
                                                            uint32_t count) {
  size_t record = v2 ? sizeof(ChunkInfoV2) : sizeof(ChunkInfoV1);
  if (uint64_t{count} * record > data.size()) {
    return Corrupt(
        StrCat("chunk-info array holds ", data.size() / record, " records, header says ", count));
  }
  std::vector<ChunkMeta> chunks(count);
  for (uint32_t i = 0; i < count; ++i) {
    ChunkMeta& c = chunks[i];
    if (v2) {
      ChunkInfoV2 r;
      std::memcpy(&r, data.data() + uint64_t{i} * record, record);
      c.uncompressed_offset = (r.uncomp_info & 0xffff'ffff) << 12;
      c.uncompressed_size = static_cast<uint32_t>(((r.uncomp_info >> 32) & 0xff'ffff) + 1);
      uint8_t flags = static_cast<uint8_t>(r.uncomp_info >> 56);
      c.compressed = (flags & 0x1) != 0;
      if (flags & 0x10) c.crc32 = static_cast<uint32_t>(r.data);
      c.compressed_offset = r.comp_info & 0xff'ffff'ffff;
      c.compressed_size = static_cast<uint32_t>(r.comp_info >> 40);
    } else {
      ChunkInfoV1 r;
      std::memcpy(&r, data.data() + uint64_t{i} * record, record);
      c.uncompressed_offset = r.uncomp_info & 0xfff'ffff'f000;
      c.uncompressed_size =
          static_cast<uint32_t>(((r.uncomp_info >> 44) | (((r.uncomp_info >> 8) & 0xf) << 20)) + 1);
      c.compressed_offset = r.comp_info & 0xff'ffff'ffff;
      c.compressed_size =
          static_cast<uint32_t>(((r.comp_info >> 44) | (((r.comp_info >> 40) & 0xf) << 20)) + 1);
      c.compressed = c.compressed_size != c.uncompressed_size;
    }
  }
  return chunks;
}

absl::StatusOr<std::vector<Digest>> ReadChunkDigests(const BlobReadFn& read, const BlobTail& tail,
                                                     DigestAlgorithm algorithm) {
  const TocSection* section = tail.Find(kTocNameChunkDigest);
  if (section == nullptr) return Corrupt("TOC has no blob.digest section");
  ASSIGN_OR_RETURN(std::string bytes, ReadSection(read, *section, tail.blob_size));
  if (bytes.size() % 32 != 0) return Corrupt("chunk digest array size");
  std::vector<Digest> digests(bytes.size() / 32);
  for (size_t i = 0; i < digests.size(); ++i) {
    digests[i].algorithm = algorithm;
    std::memcpy(digests[i].bytes.data(), bytes.data() + i * 32, 32);
  }
  return digests;
}

absl::StatusOr<std::string> ReadInlineBootstrap(const BlobReadFn& read, const BlobTail& tail) {
  const TocSection* section = tail.Find(kTocNameBootstrap);
  if (section == nullptr) return absl::NotFoundError("blob has no inline bootstrap (image.boot)");
  return ReadSection(read, *section, tail.blob_size);
}

BlobReadFn MemoryBlobReader(std::string_view bytes) {
  return [bytes](uint64_t offset, uint64_t size) -> absl::StatusOr<std::string> {
    if (offset > bytes.size() || size > bytes.size() - offset) {
      return absl::OutOfRangeError(
          StrCat("read [", offset, ", +", size, ") past blob end ", bytes.size()));
    }
    return std::string(bytes.substr(offset, size));
  };
}

}  // namespace naiad::rafs
