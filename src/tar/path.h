// File: tar/path.h
//
// The path rules that keep a layer inside its root. Internal to naiad::tar: the reader applies
// them to every entry, and its errors add the entry and offset to the reasons returned here.
//
//   NormalizePath("./usr//lib/./x/", false)  -> "usr/lib/x"
//   NormalizePath("./", false)               -> ""            (the layer root)
//   NormalizePath("../etc/passwd", false)    -> InvalidArgument("path escapes the layer root")
//   NormalizePath("a/../b", false)           -> InvalidArgument("path has a '..' component")
//   CheckSymlinkTarget("usr/bin/x", "../../../etc", true) -> InvalidArgument(...)
//
// Every ".." is rejected, not resolved: "a/../b" means "b" only if "a" is not a symlink, which
// the reader cannot know while streaming, and GNU tar refuses such members on extraction too.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace naiad::tar {

inline constexpr size_t kMaxPathComponent = 255;  // NAME_MAX
inline constexpr size_t kMaxPath = 4096;          // PATH_MAX

// Strips "./" and "/." components, collapses "//", drops a trailing "/"; "", "." and "/" become
// "" (the root). Rejects NUL bytes, empty input, "..", a component over kMaxPathComponent bytes,
// a result over kMaxPath bytes, and a leading "/" unless `strip_leading_slash` (the bare root "/"
// is always accepted). Errors are InvalidArgument with the reason only.
absl::StatusOr<std::string> NormalizePath(std::string_view raw, bool strip_leading_slash);

// Checks the stored target of the symlink at normalized `link_path`: rejects NUL bytes, an empty
// target and one of kMaxPath bytes or more; if `reject_escaping`, also a relative target that
// climbs above the layer root from the symlink's directory ("a/l" -> "../../x"). Absolute targets
// are resolved against the container's root at run time, so they never escape.
absl::Status CheckSymlinkTarget(std::string_view link_path, std::string_view target,
                                bool reject_escaping);

// `"text"` with C escapes, cut to 256 bytes: entry names in messages come from untrusted input.
std::string QuoteForMessage(std::string_view text);

}  // namespace naiad::tar
