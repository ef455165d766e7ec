#include "base/test_files.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>

#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::testing {

std::string SourcePath(std::string_view relative) {
  const char* env = std::getenv("NAIAD_SOURCE_DIR");
  std::string source = env != nullptr ? env : NAIAD_SOURCE_DIR;
  return StrCat(source, "/", relative);
}

std::string SharedPath(std::string_view relative) {
  return SourcePath(StrCat("../shared/", relative));
}

std::string NydusFixturePath(std::string_view relative) {
  return SharedPath(StrCat("fixtures/nydus/", relative));
}

absl::Status WriteTestFile(const std::string& path, std::string_view data, mode_t mode) {
  ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_WRONLY | O_CREAT | O_TRUNC, mode));
  RETURN_IF_ERROR(WriteFull(fd.get(), data));
  if (::fchmod(fd.get(), mode) != 0) return ErrnoError(errno, StrCat("chmod ", path));
  return absl::OkStatus();
}

}  // namespace naiad::testing
