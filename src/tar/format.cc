#include "tar/format.h"

#include <cstring>
#include <limits>

#include "absl/strings/escaping.h"
#include "base/strings.h"

namespace naiad::tar::format {
namespace {

bool IsBlank(char c) { return c == ' ' || c == '\0'; }

absl::StatusOr<int64_t> ParseBase256(std::string_view field) {
  // Bit 7 of the first byte marks the encoding; bit 6 is then the sign of a two's-complement
  // number made of the remaining 7 bits and the following bytes.
  const bool negative = (static_cast<unsigned char>(field[0]) & 0x40) != 0;
  uint64_t magnitude = 0;  // of the value when positive, of -value - 1 when negative
  for (size_t i = 0; i < field.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(field[i]);
    if (negative) c = static_cast<unsigned char>(~c);
    if (i == 0) c &= 0x7f;
    if (magnitude >> 55 != 0) return absl::InvalidArgumentError("base-256 number overflows");
    magnitude = (magnitude << 8) | c;
  }
  if (magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError("base-256 number overflows");
  }
  int64_t value = static_cast<int64_t>(magnitude);
  return negative ? -value - 1 : value;
}

absl::StatusOr<int64_t> ParseOctal(std::string_view field) {
  size_t i = 0;
  while (i < field.size() && IsBlank(field[i])) ++i;
  uint64_t value = 0;
  size_t digits = 0;
  for (; i < field.size() && field[i] >= '0' && field[i] <= '7'; ++i, ++digits) {
    if (value >> 60 != 0) return absl::InvalidArgumentError("octal number overflows");
    value = value * 8 + static_cast<uint64_t>(field[i] - '0');
  }
  // Like GNU tar, look only at the byte after the digits: it must end the number. What follows
  // a terminator is ignored (historic tars left garbage there).
  if (i < field.size() && !IsBlank(field[i])) {
    return absl::InvalidArgumentError(
        StrCat("invalid octal number \"", absl::CEscape(ToAbsl(field)), "\""));
  }
  if (digits == 0) return 0;
  if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError("octal number overflows");
  }
  return static_cast<int64_t>(value);
}

}  // namespace

Dialect DetectDialect(const UstarHeader& header) {
  if (std::memcmp(header.magic, "ustar  \0", 8) == 0) return Dialect::kGnu;
  if (std::memcmp(header.magic, "ustar\0", 6) == 0) return Dialect::kUstar;
  // Some writers put "ustar" followed by a space or other version bytes; the magic alone decides.
  if (std::memcmp(header.magic, "ustar", 5) == 0) return Dialect::kUstar;
  return Dialect::kV7;
}

bool IsZeroBlock(const char* block) {
  static constexpr char kZeros[kBlockSize] = {};
  return std::memcmp(block, kZeros, kBlockSize) == 0;
}

uint32_t HeaderChecksum(const char* block) {
  constexpr size_t kBegin = offsetof(UstarHeader, chksum);
  constexpr size_t kEnd = kBegin + sizeof(UstarHeader::chksum);
  uint32_t sum = 0;
  for (size_t i = 0; i < kBlockSize; ++i) {
    sum += (i >= kBegin && i < kEnd) ? ' ' : static_cast<unsigned char>(block[i]);
  }
  return sum;
}

bool ChecksumMatches(const char* block) {
  constexpr size_t kBegin = offsetof(UstarHeader, chksum);
  constexpr size_t kEnd = kBegin + sizeof(UstarHeader::chksum);
  int64_t unsigned_sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < kBlockSize; ++i) {
    char c = (i >= kBegin && i < kEnd) ? ' ' : block[i];
    unsigned_sum += static_cast<unsigned char>(c);
    signed_sum += static_cast<signed char>(c);
  }
  auto stored = ParseOctal(std::string_view(block + kBegin, kEnd - kBegin));
  return stored.ok() && (*stored == unsigned_sum || *stored == signed_sum);
}

std::string_view FieldString(const char* field, size_t size) {
  const void* nul = std::memchr(field, '\0', size);
  return {field,
          nul == nullptr ? size : static_cast<size_t>(static_cast<const char*>(nul) - field)};
}

absl::StatusOr<int64_t> ParseSigned(std::string_view field) {
  if (!field.empty() && (static_cast<unsigned char>(field[0]) & 0x80) != 0) {
    return ParseBase256(field);
  }
  return ParseOctal(field);
}

absl::StatusOr<uint64_t> ParseUnsigned(std::string_view field) {
  absl::StatusOr<int64_t> value = ParseSigned(field);
  if (!value.ok()) return value.status();
  if (*value < 0) return absl::InvalidArgumentError(StrCat("negative number ", *value));
  return static_cast<uint64_t>(*value);
}

}  // namespace naiad::tar::format
