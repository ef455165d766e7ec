#include "base/test_files.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

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

std::string PseudoRandomBytes(uint64_t size, uint64_t seed) {
  std::string bytes(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;  // xorshift64, seeded away from zero
  for (uint64_t i = 0; i < size; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(bytes.data() + i, &x, std::min<uint64_t>(8, size - i));
  }
  return bytes;
}

}  // namespace naiad::testing
