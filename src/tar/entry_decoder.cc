#include "tar/entry_decoder.h"

#include <limits>

#include "base/status_macros.h"
#include "base/strings.h"
#include "tar/format.h"
#include "tar/path.h"

namespace naiad::tar {
namespace {

using format::Dialect;

// The name as stored: PAX path, else GNU long name, else ustar prefix + name.
std::string RawPath(const format::UstarHeader& h, Dialect dialect, const PendingMetadata& pending,
                    const PaxAttributes& pax) {
  if (pax.path) return *pax.path;
  if (pending.long_name) return *pending.long_name;
  std::string_view name = format::FieldString(h.name);
  std::string_view prefix = format::FieldString(h.prefix);
  if (dialect == Dialect::kUstar && !prefix.empty()) return StrCat(prefix, "/", name);
  return std::string(name);
}

std::string RawLink(const format::UstarHeader& h, const PendingMetadata& pending,
                    const PaxAttributes& pax) {
  if (pax.linkpath) return *pax.linkpath;
  if (pending.long_link) return *pending.long_link;
  return std::string(format::FieldString(h.linkname));
}

// Decodes one header block into a DecodedHeader; Fail() turns a reason into the entry's error.
class Decoder {
 public:
  Decoder(const char* block, uint64_t offset, const PendingMetadata& pending,
          const PaxAttributes& globals, const ReaderOptions& options)
      : h_(*reinterpret_cast<const format::UstarHeader*>(block)),
        gnu_(*reinterpret_cast<const format::GnuHeader*>(block)),
        dialect_(format::DetectDialect(h_)),
        offset_(offset),
        pending_(pending),
        pax_(pending.pax ? *pending.pax : globals),
        options_(options) {}

  absl::StatusOr<DecodedHeader> Decode() {
    d_.raw_path = RawPath(h_, dialect_, pending_, pax_);
    if (pax_.sparse_name && pax_.HasSparse()) d_.raw_path = *pax_.sparse_name;
    d_.entry.header_offset = offset_;
    RETURN_IF_ERROR(DecodeType());
    RETURN_IF_ERROR(DecodeNumbers());
    RETURN_IF_ERROR(DecodeSparse());
    RETURN_IF_ERROR(DecodePaths());
    d_.entry.xattrs = pax_.xattrs;
    return std::move(d_);
  }

 private:
  absl::Status Fail(absl::string_view reason) const {
    return EntryError(absl::StatusCode::kInvalidArgument, d_.raw_path, offset_, ToStd(reason));
  }

  absl::StatusOr<uint64_t> Unsigned(std::string_view name, std::string_view field) const {
    absl::StatusOr<uint64_t> value = format::ParseUnsigned(field);
    if (!value.ok()) return Fail(StrCat("invalid ", name, " field: ", value.status().message()));
    return value;
  }

  absl::StatusOr<uint32_t> Unsigned32(std::string_view name, std::string_view field) const {
    ASSIGN_OR_RETURN(uint64_t value, Unsigned(name, field));
    if (value > std::numeric_limits<uint32_t>::max()) {
      return Fail(StrCat(name, " ", value, " does not fit in 32 bits"));
    }
    return static_cast<uint32_t>(value);
  }

  template <size_t N>
  static std::string_view Field(const char (&field)[N]) {
    return {field, N};
  }

  absl::Status DecodeType() {
    Entry& e = d_.entry;
    switch (h_.typeflag) {
      case format::kTypeRegular:
      case format::kTypeRegularV7:
      case format::kTypeContiguous:
        // Before typeflag '5', tars marked directories only by the trailing slash.
        e.type = d_.raw_path.ends_with('/') ? EntryType::kDirectory : EntryType::kRegular;
        d_.has_content = e.type == EntryType::kRegular;
        return absl::OkStatus();
      case format::kTypeGnuSparse:
        e.type = EntryType::kRegular;
        d_.has_content = true;
        d_.sparse = SparseFormat::kOldGnu;
        return absl::OkStatus();
      case format::kTypeGnuDumpDir:
      case format::kTypeDirectory:
        e.type = EntryType::kDirectory;
        return absl::OkStatus();
      case format::kTypeHardlink:
        e.type = EntryType::kHardlink;
        return absl::OkStatus();
      case format::kTypeSymlink:
        e.type = EntryType::kSymlink;
        return absl::OkStatus();
      case format::kTypeCharDevice:
        e.type = EntryType::kCharDevice;
        return absl::OkStatus();
      case format::kTypeBlockDevice:
        e.type = EntryType::kBlockDevice;
        return absl::OkStatus();
      case format::kTypeFifo:
        e.type = EntryType::kFifo;
        return absl::OkStatus();
      default:
        break;
    }
    unsigned char flag = static_cast<unsigned char>(h_.typeflag);
    std::string shown = (flag >= 0x20 && flag < 0x7f)
                            ? StrCat("'", std::string(1, h_.typeflag), "' ")
                            : std::string();
    return Fail(StrCat("unknown type flag ", shown, "(0x", absl::Hex(flag, absl::kZeroPad2), ")"));
  }

