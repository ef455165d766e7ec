#include "tar/reader.h"

#include <algorithm>
#include <cstring>

#include "base/status_macros.h"
#include "base/strings.h"
#include "tar/block_source.h"
#include "tar/entry_decoder.h"
#include "tar/format.h"
#include "tar/path.h"
#include "tar/pax.h"

namespace naiad::tar {
namespace {

using format::kBlockSize;

constexpr size_t kMinBufferSize = size_t{64} << 10;

uint64_t PaddingAfter(uint64_t size) { return (kBlockSize - size % kBlockSize) % kBlockSize; }

std::string_view ExtensionName(char type) {
  switch (type) {
    case format::kTypeGnuLongName:
      return "GNU long name";
    case format::kTypeGnuLongLink:
      return "GNU long link name";
    case format::kTypePaxGlobal:
      return "PAX global header";
    default:
      return "PAX extended header";
  }
}

bool IsExtension(char type) {
  return type == format::kTypeGnuLongName || type == format::kTypeGnuLongLink ||
         type == format::kTypePaxLocal || type == format::kTypeSolarisPax ||
         type == format::kTypePaxGlobal;
}

std::string TrimTrailingNuls(std::string s) {
  size_t end = s.find_last_not_of('\0');
  s.resize(end == std::string::npos ? 0 : end + 1);
  return s;
}

}  // namespace

std::string_view EntryTypeName(EntryType type) {
  switch (type) {
    case EntryType::kRegular:
      return "regular";
    case EntryType::kDirectory:
      return "directory";
    case EntryType::kSymlink:
      return "symlink";
    case EntryType::kHardlink:
      return "hardlink";
    case EntryType::kCharDevice:
      return "char device";
    case EntryType::kBlockDevice:
      return "block device";
    case EntryType::kFifo:
      return "fifo";
  }
  return "unknown";
}

struct Reader::State {
  State(std::unique_ptr<InputStream> stream, const ReaderOptions& options)
      : source(std::move(stream), std::max(options.buffer_size, kMinBufferSize)),
        options(options) {}

  absl::StatusOr<std::optional<Entry>> Next();
  absl::StatusOr<size_t> Read(char* buf, size_t n);

  absl::Status SkipRest();
  absl::Status ReadExtension(const char* block, uint64_t offset, PendingMetadata* pending);
  absl::Status SkipVolumeLabel(const char* block, uint64_t offset);
  absl::Status FinishArchive(uint64_t zero_block_offset);
  absl::StatusOr<Entry> StartEntry(const char* block, uint64_t offset,
                                   const PendingMetadata& pending);
  absl::Status ReadGnuSparseExtensions(std::vector<SparseSegment>* map);
  absl::Status ReadSparseMap10(std::vector<SparseSegment>* map);
  absl::StatusOr<size_t> ReadStored(char* buf, size_t n);
  absl::StatusOr<size_t> ReadSparse(char* buf, size_t n);
  // Moves `segment` to the first segment not wholly before logical_pos; returns where the hole
  // at logical_pos ends (logical_pos itself when the next byte is data).
  uint64_t HoleEnd();
  // `missing` counts to the end of the entry's last block, padding included.
  absl::Status Truncated(uint64_t missing) const {
    return absl::DataLossError(StrCat("truncated tar: entry ", QuoteForMessage(raw_path),
                                      " at offset ", header_offset, " wants ", missing,
                                      " more bytes"));
  }

  BlockSource source;
  const ReaderOptions options;
  PaxAttributes globals;
  absl::Status status;  // the first error; every later call returns it
  bool at_end = false;

