// File: piece/pieces_file.h
//
// The `pieces` file of a piece-store task (docs/formats/piece-store.md): which pieces of the
// task's `data` file are present, and their crc32c.
//
//   [PiecesFileHeader, 16 bytes][PieceRecord, 8 bytes] x piece_count
//
// Record `n` is at PieceRecordOffset(n). Records are 8-byte aligned, so none straddles a page
// and each is written with one pwrite: a kill -9 leaves a record either old or new. The file is
// created at its full size with every record zero (absent).
//
// Plain data; no thread-safety concerns.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

static_assert(std::endian::native == std::endian::little, "the pieces file is little-endian");

namespace naiad::piece {

inline constexpr uint32_t kPiecesMagic = 0x5343504E;  // bytes "NPCS"
inline constexpr uint32_t kPiecesVersion = 1;
inline constexpr uint32_t kPieceFlagPresent = 1;  // every other flag bit is reserved (zero)

struct __attribute__((packed)) PiecesFileHeader {
  uint32_t magic;
  uint32_t version;
  uint32_t piece_count;
  uint32_t piece_size;
};
static_assert(sizeof(PiecesFileHeader) == 16);
static_assert(offsetof(PiecesFileHeader, magic) == 0);
static_assert(offsetof(PiecesFileHeader, version) == 4);
static_assert(offsetof(PiecesFileHeader, piece_count) == 8);
static_assert(offsetof(PiecesFileHeader, piece_size) == 12);

struct __attribute__((packed)) PieceRecord {
  uint32_t crc32c;  // of the piece's bytes; meaningful only when present
  uint32_t flags;   // kPieceFlagPresent: the bytes are in `data`
};
static_assert(sizeof(PieceRecord) == 8);
static_assert(offsetof(PieceRecord, crc32c) == 0);
static_assert(offsetof(PieceRecord, flags) == 4);

constexpr uint64_t PieceRecordOffset(uint32_t n) {
  return sizeof(PiecesFileHeader) + uint64_t{n} * sizeof(PieceRecord);
}
constexpr uint64_t PiecesFileSize(uint32_t piece_count) { return PieceRecordOffset(piece_count); }

}  // namespace naiad::piece