  absl::Status DecodeNumbers() {
    Entry& e = d_.entry;
    ASSIGN_OR_RETURN(uint64_t mode, Unsigned("mode", Field(h_.mode)));
    e.mode = static_cast<uint32_t>(mode & 07777);
    if (pax_.uid) {
      e.uid = *pax_.uid;
    } else {
      ASSIGN_OR_RETURN(e.uid, Unsigned32("uid", Field(h_.uid)));
    }
    if (pax_.gid) {
      e.gid = *pax_.gid;
    } else {
      ASSIGN_OR_RETURN(e.gid, Unsigned32("gid", Field(h_.gid)));
    }
    if (pax_.mtime) {
      e.mtime = pax_.mtime->seconds;
      e.mtime_nsec = pax_.mtime->nanoseconds;
    } else {
      absl::StatusOr<int64_t> mtime = format::ParseSigned(Field(h_.mtime));
      if (!mtime.ok()) return Fail(StrCat("invalid mtime field: ", mtime.status().message()));
      e.mtime = *mtime;
    }
    const bool modern = dialect_ != Dialect::kV7;
    e.uname = pax_.uname ? *pax_.uname : modern ? std::string(format::FieldString(h_.uname)) : "";
    e.gname = pax_.gname ? *pax_.gname : modern ? std::string(format::FieldString(h_.gname)) : "";
    if (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice) {
      if (pax_.devmajor) {
        e.dev_major = *pax_.devmajor;
      } else if (modern) {
        ASSIGN_OR_RETURN(e.dev_major, Unsigned32("devmajor", Field(h_.devmajor)));
      }
      if (pax_.devminor) {
        e.dev_minor = *pax_.devminor;
      } else if (modern) {
        ASSIGN_OR_RETURN(e.dev_minor, Unsigned32("devminor", Field(h_.devminor)));
      }
    }
    // Header-only types carry no data whatever their size field says.
    bool has_data = e.type == EntryType::kRegular || h_.typeflag == format::kTypeGnuDumpDir ||
                    (e.type == EntryType::kDirectory && h_.typeflag != format::kTypeDirectory);
    if (has_data) {
      if (pax_.size) {
        d_.stored_size = *pax_.size;
      } else {
        ASSIGN_OR_RETURN(d_.stored_size, Unsigned("size", Field(h_.size)));
      }
    }
    RETURN_IF_ERROR(CheckSize(d_.stored_size));
    if (d_.has_content) e.size = d_.stored_size;
    return absl::OkStatus();
  }

  absl::Status CheckSize(uint64_t size) const {
    if (size <= options_.max_entry_size) return absl::OkStatus();
    return Fail(StrCat("size ", size, " exceeds the limit of ", options_.max_entry_size,
                       " bytes (ReaderOptions::max_entry_size)"));
  }

