#include "tar/pax_attributes.h"

#include <limits>
#include <string_view>

#include "absl/strings/escaping.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "tar/path.h"
#include "tar/sparse.h"

namespace naiad::tar {
namespace {

constexpr std::string_view kSchilyXattr = "SCHILY.xattr.";
constexpr std::string_view kLibarchiveXattr = "LIBARCHIVE.xattr.";

absl::Status RecordError(const PaxRecord& record, absl::string_view reason) {
  return absl::InvalidArgumentError(
      StrCat("PAX record ", QuoteForMessage(record.key), ": ", reason));
}

absl::StatusOr<uint64_t> Decimal(const PaxRecord& record) {
  absl::StatusOr<uint64_t> value = ParsePaxDecimal(record.value);
  if (!value.ok()) {
    return RecordError(record,
                       StrCat(value.status().message(), " ", QuoteForMessage(record.value)));
  }
  return value;
}

absl::StatusOr<uint32_t> Decimal32(const PaxRecord& record) {
  ASSIGN_OR_RETURN(uint64_t value, Decimal(record));
  if (value > std::numeric_limits<uint32_t>::max()) {
    return RecordError(record, StrCat(value, " does not fit in 32 bits"));
  }
  return static_cast<uint32_t>(value);
}

absl::Status SetXattr(const PaxRecord& record, std::string name, std::string value,
                      PaxAttributes* attrs) {
  if (name.empty()) return RecordError(record, "empty xattr name");
  if (name.find('\0') != std::string::npos) return RecordError(record, "NUL in xattr name");
  if (name.size() > kMaxXattrNameSize) {
    return RecordError(record, StrCat("xattr name longer than ", kMaxXattrNameSize, " bytes"));
  }
  if (value.size() > kMaxXattrValueSize) {
    return RecordError(record, StrCat("xattr value larger than ", kMaxXattrValueSize, " bytes"));
  }
  auto too_big = [&] {
    return RecordError(record, StrCat("xattrs exceed ", kMaxXattrBytes, " bytes"));
  };
  for (auto& [existing_name, existing_value] : attrs->xattrs) {
    if (existing_name == name) {
      attrs->xattr_bytes -= existing_value.size();
      if (attrs->xattr_bytes + value.size() > kMaxXattrBytes) return too_big();
      attrs->xattr_bytes += value.size();
      existing_value = std::move(value);
      return absl::OkStatus();
    }
  }
  // The kernel's limit on one inode's xattr names also bounds the linear search above.
  if (attrs->xattr_list_size + name.size() + 1 > kMaxXattrListSize) {
    return RecordError(record, StrCat("xattr names exceed ", kMaxXattrListSize, " bytes"));
  }
  if (attrs->xattr_bytes + name.size() + value.size() > kMaxXattrBytes) return too_big();
  attrs->xattr_list_size += name.size() + 1;
  attrs->xattr_bytes += name.size() + value.size();
  attrs->xattrs.emplace_back(std::move(name), std::move(value));
  return absl::OkStatus();
}

absl::Status ApplyXattr(const PaxRecord& record, PaxAttributes* attrs) {
  std::string_view key = record.key;
  if (key.starts_with(kSchilyXattr)) {
    return SetXattr(record, std::string(key.substr(kSchilyXattr.size())), record.value, attrs);
  }
  absl::StatusOr<std::string> name = PercentDecode(key.substr(kLibarchiveXattr.size()));
  if (!name.ok()) return RecordError(record, name.status().message());
  std::string value;
  if (!absl::Base64Unescape(ToAbsl(record.value), &value)) {
    return RecordError(record, "xattr value is not valid base64");
  }
  return SetXattr(record, *std::move(name), std::move(value), attrs);
}

// Keys that make sense for every entry: ownership, time, xattrs.
absl::Status ApplyCommon(const PaxRecord& record, PaxAttributes* attrs) {
  const std::string& key = record.key;
  const bool unset = record.value.empty();
  if (key == "uid") {
    if (unset) {
      attrs->uid.reset();
    } else {
      ASSIGN_OR_RETURN(attrs->uid, Decimal32(record));
    }
  } else if (key == "gid") {
    if (unset) {
      attrs->gid.reset();
    } else {
      ASSIGN_OR_RETURN(attrs->gid, Decimal32(record));
    }
  } else if (key == "uname") {
    attrs->uname = unset ? std::nullopt : std::optional(record.value);
  } else if (key == "gname") {
    attrs->gname = unset ? std::nullopt : std::optional(record.value);
  } else if (key == "mtime") {
    if (unset) {
      attrs->mtime.reset();
    } else {
      absl::StatusOr<PaxTime> time = ParsePaxTime(record.value);
      if (!time.ok()) {
        return RecordError(record, StrCat("invalid time ", QuoteForMessage(record.value)));
      }
      attrs->mtime = *time;
    }
  } else if (key.starts_with(kSchilyXattr) || key.starts_with(kLibarchiveXattr)) {
    return ApplyXattr(record, attrs);
  }
  return absl::OkStatus();
}

absl::Status ApplySparse(const PaxRecord& record, PaxAttributes* attrs) {
  const std::string& key = record.key;
  if (key == "GNU.sparse.name") {
    attrs->sparse_name = record.value;
  } else if (key == "GNU.sparse.map") {
    attrs->sparse_map = record.value;
  } else if (key == "GNU.sparse.offset" || key == "GNU.sparse.numbytes") {
    // 0.0 alternates the two keys; anything else is a broken map.
    bool want_offset = attrs->sparse_pairs.size() % 2 == 0;
    if (want_offset != (key == "GNU.sparse.offset")) {
      return RecordError(record, "GNU.sparse.offset and GNU.sparse.numbytes do not alternate");
    }
    if (attrs->sparse_pairs.size() >= 2 * kMaxSparseSegments) {
      return RecordError(record, StrCat("more than ", kMaxSparseSegments, " sparse segments"));
    }
    ASSIGN_OR_RETURN(uint64_t value, Decimal(record));
    attrs->sparse_pairs.push_back(value);
  } else {
    std::optional<uint64_t>* field = nullptr;
    if (key == "GNU.sparse.major") field = &attrs->sparse_major;
    if (key == "GNU.sparse.minor") field = &attrs->sparse_minor;
    if (key == "GNU.sparse.realsize" || key == "GNU.sparse.size") field = &attrs->sparse_realsize;
    if (key == "GNU.sparse.numblocks") field = &attrs->sparse_numblocks;
    if (field != nullptr) {
      ASSIGN_OR_RETURN(*field, Decimal(record));
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyLocal(const PaxRecord& record, PaxAttributes* attrs) {
  const std::string& key = record.key;
  const bool unset = record.value.empty();
  if (key == "path") {
    attrs->path = unset ? std::nullopt : std::optional(record.value);
  } else if (key == "linkpath") {
    attrs->linkpath = unset ? std::nullopt : std::optional(record.value);
  } else if (key == "size") {
    if (unset) {
      attrs->size.reset();
    } else {
      ASSIGN_OR_RETURN(attrs->size, Decimal(record));
    }
  } else if (key == "SCHILY.devmajor" || key == "SCHILY.devminor") {
    std::optional<uint32_t>& field = key == "SCHILY.devmajor" ? attrs->devmajor : attrs->devminor;
    if (unset) {
      field.reset();
    } else {
      ASSIGN_OR_RETURN(field, Decimal32(record));
    }
  } else if (key.starts_with("GNU.sparse.")) {
    if (!unset) return ApplySparse(record, attrs);
  } else {
    return ApplyCommon(record, attrs);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyPaxRecords(const std::vector<PaxRecord>& records, bool global,
                             PaxAttributes* attrs) {
  for (const PaxRecord& record : records) {
    RETURN_IF_ERROR(global ? ApplyCommon(record, attrs) : ApplyLocal(record, attrs));
  }
  return absl::OkStatus();
}

}  // namespace naiad::tar
