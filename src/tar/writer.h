// File: tar/writer.h
//
// Writes POSIX (pax) tar archives: ustar headers, with a pax extended header whenever a value
// does not fit (long paths and link targets, sizes of 8 GiB and more, large ids, sub-second
// mtimes) and for extended attributes (SCHILY.xattr.*, as GNU tar and Docker write them).
// `naiad image unpack` turns images back into layers with it.
//
//   Writer writer([&](std::string_view bytes) { return WriteFull(fd, bytes); });
//   RETURN_IF_ERROR(writer.Begin(entry));          // header(s)
//   RETURN_IF_ERROR(writer.Write(content));        // regular files: exactly entry.size bytes
//   RETURN_IF_ERROR(writer.End());                 // padding
//   RETURN_IF_ERROR(writer.Finish());              // the two zero blocks
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "tar/reader.h"

namespace naiad::tar {

class Writer {
 public:
  using Sink = std::function<absl::Status(std::string_view)>;
  explicit Writer(Sink sink) : sink_(std::move(sink)) {}

  // Starts an entry. `entry.path` is relative ("" is written as "./"); directories get a
  // trailing '/'. Hardlinks name an earlier entry's path in link_target.
  absl::Status Begin(const Entry& entry);
  absl::Status Write(std::string_view data);
  // Ends the entry; FailedPrecondition if fewer or more bytes than entry.size were written.
  absl::Status End();
  absl::Status Finish();

  uint64_t bytes_written() const { return offset_; }

 private:
  absl::Status Emit(std::string_view data);
  absl::Status EmitPadding();

  Sink sink_;
  uint64_t offset_ = 0;
  uint64_t remaining_ = 0;
  bool in_entry_ = false;
  std::string current_path_;
};

}  // namespace naiad::tar
