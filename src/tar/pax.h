// File: tar/pax.h
//
// POSIX.1-2001 extended header records, the data of 'x' (next entry) and 'g' (all following
// entries) headers: a sequence of "<length> <key>=<value>\n", where <length> counts the whole
// record in decimal and values are raw bytes (they may hold '=', newlines or NULs). Internal to
// naiad::tar.
//
//   ASSIGN_OR_RETURN(std::vector<PaxRecord> records, ParsePaxRecords(data));
//   for (const PaxRecord& r : records) if (r.key == "mtime") ASSIGN_OR_RETURN(t,
//   ParsePaxTime(r.value));
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace naiad::tar {

struct PaxRecord {
  std::string key;
  std::string value;
};

// Parses every record, in order (order matters: GNU sparse 0.0 repeats keys). Trailing NUL
// padding after the last record is ignored. Errors are InvalidArgument without context.
absl::StatusOr<std::vector<PaxRecord>> ParsePaxRecords(std::string_view data);

// A non-negative decimal integer with no sign, spaces or fraction.
absl::StatusOr<uint64_t> ParsePaxDecimal(std::string_view text);

struct PaxTime {
  int64_t seconds = 0;
  uint32_t nanoseconds = 0;  // always in [0, 1e9): -1.25 is {-2, 750000000}
};
// "[-]<seconds>[.<fraction>]"; digits past nanoseconds are dropped.
absl::StatusOr<PaxTime> ParsePaxTime(std::string_view text);

// Decodes %XX escapes (libarchive escapes '%', '=' and non-printable bytes in the xattr names of
// LIBARCHIVE.xattr.<name> keys).
absl::StatusOr<std::string> PercentDecode(std::string_view text);

}  // namespace naiad::tar