  // The current entry.
  bool in_entry = false;
  std::string raw_path;
  uint64_t header_offset = 0;
  bool has_content = false;
  uint64_t stored_remaining = 0;  // data bytes not yet consumed
  uint64_t padding_remaining = 0;
  bool sparse = false;
  std::vector<SparseSegment> map;
  size_t segment = 0;  // first segment not wholly before logical_pos
  uint64_t logical_pos = 0;
  uint64_t logical_size = 0;
  uint64_t hole_bytes_read = 0;  // zeros Read() made up for holes, the whole archive
};

absl::StatusOr<std::optional<Entry>> Reader::State::Next() {
  RETURN_IF_ERROR(SkipRest());
  PendingMetadata pending;
  for (;;) {
    const uint64_t offset = source.offset();
    alignas(8) char block[kBlockSize];
    ASSIGN_OR_RETURN(size_t got, source.ReadFull(block, kBlockSize));
    if (got == 0 && pending.empty()) {
      at_end = true;  // the stream ends at an entry boundary without the zero blocks
      return std::nullopt;
    }
    if (got < kBlockSize) {
      return absl::DataLossError(StrCat("truncated tar: header at offset ", offset, " wants ",
                                        kBlockSize - got, " more bytes"));
    }
    if (format::IsZeroBlock(block)) {
      if (!pending.empty()) {
        return HeaderError(absl::StatusCode::kDataLoss, offset,
                           "end-of-archive block right after an extended header");
      }
      RETURN_IF_ERROR(FinishArchive(offset));
      at_end = true;
      return std::nullopt;
    }
    if (!format::ChecksumMatches(block)) {
      return HeaderError(absl::StatusCode::kDataLoss, offset, "checksum mismatch");
    }
    const char type = block[offsetof(format::UstarHeader, typeflag)];
    if (IsExtension(type)) {
      RETURN_IF_ERROR(ReadExtension(block, offset, &pending));
    } else if (type == format::kTypeGnuVolume) {
      RETURN_IF_ERROR(SkipVolumeLabel(block, offset));
    } else {
      ASSIGN_OR_RETURN(Entry entry, StartEntry(block, offset, pending));
      return entry;
    }
  }
}

absl::Status Reader::State::SkipRest() {
  if (!in_entry) return absl::OkStatus();
  const uint64_t want = stored_remaining + padding_remaining;
  ASSIGN_OR_RETURN(uint64_t skipped, source.Skip(want));
  if (skipped < want) return Truncated(want - skipped);
  in_entry = false;
  stored_remaining = padding_remaining = 0;
  map.clear();
  return absl::OkStatus();
}

absl::Status Reader::State::ReadExtension(const char* block, uint64_t offset,
                                          PendingMetadata* pending) {
  const auto& h = *reinterpret_cast<const format::UstarHeader*>(block);
  const std::string_view kind = ExtensionName(h.typeflag);
  absl::StatusOr<uint64_t> size = format::ParseUnsigned(std::string_view(h.size, sizeof(h.size)));
  if (!size.ok()) {
    return HeaderError(absl::StatusCode::kInvalidArgument, offset,
                       StrCat(kind, ": invalid size field: ", size.status().message()));
  }
  if (*size > kMaxExtensionHeaderSize) {
    return HeaderError(absl::StatusCode::kInvalidArgument, offset,
                       StrCat(kind, " of ", *size, " bytes exceeds the limit of ",
                              kMaxExtensionHeaderSize, " bytes"));
  }
  if (h.typeflag != format::kTypePaxGlobal) {
    pending->bytes += *size;
    if (pending->bytes > kMaxPendingMetadata) {
      return HeaderError(
          absl::StatusCode::kInvalidArgument, offset,
          StrCat("extension headers of one entry exceed ", kMaxPendingMetadata, " bytes"));
    }
  }
  std::string data(*size, '\0');
  const uint64_t want = *size + PaddingAfter(*size);
  ASSIGN_OR_RETURN(size_t got, source.ReadFull(data.data(), data.size()));
  ASSIGN_OR_RETURN(uint64_t skipped, source.Skip(want - *size));
  if (got + skipped < want) {
    return absl::DataLossError(StrCat("truncated tar: ", kind, " at offset ", offset, " wants ",
                                      want - got - skipped, " more bytes"));
  }
  if (h.typeflag == format::kTypeGnuLongName) {
    pending->long_name = TrimTrailingNuls(std::move(data));
    return absl::OkStatus();
  }
  if (h.typeflag == format::kTypeGnuLongLink) {
    pending->long_link = TrimTrailingNuls(std::move(data));
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<PaxRecord>> records = ParsePaxRecords(data);
  absl::Status status = records.status();
  if (status.ok()) {
    const bool global = h.typeflag == format::kTypePaxGlobal;
    if (!global && !pending->pax) pending->pax = globals;
    status = ApplyPaxRecords(*records, global, global ? &globals : &*pending->pax);
  }
  if (!status.ok()) {
    return HeaderError(absl::StatusCode::kInvalidArgument, offset,
                       StrCat(kind, ": ", status.message()));
  }
  return absl::OkStatus();
}

absl::Status Reader::State::SkipVolumeLabel(const char* block, uint64_t offset) {
  const auto& h = *reinterpret_cast<const format::UstarHeader*>(block);
  absl::StatusOr<uint64_t> size = format::ParseUnsigned(std::string_view(h.size, sizeof(h.size)));
  if (!size.ok() || *size > options.max_entry_size) {
    return HeaderError(absl::StatusCode::kInvalidArgument, offset, "invalid volume label size");
  }
  const uint64_t want = *size + PaddingAfter(*size);
  ASSIGN_OR_RETURN(uint64_t skipped, source.Skip(want));
  if (skipped < want) {
    return absl::DataLossError(StrCat("truncated tar: volume label at offset ", offset, " wants ",
                                      want - skipped, " more bytes"));
  }
  return absl::OkStatus();
}

absl::Status Reader::State::FinishArchive(uint64_t zero_block_offset) {
  alignas(8) char block[kBlockSize];
  ASSIGN_OR_RETURN(size_t got, source.ReadFull(block, kBlockSize));
  if (std::all_of(block, block + got, [](char c) { return c == '\0'; })) return absl::OkStatus();
  return HeaderError(absl::StatusCode::kDataLoss, zero_block_offset + kBlockSize,
                     "data after a single zero block (readers disagree on whether the archive "
                     "ends there)");
}

absl::StatusOr<Entry> Reader::State::StartEntry(const char* block, uint64_t offset,
                                                const PendingMetadata& pending) {
  ASSIGN_OR_RETURN(DecodedHeader d, DecodeHeader(block, offset, pending, globals, options));
  in_entry = true;
  raw_path = std::move(d.raw_path);
  header_offset = offset;
  has_content = d.has_content;
  stored_remaining = d.stored_size;
  padding_remaining = PaddingAfter(d.stored_size);
  sparse = d.sparse != SparseFormat::kNone;
  if (!sparse) return std::move(d.entry);

  if (d.sparse == SparseFormat::kOldGnu && d.gnu_extended) {
    RETURN_IF_ERROR(ReadGnuSparseExtensions(&d.map));
  } else if (d.sparse == SparseFormat::kPax10) {
    RETURN_IF_ERROR(ReadSparseMap10(&d.map));
  }
  absl::Status valid = ValidateSparseMap(d.map, d.entry.size, stored_remaining);
  if (!valid.ok()) {
    return EntryError(absl::StatusCode::kInvalidArgument, raw_path, offset, ToStd(valid.message()));
  }
  map = std::move(d.map);
  segment = 0;
  logical_pos = 0;
  logical_size = d.entry.size;
  return std::move(d.entry);
}

absl::Status Reader::State::ReadGnuSparseExtensions(std::vector<SparseSegment>* segments) {
  constexpr size_t kFieldsPerBlock = std::size(format::GnuSparseExtension{}.sparse);
  // Every block but the last adds segments, so more blocks than this break the segment limit.
  constexpr size_t kMaxBlocks = kMaxSparseSegments / kFieldsPerBlock + 2;
  for (size_t blocks = 1;; ++blocks) {
    format::GnuSparseExtension ext;
    ASSIGN_OR_RETURN(size_t got, source.ReadFull(reinterpret_cast<char*>(&ext), kBlockSize));
    if (got < kBlockSize) return Truncated(stored_remaining + padding_remaining + kBlockSize - got);
    absl::Status status = AppendGnuSparseFields(ext.sparse, kFieldsPerBlock, segments);
    if (status.ok() && blocks > kMaxBlocks) {
      status = absl::InvalidArgumentError("too many GNU sparse extension blocks");
    }
    if (!status.ok()) {
      return EntryError(absl::StatusCode::kInvalidArgument, raw_path, header_offset,
                        ToStd(status.message()));
    }
    if (ext.isextended == 0) return absl::OkStatus();
  }
}

absl::Status Reader::State::ReadSparseMap10(std::vector<SparseSegment>* segments) {
  SparseMapParser parser(stored_remaining);
  while (!parser.done()) {
    absl::Status status;
    if (stored_remaining < kBlockSize) {
      status = absl::InvalidArgumentError("sparse map (format 1.0) runs past the entry's data");
    } else {
      alignas(8) char block[kBlockSize];
      ASSIGN_OR_RETURN(size_t got, source.ReadFull(block, kBlockSize));
      if (got < kBlockSize) return Truncated(stored_remaining + padding_remaining - got);
      stored_remaining -= kBlockSize;
      status = parser.Feed(std::string_view(block, kBlockSize));
    }
    if (!status.ok()) {
      return EntryError(absl::StatusCode::kInvalidArgument, raw_path, header_offset,
                        ToStd(status.message()));
    }
  }
  *segments = std::move(parser.map());
  return absl::OkStatus();
}

absl::StatusOr<size_t> Reader::State::Read(char* buf, size_t n) {
  if (!in_entry || !has_content) return 0;
  return sparse ? ReadSparse(buf, n) : ReadStored(buf, n);
}

absl::StatusOr<size_t> Reader::State::ReadStored(char* buf, size_t n) {
  const size_t want = static_cast<size_t>(std::min<uint64_t>(n, stored_remaining));
  if (want == 0) return 0;
  ASSIGN_OR_RETURN(size_t got, source.ReadSome(buf, want));
  if (got == 0) return Truncated(stored_remaining + padding_remaining);
  stored_remaining -= got;
  return got;
}

uint64_t Reader::State::HoleEnd() {
  while (segment < map.size() && map[segment].offset + map[segment].length <= logical_pos) {
    ++segment;
  }
  // Past the last segment, or before the next one: a hole.
  uint64_t hole_end = segment < map.size() ? map[segment].offset : logical_size;
  return std::max(hole_end, logical_pos);
}

absl::StatusOr<size_t> Reader::State::ReadSparse(char* buf, size_t n) {
  if (logical_pos >= logical_size || n == 0) return 0;
  uint64_t hole_end = HoleEnd();
  if (logical_pos < hole_end) {
    const size_t zeros = static_cast<size_t>(std::min<uint64_t>(n, hole_end - logical_pos));
    if (zeros > options.max_hole_bytes_read - hole_bytes_read) {  // never more than the budget
      return EntryError(
          absl::StatusCode::kInvalidArgument, raw_path, header_offset,
          StrCat("holes of sparse entries read as more than ", options.max_hole_bytes_read,
                 " bytes of zeros (ReaderOptions::max_hole_bytes_read)"));
    }
    hole_bytes_read += zeros;
    std::memset(buf, 0, zeros);
    logical_pos += zeros;
    return zeros;
  }
  const uint64_t segment_end = map[segment].offset + map[segment].length;
  ASSIGN_OR_RETURN(size_t got, ReadStored(buf, std::min<uint64_t>(n, segment_end - logical_pos)));
  logical_pos += got;
  return got;
}

Reader::Reader(std::unique_ptr<State> state) : state_(std::move(state)) {}
Reader::~Reader() = default;

absl::StatusOr<std::unique_ptr<Reader>> Reader::Create(std::unique_ptr<InputStream> stream,
                                                       ReaderOptions options) {
  return std::unique_ptr<Reader>(new Reader(std::make_unique<State>(std::move(stream), options)));
}

absl::StatusOr<std::optional<Entry>> Reader::Next() {
  State& s = *state_;
  if (!s.status.ok()) return s.status;
  if (s.at_end) return std::nullopt;
  absl::StatusOr<std::optional<Entry>> entry = s.Next();
  if (!entry.ok()) s.status = entry.status();
  return entry;
}

absl::StatusOr<size_t> Reader::Read(char* buf, size_t n) {
  State& s = *state_;
  if (!s.status.ok()) return s.status;
  absl::StatusOr<size_t> got = s.Read(buf, n);
  if (!got.ok()) s.status = got.status();
  return got;
}

uint64_t Reader::HoleAhead() const {
  State& s = *state_;
  if (!s.status.ok() || !s.in_entry || !s.has_content || !s.sparse) return 0;
  return s.HoleEnd() - s.logical_pos;
}

absl::Status Reader::SkipHole(uint64_t n) {
  State& s = *state_;
  if (!s.status.ok()) return s.status;
  if (n == 0) return absl::OkStatus();
  uint64_t hole = HoleAhead();
  if (n > hole) {
    return absl::InvalidArgumentError(
        StrCat("cannot skip ", n, " bytes of hole at offset ", s.logical_pos, " of tar entry ",
               QuoteForMessage(s.raw_path), ": the hole there is ", hole, " bytes"));
  }
  s.logical_pos += n;
  return absl::OkStatus();
}

uint64_t Reader::offset() const { return state_->source.offset(); }

}  // namespace naiad::tar
