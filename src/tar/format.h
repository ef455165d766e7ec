// File: tar/format.h
//
// The on-disk tar header block in its three dialects, and the decoding of its fields. Internal to
// naiad::tar (the reader and its tests); callers use tar/reader.h.
//
//   V7     pre-POSIX: name, mode, ids, size, mtime, checksum, typeflag, linkname; no magic.
//   ustar  POSIX.1-1988 (magic "ustar\0", version "00"): adds uname/gname, device numbers and a
//          155-byte name prefix. POSIX.1-2001 "pax" is ustar plus 'x'/'g' extended headers.
//   GNU    magic "ustar  \0": the prefix area holds atime/ctime and the old sparse map instead.
//
// Numeric fields are octal ASCII, optionally padded with spaces/NULs; GNU and star extend them
// with base-256: a first byte with the high bit set makes the field a big-endian two's-complement
// number (0x80 = positive, 0xff = negative), which is how sizes >= 8 GiB and ids >= 2^21 are
// written without PAX.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace naiad::tar::format {

inline constexpr size_t kBlockSize = 512;

// Type flags (the byte at offset 156).
inline constexpr char kTypeRegular = '0';
inline constexpr char kTypeRegularV7 = '\0';
inline constexpr char kTypeHardlink = '1';
inline constexpr char kTypeSymlink = '2';
inline constexpr char kTypeCharDevice = '3';
inline constexpr char kTypeBlockDevice = '4';
inline constexpr char kTypeDirectory = '5';
inline constexpr char kTypeFifo = '6';
inline constexpr char kTypeContiguous = '7';  // a regular file everywhere but on old Masscomp
inline constexpr char kTypePaxLocal = 'x';
inline constexpr char kTypePaxGlobal = 'g';
inline constexpr char kTypeSolarisPax = 'X';  // pre-POSIX Solaris spelling of 'x'
inline constexpr char kTypeGnuLongName = 'L';
inline constexpr char kTypeGnuLongLink = 'K';
inline constexpr char kTypeGnuSparse = 'S';
inline constexpr char kTypeGnuVolume = 'V';
inline constexpr char kTypeGnuDumpDir = 'D';  // a directory followed by a listing we ignore

struct UstarHeader {
  char name[100];
  char mode[8];
  char uid[8];
  char gid[8];
  char size[12];
  char mtime[12];
  char chksum[8];
  char typeflag;
  char linkname[100];
  char magic[6];
  char version[2];
  char uname[32];
  char gname[32];
  char devmajor[8];
  char devminor[8];
  char prefix[155];
  char pad[12];
};
static_assert(sizeof(UstarHeader) == kBlockSize);
static_assert(offsetof(UstarHeader, chksum) == 148);
static_assert(offsetof(UstarHeader, typeflag) == 156);
static_assert(offsetof(UstarHeader, magic) == 257);
static_assert(offsetof(UstarHeader, devmajor) == 329);
static_assert(offsetof(UstarHeader, prefix) == 345);

struct GnuSparseField {
  char offset[12];
  char numbytes[12];
};
static_assert(sizeof(GnuSparseField) == 24);

// GNU's header: identical to ustar up to gname and the device numbers.
struct GnuHeader {
  char name[100];
  char mode[8];
  char uid[8];
  char gid[8];
  char size[12];
  char mtime[12];
  char chksum[8];
  char typeflag;
  char linkname[100];
  char magic[8];  // "ustar  \0": magic and version run together
  char uname[32];
  char gname[32];
  char devmajor[8];
  char devminor[8];
  char atime[12];
  char ctime[12];
  char offset[12];
  char longnames[4];
  char unused;
  GnuSparseField sparse[4];
  char isextended;
  char realsize[12];
  char pad[17];
};
static_assert(sizeof(GnuHeader) == kBlockSize);
static_assert(offsetof(GnuHeader, atime) == 345);
static_assert(offsetof(GnuHeader, sparse) == 386);
static_assert(offsetof(GnuHeader, isextended) == 482);
static_assert(offsetof(GnuHeader, realsize) == 483);

// The block(s) following an 'S' header whose isextended is set.
struct GnuSparseExtension {
  GnuSparseField sparse[21];
  char isextended;
  char pad[7];
};
static_assert(sizeof(GnuSparseExtension) == kBlockSize);
static_assert(offsetof(GnuSparseExtension, isextended) == 504);

enum class Dialect { kV7, kUstar, kGnu };

Dialect DetectDialect(const UstarHeader& header);

bool IsZeroBlock(const char* block);

// The header checksum as writers compute it: the unsigned sum of the block's bytes with the
// checksum field counted as spaces.
uint32_t HeaderChecksum(const char* block);

// True if the stored checksum matches the sum of the block's bytes, taken as unsigned or (as some
// historic tars computed it) signed chars, with the checksum field itself counted as spaces.
bool ChecksumMatches(const char* block);

// A fixed-width string field: the bytes up to the first NUL, or all of them.
std::string_view FieldString(const char* field, size_t size);
template <size_t N>
std::string_view FieldString(const char (&field)[N]) {
  return FieldString(field, N);
}

// A numeric field, octal or base-256. Blank fields (all spaces/NULs) are 0. InvalidArgument,
// without context (the caller names the field and entry), for anything else.
absl::StatusOr<int64_t> ParseSigned(std::string_view field);
// As ParseSigned(), but a negative value is InvalidArgument.
absl::StatusOr<uint64_t> ParseUnsigned(std::string_view field);
template <size_t N>
absl::StatusOr<uint64_t> ParseUnsigned(const char (&field)[N]) {
  return ParseUnsigned(std::string_view(field, N));
}

}  // namespace naiad::tar::format
