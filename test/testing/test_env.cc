#include "test/testing/test_env.h"

#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::testing {
namespace {

// Decodes the octal escapes (\040 for space, ...) that /proc/self/mountinfo uses in paths.
std::string UnescapeMountPath(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int value = 0;
      bool ok = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = s[i + j];
        if (c < '0' || c > '7') ok = false;
        value = value * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// Mount points at or below `root` (field 5 of mountinfo).
absl::StatusOr<std::vector<std::string>> MountsUnder(const std::string& root) {
  ASSIGN_OR_RETURN(std::string info, ReadFileToString("/proc/self/mountinfo"));
  std::vector<std::string> result;
  for (absl::string_view line : absl::StrSplit(info, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 5) continue;
    std::string mount_point = UnescapeMountPath(ToStd(fields[4]));
    if (mount_point == root || mount_point.starts_with(root + "/")) {
      result.push_back(std::move(mount_point));
    }
  }
  return result;
}

}  // namespace

bool RunningAsRoot() { return ::geteuid() == 0; }

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

std::string BuildPath(std::string_view relative) {
  const char* dir = std::getenv("NAIAD_BINARY_DIR");
  if (dir != nullptr && *dir != '\0') return StrCat(dir, "/", relative);
  // Test binaries live in <build>/test/<sub>/; walk up to the build root.
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::filesystem::path build = self.parent_path().parent_path().parent_path();
  return (build / std::string(relative)).string();
}

absl::Status WriteOwnerPid(const std::string& dir) {
  return WriteFileAtomically(StrCat(dir, "/owner.pid"), StrCat(::getpid(), "\n"));
}

absl::StatusOr<pid_t> ReadOwnerPid(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(StrCat(dir, "/owner.pid")));
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid)) {
    return absl::DataLossError(StrCat("bad owner.pid in ", dir));
  }
  return static_cast<pid_t>(pid);
}

void RemoveStaleOwnedDirs(const std::string& base, std::string_view prefix) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(base, ec)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix) || !entry.is_directory(ec)) continue;
    absl::StatusOr<pid_t> owner = ReadOwnerPid(entry.path().string());
    if (!owner.ok() || ProcessAlive(*owner)) continue;
    RemoveTreeSafely(entry.path().string()).IgnoreError();
  }
}

absl::StatusOr<TempDir> CreateOwnedTempDir(std::string_view prefix) {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string base = (tmpdir != nullptr && *tmpdir != '\0') ? tmpdir : "/tmp";
  RemoveStaleOwnedDirs(base, prefix);
  ASSIGN_OR_RETURN(TempDir dir, TempDir::Create(prefix, base));
  RETURN_IF_ERROR(WriteOwnerPid(dir.path()));
  return dir;
}

absl::Status UnmountAllUnder(const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<std::string> mounts, MountsUnder(path));
  // Deepest first, so that a parent mount is not busy because of a child.
  std::sort(mounts.begin(), mounts.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  absl::Status result;
  for (const std::string& mount_point : mounts) {
    if (::umount2(mount_point.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
      result.Update(ErrnoError(errno, StrCat("umount ", mount_point)));
    }
  }
  return result;
}

absl::Status RemoveTreeSafely(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::symlink_status(path, ec))) {
    return absl::OkStatus();
  }
  std::string canonical = std::filesystem::canonical(path, ec).string();
  if (ec) return ErrnoError(ec.value(), StrCat("canonical ", path));
  UnmountAllUnder(canonical).IgnoreError();
  ASSIGN_OR_RETURN(std::vector<std::string> left, MountsUnder(canonical));
  if (!left.empty()) {
    return absl::FailedPreconditionError(
        StrCat("not removing ", path, ": ", left.front(), " is still mounted"));
  }
  return RemoveAll(canonical);
}

}  // namespace naiad::testing