  absl::Status DecodeSparse() {
    uint64_t real_size = 0;
    if (d_.sparse == SparseFormat::kOldGnu) {
      absl::Status status = AppendGnuSparseFields(gnu_.sparse, 4, &d_.map);
      if (!status.ok()) return Fail(status.message());
      d_.gnu_extended = gnu_.isextended != 0;
      ASSIGN_OR_RETURN(real_size, Unsigned("realsize", Field(gnu_.realsize)));
    } else if (pending_.pax && pax_.HasSparse()) {
      if (d_.entry.type != EntryType::kRegular) {
        return Fail("GNU.sparse attributes on an entry that is not a regular file");
      }
      RETURN_IF_ERROR(DecodePaxSparse());
      if (!pax_.sparse_realsize) return Fail("GNU sparse entry without GNU.sparse.realsize");
      real_size = *pax_.sparse_realsize;
    } else {
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(CheckSize(real_size));
    d_.entry.sparse = true;
    d_.entry.size = real_size;
    return absl::OkStatus();
  }

  absl::Status DecodePaxSparse() {
    if (pax_.sparse_major || pax_.sparse_minor) {
      if (pax_.sparse_major.value_or(0) != 1 || pax_.sparse_minor.value_or(0) != 0) {
        return Fail(StrCat("unsupported GNU sparse format ", pax_.sparse_major.value_or(0), ".",
                           pax_.sparse_minor.value_or(0)));
      }
      d_.sparse = SparseFormat::kPax10;
      return absl::OkStatus();
    }
    absl::StatusOr<std::vector<SparseSegment>> map = pax_.sparse_map
                                                         ? ParseSparseMapList(*pax_.sparse_map)
                                                         : SparseMapFromPairs(pax_.sparse_pairs);
    if (!map.ok()) return Fail(map.status().message());
    if (pax_.sparse_numblocks && *pax_.sparse_numblocks != map->size()) {
      return Fail(StrCat("GNU.sparse.numblocks is ", *pax_.sparse_numblocks, " but the map has ",
                         map->size(), " segments"));
    }
    d_.map = *std::move(map);
    d_.sparse = SparseFormat::kPaxInline;
    return absl::OkStatus();
  }

  absl::Status DecodePaths() {
    Entry& e = d_.entry;
    absl::StatusOr<std::string> path = NormalizePath(d_.raw_path, options_.strip_leading_slash);
    if (!path.ok()) return Fail(path.status().message());
    e.path = *std::move(path);
    if (e.path.empty() && e.type != EntryType::kDirectory) {
      return Fail("the layer root must be a directory");
    }
    if (e.type != EntryType::kHardlink && e.type != EntryType::kSymlink) return absl::OkStatus();
    std::string link = RawLink(h_, pending_, pax_);
    if (e.type == EntryType::kSymlink) {
      absl::Status status = CheckSymlinkTarget(e.path, link, options_.reject_escaping_symlinks);
      if (!status.ok()) return Fail(status.message());
      e.link_target = std::move(link);
      return absl::OkStatus();
    }
    if (link.empty()) return Fail("hardlink without a target");
    absl::StatusOr<std::string> target = NormalizePath(link, options_.strip_leading_slash);
    if (!target.ok()) {
      return Fail(
          StrCat("hardlink target ", QuoteForMessage(link), ": ", target.status().message()));
    }
    if (target->empty()) return Fail("hardlink to the layer root");
    e.link_target = *std::move(target);
    return absl::OkStatus();
  }

  const format::UstarHeader& h_;
  const format::GnuHeader& gnu_;
  const Dialect dialect_;
  const uint64_t offset_;
  const PendingMetadata& pending_;
  const PaxAttributes& pax_;
  const ReaderOptions& options_;
  DecodedHeader d_;
};

}  // namespace

absl::StatusOr<DecodedHeader> DecodeHeader(const char* block, uint64_t offset,
                                           const PendingMetadata& pending,
                                           const PaxAttributes& globals,
                                           const ReaderOptions& options) {
  return Decoder(block, offset, pending, globals, options).Decode();
}

absl::Status AppendGnuSparseFields(const void* fields, size_t count,
                                   std::vector<SparseSegment>* map) {
  const auto* sparse = static_cast<const format::GnuSparseField*>(fields);
  for (size_t i = 0; i < count; ++i) {
    if (sparse[i].offset[0] == '\0') break;  // unused slots are zero-filled
    absl::StatusOr<uint64_t> offset =
        format::ParseUnsigned(std::string_view(sparse[i].offset, sizeof(sparse[i].offset)));
    absl::StatusOr<uint64_t> length =
        format::ParseUnsigned(std::string_view(sparse[i].numbytes, sizeof(sparse[i].numbytes)));
    if (!offset.ok() || !length.ok()) {
      return absl::InvalidArgumentError("invalid GNU sparse map field");
    }
    if (map->size() >= kMaxSparseSegments) {
      return absl::InvalidArgumentError(
          StrCat("sparse map has more than ", kMaxSparseSegments, " segments"));
    }
    map->push_back({*offset, *length});
  }
  return absl::OkStatus();
}

absl::Status EntryError(absl::StatusCode code, std::string_view raw_path, uint64_t offset,
                        std::string_view reason) {
  return absl::Status(
      code, StrCat("tar entry ", QuoteForMessage(raw_path), " at offset ", offset, ": ", reason));
}

absl::Status HeaderError(absl::StatusCode code, uint64_t offset, std::string_view reason) {
  return absl::Status(code, StrCat("tar header at offset ", offset, ": ", reason));
}

}  // namespace naiad::tar
