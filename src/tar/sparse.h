// File: tar/sparse.h
//
// GNU sparse-file maps. A sparse entry stores only its data segments, back to back; the map says
// where each lands in the file, and everything between is a hole that reads as zeros. Four
// encodings carry the map: the old GNU header ('S', with extension blocks), and the PAX formats
// 0.0 (repeated GNU.sparse.offset/numbytes), 0.1 (GNU.sparse.map) and 1.0 (decimal lines at the
// start of the entry's data, padded to a block). Internal to naiad::tar.
//
//   ASSIGN_OR_RETURN(auto map, ParseSparseMapList("0,4096,1048576,512"));
//   RETURN_IF_ERROR(ValidateSparseMap(map, real_size, stored_size));
//
//   SparseMapParser parser(stored_size);          // format 1.0, fed block by block
//   while (!parser.done()) RETURN_IF_ERROR(parser.Feed(NextBlock()));
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace naiad::tar {

// Bounds the map's memory (16 bytes a segment): more segments than this is not a real file.
inline constexpr size_t kMaxSparseSegments = size_t{1} << 20;

struct SparseSegment {
  uint64_t offset = 0;  // in the logical file
  uint64_t length = 0;
  friend bool operator==(const SparseSegment&, const SparseSegment&) = default;
};

// Checks that segments are sorted, do not overlap, end within `real_size`, number at most
// kMaxSparseSegments, and that their lengths add up to `stored_size`, the data the entry holds.
// InvalidArgument with the reason otherwise.
absl::Status ValidateSparseMap(const std::vector<SparseSegment>& map, uint64_t real_size,
                               uint64_t stored_size);

// Format 0.1: "offset,length,offset,length,...". Format 0.0's list of numbers converts with
// SparseMapFromPairs().
absl::StatusOr<std::vector<SparseSegment>> ParseSparseMapList(std::string_view text);
absl::StatusOr<std::vector<SparseSegment>> SparseMapFromPairs(const std::vector<uint64_t>& pairs);

// Format 1.0: "<count>\n" then <count> pairs of "<offset>\n<length>\n", at the start of the data,
// zero-padded to a block boundary. Feed whole blocks until done(); the map never holds more
// numbers than fit in `stored_size` bytes, so a lying count cannot make it allocate.
class SparseMapParser {
 public:
  explicit SparseMapParser(uint64_t stored_size) : stored_size_(stored_size) {}

  absl::Status Feed(std::string_view block);
  bool done() const { return done_; }
  std::vector<SparseSegment>& map() { return map_; }

 private:
  absl::Status EndNumber();

  uint64_t stored_size_;
  uint64_t count_ = 0;         // segments announced
  uint64_t numbers_seen_ = 0;  // numbers completed, the count included
  uint64_t value_ = 0;         // number being parsed
  size_t digits_ = 0;
  bool done_ = false;
  std::vector<SparseSegment> map_;
};

}  // namespace naiad::tar
