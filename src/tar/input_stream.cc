#include "tar/input_stream.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::tar {

absl::StatusOr<std::unique_ptr<FileInputStream>> FileInputStream::Open(const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_RDONLY));
  // The layer is read once, front to back: let the kernel read ahead aggressively.
  (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  return std::make_unique<FileInputStream>(std::move(fd), path);
}

absl::StatusOr<size_t> FileInputStream::Read(char* buf, size_t n) {
  for (;;) {
    ssize_t got = ::read(fd_.get(), buf, n);
    if (got >= 0) return static_cast<size_t>(got);
    if (errno == EINTR) continue;
    return ErrnoError(errno, StrCat("read ", name_.empty() ? "layer" : name_));
  }
}

absl::StatusOr<size_t> StringInputStream::Read(char* buf, size_t n) {
  size_t want = std::min(n, data_.size() - pos_);
  if (chunk_limit_ > 0) want = std::min(want, chunk_limit_);
  if (want == 0) return 0;
  std::memcpy(buf, data_.data() + pos_, want);
  pos_ += want;
  return want;
}

}  // namespace naiad::tar
