#include "tar/block_source.h"

#include <algorithm>
#include <cstring>

#include "base/status_macros.h"

namespace naiad::tar {

BlockSource::BlockSource(std::unique_ptr<InputStream> stream, size_t buffer_size)
    : stream_(std::move(stream)),
      buffer_(std::make_unique_for_overwrite<char[]>(buffer_size)),
      capacity_(buffer_size) {}

absl::Status BlockSource::Fill() {
  begin_ = end_ = 0;
  ASSIGN_OR_RETURN(size_t got, stream_->Read(buffer_.get(), capacity_));
  if (got == 0) eof_ = true;
  end_ = got;
  return absl::OkStatus();
}

absl::StatusOr<size_t> BlockSource::ReadSome(char* dst, size_t n) {
  if (n == 0) return 0;
  if (begin_ == end_) {
    if (eof_) return 0;
    if (n >= capacity_ / 2) {
      ASSIGN_OR_RETURN(size_t got, stream_->Read(dst, n));
      if (got == 0) eof_ = true;
      offset_ += got;
      return got;
    }
    RETURN_IF_ERROR(Fill());
  }
  size_t take = std::min(n, end_ - begin_);
  std::memcpy(dst, buffer_.get() + begin_, take);
  begin_ += take;
  offset_ += take;
  return take;
}

absl::StatusOr<size_t> BlockSource::ReadFull(char* dst, size_t n) {
  size_t done = 0;
  while (done < n) {
    ASSIGN_OR_RETURN(size_t got, ReadSome(dst + done, n - done));
    if (got == 0) break;
    done += got;
  }
  return done;
}

absl::StatusOr<uint64_t> BlockSource::Skip(uint64_t n) {
  uint64_t done = 0;
  while (done < n) {
    if (begin_ == end_) {
      if (eof_) break;
      RETURN_IF_ERROR(Fill());
      continue;
    }
    size_t take = static_cast<size_t>(std::min<uint64_t>(n - done, end_ - begin_));
    begin_ += take;
    offset_ += take;
    done += take;
  }
  return done;
}

}  // namespace naiad::tar
