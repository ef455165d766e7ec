// File: tar/pax_attributes.h
//
// What the reader takes from PAX extended headers: the interpreted values of the keys it knows,
// accumulated over the 'g' headers seen so far (globals) and the 'x' headers before one entry
// (locals, applied on top of a copy of the globals). Internal to naiad::tar.
//
//   PaxAttributes attrs = globals;
//   RETURN_IF_ERROR(ApplyPaxRecords(records, /*global=*/false, &attrs));
//   if (attrs.path) name = *attrs.path;
//
// Keys: path, linkpath, size, uid, gid, uname, gname, mtime, SCHILY.devmajor/devminor,
// SCHILY.xattr.<name> (raw value), LIBARCHIVE.xattr.<%-escaped name> (base64 value), and GNU's
// sparse keys (GNU.sparse.major/minor/name/realsize/size/numblocks/offset/numbytes/map). Others
// (atime, ctime, comment, charset, ACLs, ...) are ignored. An empty value unsets a key, so a
// local "uid=" falls back to the header's uid; xattrs are the exception (an empty value is an
// xattr with an empty value, as GNU tar reads it). Global headers carry only ownership, mtime and
// xattrs here: a global path, size or sparse map would apply to every entry, which no writer
// means, so those keys are ignored in 'g' headers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "tar/pax.h"

namespace naiad::tar {

inline constexpr size_t kMaxXattrNameSize = 255;     // XATTR_NAME_MAX
inline constexpr size_t kMaxXattrValueSize = 65536;  // XATTR_SIZE_MAX
inline constexpr size_t kMaxXattrListSize = 65536;   // XATTR_LIST_MAX: names + NULs
// Names and values of one entry together; bounds what repeated global headers can pile up.
inline constexpr size_t kMaxXattrBytes = size_t{1} << 20;

struct PaxAttributes {
  std::optional<std::string> path;
  std::optional<std::string> linkpath;
  std::optional<std::string> uname;
  std::optional<std::string> gname;
  std::optional<uint64_t> size;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint32_t> devmajor;
  std::optional<uint32_t> devminor;
  std::optional<PaxTime> mtime;
  std::vector<std::pair<std::string, std::string>> xattrs;  // first-seen order, names unique
  size_t xattr_list_size = 0;                               // sum of name sizes + 1 each
  size_t xattr_bytes = 0;                                   // sum of name and value sizes

  // GNU sparse files, formats 0.0 (offset/numbytes pairs), 0.1 (map) and 1.0 (major/minor; the
  // map is at the start of the data).
  std::optional<uint64_t> sparse_major;
  std::optional<uint64_t> sparse_minor;
  std::optional<std::string> sparse_name;
  std::optional<uint64_t> sparse_realsize;  // GNU.sparse.realsize or GNU.sparse.size
  std::optional<uint64_t> sparse_numblocks;
  std::optional<std::string> sparse_map;  // 0.1: "offset,size,offset,size,..."
  std::vector<uint64_t> sparse_pairs;     // 0.0: offset, numbytes, offset, numbytes, ...

  bool HasSparse() const {
    return sparse_major || sparse_realsize || sparse_numblocks || sparse_map ||
           !sparse_pairs.empty();
  }
};

// Applies `records` in order. Errors are InvalidArgument naming the record's key.
absl::Status ApplyPaxRecords(const std::vector<PaxRecord>& records, bool global,
                             PaxAttributes* attrs);

}  // namespace naiad::tar
