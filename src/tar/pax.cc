#include "tar/pax.h"

#include <limits>

#include "base/strings.h"

namespace naiad::tar {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::StatusOr<uint64_t> ParsePaxDecimal(std::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("empty number");
  uint64_t value = 0;
  for (char c : text) {
    if (!IsDigit(c)) return absl::InvalidArgumentError("not a decimal number");
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      return absl::InvalidArgumentError("number overflows");
    }
    value = value * 10 + digit;
  }
  return value;
}

absl::StatusOr<std::vector<PaxRecord>> ParsePaxRecords(std::string_view data) {
  std::vector<PaxRecord> records;
  size_t pos = 0;
  while (pos < data.size()) {
    std::string_view rest = data.substr(pos);
    if (rest.find_first_not_of('\0') == std::string_view::npos) break;  // padding
    size_t space = rest.find(' ');
    // 20 digits hold any size_t; a longer prefix is garbage, not a length.
    if (space == std::string_view::npos || space == 0 || space > 20) {
      return absl::InvalidArgumentError(StrCat("malformed PAX record at byte ", pos));
    }
    absl::StatusOr<uint64_t> length = ParsePaxDecimal(rest.substr(0, space));
    if (!length.ok() || *length <= space + 2 || *length > rest.size()) {
      return absl::InvalidArgumentError(StrCat("malformed PAX record length at byte ", pos));
    }
    std::string_view record = rest.substr(space + 1, *length - space - 1);
    if (record.back() != '\n') {
      return absl::InvalidArgumentError(StrCat("PAX record at byte ", pos, " lacks its newline"));
    }
    record.remove_suffix(1);
    size_t equals = record.find('=');
    if (equals == std::string_view::npos || equals == 0) {
      return absl::InvalidArgumentError(StrCat("PAX record at byte ", pos, " has no key"));
    }
    records.push_back(
        {std::string(record.substr(0, equals)), std::string(record.substr(equals + 1))});
    pos += *length;
  }
  return records;
}

absl::StatusOr<PaxTime> ParsePaxTime(std::string_view text) {
  bool negative = !text.empty() && text.front() == '-';
  if (negative) text.remove_prefix(1);
  size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view fraction = dot == std::string_view::npos ? "" : text.substr(dot + 1);
  absl::StatusOr<uint64_t> seconds = ParsePaxDecimal(whole);
  if (!seconds.ok() || *seconds > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError("invalid time");
  }
  uint32_t nanos = 0;
  for (size_t i = 0; i < fraction.size(); ++i) {
    if (!IsDigit(fraction[i])) return absl::InvalidArgumentError("invalid time");
    if (i < 9) nanos = nanos * 10 + static_cast<uint32_t>(fraction[i] - '0');
  }
  for (size_t i = fraction.size(); i < 9; ++i) nanos *= 10;
  PaxTime time{static_cast<int64_t>(*seconds), nanos};
  if (negative) {
    time.seconds = -time.seconds;
    if (time.nanoseconds != 0) {
      if (time.seconds == std::numeric_limits<int64_t>::min()) {
        return absl::InvalidArgumentError("invalid time");
      }
      time.seconds -= 1;
      time.nanoseconds = 1000000000 - time.nanoseconds;
    }
  }
  return time;
}

absl::StatusOr<std::string> PercentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return absl::InvalidArgumentError("truncated %-escape");
    int high = HexValue(text[i + 1]);
    int low = HexValue(text[i + 2]);
    if (high < 0 || low < 0) return absl::InvalidArgumentError("invalid %-escape");
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

}  // namespace naiad::tar
