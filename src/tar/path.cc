#include "tar/path.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "base/strings.h"

namespace naiad::tar {
namespace {

// Calls `fn(component)` for every non-empty component of `path` other than ".".
template <typename Fn>
absl::Status ForEachComponent(std::string_view path, Fn fn) {
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = std::min(path.find('/', pos), path.size());
    std::string_view component = path.substr(pos, slash - pos);
    if (!component.empty() && component != ".") {
      absl::Status status = fn(component);
      if (!status.ok()) return status;
    }
    pos = slash + 1;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> NormalizePath(std::string_view raw, bool strip_leading_slash) {
  if (raw.empty()) return absl::InvalidArgumentError("empty path");
  if (raw.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("path contains a NUL byte");
  }
  std::string out;
  size_t depth = 0;
  absl::Status status = ForEachComponent(raw, [&](std::string_view component) {
    if (component == "..") {
      return absl::InvalidArgumentError(depth == 0 ? "path escapes the layer root"
                                                   : "path has a '..' component");
    }
    if (component.size() > kMaxPathComponent) {
      return absl::InvalidArgumentError(
          StrCat("path component longer than ", kMaxPathComponent, " bytes"));
    }
    if (!out.empty()) out.push_back('/');
    out.append(component);
    ++depth;
    if (out.size() > kMaxPath) {
      return absl::InvalidArgumentError(StrCat("path longer than ", kMaxPath, " bytes"));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (raw.front() == '/' && !out.empty() && !strip_leading_slash) {
    return absl::InvalidArgumentError("absolute path (set strip_leading_slash to accept it)");
  }
  return out;
}

absl::Status CheckSymlinkTarget(std::string_view link_path, std::string_view target,
                                bool reject_escaping) {
  if (target.empty()) return absl::InvalidArgumentError("empty symlink target");
  if (target.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("symlink target contains a NUL byte");
  }
  if (target.size() >= kMaxPath) {
    return absl::InvalidArgumentError(
        StrCat("symlink target longer than ", kMaxPath - 1, " bytes"));
  }
  if (!reject_escaping || target.front() == '/') return absl::OkStatus();
  // Depth of the directory holding the link: the number of components of its parent.
  int64_t depth = static_cast<int64_t>(std::count(link_path.begin(), link_path.end(), '/'));
  return ForEachComponent(target, [&](std::string_view component) {
    if (component != "..") {
      ++depth;
      return absl::OkStatus();
    }
    if (--depth < 0) {
      return absl::InvalidArgumentError(
          StrCat("symlink target ", QuoteForMessage(target), " climbs above the layer root"));
    }
    return absl::OkStatus();
  });
}

std::string QuoteForMessage(std::string_view text) {
  constexpr size_t kMaxShown = 256;
  std::string quoted = StrCat("\"", absl::CEscape(ToAbsl(text.substr(0, kMaxShown))), "\"");
  if (text.size() > kMaxShown) StrAppend(&quoted, "...");
  return quoted;
}

}  // namespace naiad::tar
