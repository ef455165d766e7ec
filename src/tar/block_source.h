// File: tar/block_source.h
//
// The reader's view of the (decompressed) layer: one fixed buffer in front of an InputStream,
// counting the bytes consumed so errors can name tar offsets. Internal to naiad::tar.
//
//   BlockSource source(std::move(stream), 1 << 20);
//   ASSIGN_OR_RETURN(size_t got, source.ReadFull(header, 512));   // < 512 only at the end
//   ASSIGN_OR_RETURN(size_t n, source.ReadSome(buf, want));       // 0 only at the end
//
// Reads of at least half the buffer bypass it and go straight from the stream into the caller's
// memory, so file contents are copied once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "tar/input_stream.h"

namespace naiad::tar {

class BlockSource {
 public:
  BlockSource(std::unique_ptr<InputStream> stream, size_t buffer_size);

  // Bytes consumed so far: the tar offset of the next byte.
  uint64_t offset() const { return offset_; }

  // Up to `n` bytes; 0 only at the end of the stream.
  absl::StatusOr<size_t> ReadSome(char* dst, size_t n);
  // Exactly `n` bytes unless the stream ends first; returns how many were read.
  absl::StatusOr<size_t> ReadFull(char* dst, size_t n);
  // Discards `n` bytes unless the stream ends first; returns how many were discarded.
  absl::StatusOr<uint64_t> Skip(uint64_t n);

 private:
  absl::Status Fill();

  std::unique_ptr<InputStream> stream_;
  std::unique_ptr<char[]> buffer_;
  size_t capacity_;
  size_t begin_ = 0;
  size_t end_ = 0;
  uint64_t offset_ = 0;
  bool eof_ = false;
};

}  // namespace naiad::tar
