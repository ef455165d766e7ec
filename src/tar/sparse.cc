#include "tar/sparse.h"

#include <limits>

#include "base/status_macros.h"
#include "base/strings.h"
#include "tar/pax.h"

namespace naiad::tar {
namespace {

constexpr size_t kMaxDigits = 20;  // any uint64_t

}  // namespace

absl::Status ValidateSparseMap(const std::vector<SparseSegment>& map, uint64_t real_size,
                               uint64_t stored_size) {
  if (map.size() > kMaxSparseSegments) {
    return absl::InvalidArgumentError(
        StrCat("sparse map has ", map.size(), " segments, over the limit of ", kMaxSparseSegments));
  }
  uint64_t previous_end = 0;
  uint64_t total = 0;
  for (size_t i = 0; i < map.size(); ++i) {
    const SparseSegment& s = map[i];
    if (s.offset < previous_end) {
      return absl::InvalidArgumentError(
          StrCat("sparse segment ", i, " at offset ", s.offset,
                 " overlaps or precedes the previous segment ending at ", previous_end));
    }
    if (s.length > real_size || s.offset > real_size - s.length) {
      return absl::InvalidArgumentError(StrCat("sparse segment ", i, " (offset ", s.offset,
                                               ", length ", s.length, ") ends past the file size ",
                                               real_size));
    }
    previous_end = s.offset + s.length;
    total += s.length;  // <= real_size: segments are disjoint and inside the file
  }
  if (total != stored_size) {
    return absl::InvalidArgumentError(
        StrCat("sparse map covers ", total, " bytes of data but the entry stores ", stored_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SparseSegment>> SparseMapFromPairs(const std::vector<uint64_t>& pairs) {
  if (pairs.size() % 2 != 0) {
    return absl::InvalidArgumentError("sparse map has an offset without a length");
  }
  if (pairs.size() / 2 > kMaxSparseSegments) {
    return absl::InvalidArgumentError(
        StrCat("sparse map has more than ", kMaxSparseSegments, " segments"));
  }
  std::vector<SparseSegment> map;
  map.reserve(pairs.size() / 2);
  for (size_t i = 0; i + 1 < pairs.size(); i += 2) map.push_back({pairs[i], pairs[i + 1]});
  return map;
}

absl::StatusOr<std::vector<SparseSegment>> ParseSparseMapList(std::string_view text) {
  std::vector<uint64_t> numbers;
  if (text.empty()) return std::vector<SparseSegment>{};
  size_t pos = 0;
  for (;;) {
    size_t comma = text.find(',', pos);
    std::string_view item =
        text.substr(pos, comma == std::string_view::npos ? text.npos : comma - pos);
    absl::StatusOr<uint64_t> value = ParsePaxDecimal(item);
    if (!value.ok()) return absl::InvalidArgumentError("malformed GNU.sparse.map");
    if (numbers.size() >= 2 * kMaxSparseSegments) {
      return absl::InvalidArgumentError(
          StrCat("sparse map has more than ", kMaxSparseSegments, " segments"));
    }
    numbers.push_back(*value);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return SparseMapFromPairs(numbers);
}

absl::Status SparseMapParser::Feed(std::string_view block) {
  for (char c : block) {
    if (done_) return absl::OkStatus();  // the rest is padding
    if (c == '\n') {
      RETURN_IF_ERROR(EndNumber());
      continue;
    }
    if (c < '0' || c > '9') {
      return absl::InvalidArgumentError("malformed sparse map (format 1.0) in the entry data");
    }
    if (++digits_ > kMaxDigits) {
      return absl::InvalidArgumentError("sparse map (format 1.0) number too long");
    }
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value_ > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      return absl::InvalidArgumentError("sparse map (format 1.0) number overflows");
    }
    value_ = value_ * 10 + digit;
  }
  return absl::OkStatus();
}

absl::Status SparseMapParser::EndNumber() {
  if (digits_ == 0) return absl::InvalidArgumentError("sparse map (format 1.0) has an empty line");
  uint64_t value = value_;
  value_ = 0;
  digits_ = 0;
  if (numbers_seen_++ == 0) {
    // Each number takes at least two bytes ("0\n") of the stored data.
    if (value > kMaxSparseSegments || value > stored_size_ / 4) {
      return absl::InvalidArgumentError(StrCat("sparse map (format 1.0) announces ", value,
                                               " segments; the limit is ", kMaxSparseSegments,
                                               " and the entry stores ", stored_size_, " bytes"));
    }
    count_ = value;
  } else if (numbers_seen_ % 2 == 0) {
    map_.push_back({value, 0});
  } else {
    map_.back().length = value;
  }
  done_ = numbers_seen_ == 2 * count_ + 1;
  return absl::OkStatus();
}

}  // namespace naiad::tar
