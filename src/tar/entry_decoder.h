// File: tar/entry_decoder.h
//
// Turns one header block, and the extension headers that preceded it, into an Entry: picks the
// name and link from PAX / GNU long names / ustar prefix+name, decodes the numeric fields, maps
// the type flag, and applies the path rules. The parts that need the stream (old GNU sparse
// extension blocks, the 1.0 sparse map in the data) are left to the reader. Internal to
// naiad::tar.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tar/pax_attributes.h"
#include "tar/reader.h"
#include "tar/sparse.h"

namespace naiad::tar {

// Largest extension header ('x', 'g', 'L', 'K') accepted, and the most metadata retained for one
// entry across all of them.
inline constexpr uint64_t kMaxExtensionHeaderSize = uint64_t{1} << 20;
inline constexpr uint64_t kMaxPendingMetadata = uint64_t{4} << 20;

// What the extension headers before an entry said.
struct PendingMetadata {
  std::optional<std::string> long_name;  // GNU 'L'
  std::optional<std::string> long_link;  // GNU 'K'
  std::optional<PaxAttributes> pax;      // globals plus the 'x' records; unset without 'x'
  uint64_t bytes = 0;                    // extension data read for this entry

  bool empty() const { return !long_name && !long_link && !pax; }
};

enum class SparseFormat {
  kNone,
  kOldGnu,     // 'S': map in the header and extension blocks after it
  kPaxInline,  // PAX 0.0 / 0.1: `map` is complete
  kPax10,      // PAX 1.0: map at the start of the data
};

struct DecodedHeader {
  Entry entry;
  std::string raw_path;      // as stored, for messages
  uint64_t stored_size = 0;  // data bytes after the header (the 1.0 map included)
  bool has_content = false;  // the data is the entry's content (regular files)
  SparseFormat sparse = SparseFormat::kNone;
  std::vector<SparseSegment> map;  // kOldGnu: the header's first four segments
  bool gnu_extended = false;       // kOldGnu: extension blocks follow
};

// `block` passed its checksum; `offset` is its position in the tar stream.
absl::StatusOr<DecodedHeader> DecodeHeader(const char* block, uint64_t offset,
                                           const PendingMetadata& pending,
                                           const PaxAttributes& globals,
                                           const ReaderOptions& options);

// Appends the segments of old GNU sparse fields (stopping at the first empty one) to `map`.
// Returns InvalidArgument (no context) for unparsable fields or too many segments.
absl::Status AppendGnuSparseFields(const void* fields, size_t count,
                                   std::vector<SparseSegment>* map);

// "tar entry "<raw path>" at offset N: <reason>" with `code`.
absl::Status EntryError(absl::StatusCode code, std::string_view raw_path, uint64_t offset,
                        std::string_view reason);
// "tar header at offset N: <reason>" with `code`.
absl::Status HeaderError(absl::StatusCode code, uint64_t offset, std::string_view reason);

}  // namespace naiad::tar
