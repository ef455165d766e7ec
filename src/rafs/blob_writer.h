// File: rafs/blob_writer.h
//
// Writes a RAFS data blob: chunk data, then the self-describing tail that upstream writes with
// `--blob-inline-meta --features blob-toc` — the chunk-info array with its 4 KiB header
// ("blob.meta"), the chunk digests ("blob.digest"), optionally the bootstrap ("image.boot",
// zstd), and the TOC ("rafs.blob.toc"); each section followed by a 512-byte tar header.
//
//   ASSIGN_OR_RETURN(auto writer, BlobWriter::Create(path, options));
//   for (...) ASSIGN_OR_RETURN(ChunkRef ref, writer->Append(chunk));
//   ASSIGN_OR_RETURN(BlobInfo info, writer->FinishData(/*inline_bootstrap=*/true));
//   RETURN_IF_ERROR(writer->WriteInlineBootstrap(bootstrap));    // built with info.id
//   ASSIGN_OR_RETURN(info, writer->Commit());                    // TOC, fsync, rename
//
// The blob is written to a temporary file beside `path` and renamed only by Commit(); a writer
// destroyed before that removes its temporary file. The blob id is the sha256 of every byte
// before the inline bootstrap (so without one, the id is the sha256 of the file: the OCI layer
// digest).
//
// Chunk bytes are written and hashed by a writer thread, in Append() order, so that the caller
// (the builder's reader thread) overlaps with them; Append() blocks only while more than
// `write_queue_bytes` wait for that thread. A write error is reported by a later Append() or by
// FinishData(). Calls on one BlobWriter must come from one thread.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "base/digest.h"
#include "base/file.h"
#include "rafs/bootstrap.h"

namespace naiad::rafs {

// zstd's level for chunk data unless told otherwise: upstream nydus-image's (zstd's default).
inline constexpr int kDefaultZstdLevel = 3;

// The bytes of one chunk: either a buffer allocated without zero-filling (for data read into it
// at once) or the bytes of a string (a compressor's output), so neither is copied to be stored.
class ChunkBuffer {
 public:
  ChunkBuffer() = default;
  explicit ChunkBuffer(size_t size)
      : raw_(std::make_unique_for_overwrite<char[]>(size)), size_(size) {}
  explicit ChunkBuffer(std::string bytes) : string_(std::move(bytes)), size_(string_.size()) {}

  char* data() { return raw_ ? raw_.get() : string_.data(); }
  const char* data() const { return raw_ ? raw_.get() : string_.data(); }
  size_t size() const { return size_; }
  std::string_view view() const { return {data(), size_}; }

 private:
  std::unique_ptr<char[]> raw_;
  std::string string_;
  size_t size_ = 0;
};

// A chunk digest's bytes as a hash-table key (no allocation, unlike a std::string of them).
using DigestBytes = std::array<uint8_t, 32>;
struct DigestBytesHash {
  size_t operator()(const DigestBytes& d) const {
    size_t h;  // the digest is already uniformly distributed
    std::memcpy(&h, d.data(), sizeof(h));
    return h;
  }
};

// A chunk ready to be stored: hashed, and compressed when that helped.
struct PreparedChunk {
  Digest digest;  // of the uncompressed data
  // What the blob stores: the compressed bytes, or the input itself when compression did not
  // make it smaller (or the compressor is none).
  ChunkBuffer stored;
  bool compressed = false;
  uint32_t uncompressed_size = 0;
  // The digest was already known, so `stored` was left empty: only a duplicate can be this.
  bool skipped = false;
};

struct BlobWriterOptions {
  Compressor compressor = Compressor::kZstd;
  DigestAlgorithm digester = DigestAlgorithm::kBlake3;
  uint32_t chunk_size = kDefaultChunkSize;
  // Chunk bytes handed to the writer thread but not yet written, before Append() waits.
  size_t write_queue_bytes = size_t{4} << 20;
};

class BlobWriter {
 public:
  static absl::StatusOr<std::unique_ptr<BlobWriter>> Create(const std::string& path,
                                                            const BlobWriterOptions& options);
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // Appends a chunk new to this blob and returns where it lives (blob_index is 0). The bytes
  // are written (and hashed) later, on the writer thread.
  absl::StatusOr<ChunkRef> Append(PreparedChunk chunk);
  // Writes the chunk-info and digest sections. With `inline_bootstrap` the blob id is fixed
  // here (the bootstrap written next must name it); otherwise Commit() sets it to the file's
  // sha256.
  absl::StatusOr<BlobInfo> FinishData(bool inline_bootstrap);
  absl::Status WriteInlineBootstrap(std::string_view bootstrap);
  // Writes the TOC and moves the blob into place. Returns the final blob-table fields.
  absl::StatusOr<BlobInfo> Commit();

  uint32_t chunk_count() const { return chunk_count_; }
  const std::string& path() const { return path_; }

 private:
  // Chunk bytes for the writer thread, after `padding` zero bytes.
  struct QueuedWrite {
    size_t padding = 0;
    ChunkBuffer bytes;
  };

  BlobWriter(std::string path, std::string temp, UniqueFd fd, const BlobWriterOptions& options);
  // Writes and hashes `data` now, on the caller's thread; only once Drain() has emptied the queue.
  absl::Status Write(std::string_view data);
  // Waits until the writer thread has written everything queued; its first error, if any.
  absl::Status Drain();
  void StopWriterThread();
  void WriterLoop();
  // Starts the disk writes of what the writer thread has written, every kWritebackBytes, so
  // that Commit()'s fsync waits for the tail of the blob only, not for all of it.
  void StartWriteback(size_t written);
  absl::Status WriteTarHeader(std::string_view name, uint64_t size);
  void AddTocEntry(std::string_view name, Compressor compressor, std::string_view uncompressed,
                   uint64_t offset, uint64_t stored_size);

  std::string path_;
  std::string temp_;
  UniqueFd fd_;
  BlobWriterOptions options_;
  uint64_t offset_ = 0;  // counts queued bytes too: where the next chunk goes
  uint64_t uncompressed_offset_ = 0;
  Sha256 id_hasher_;  // every byte written; the writer thread's while it runs
  // The writer thread and its queue (guarded by queue_mu_).
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;  // work queued, or stopping
  std::condition_variable room_cv_;   // room in the queue, or the queue drained
  std::deque<QueuedWrite> queue_;
  size_t queued_bytes_ = 0;
  // The writer thread sleeps until this much is queued (or Drain() is called), then writes all
  // of it with one writev: a wake-up and a system call per batch, not per (often tiny) chunk.
  static constexpr size_t kWakeBytes = size_t{256} << 10;
  bool draining_ = false;     // Drain() called: write whatever is queued
  bool room_wanted_ = false;  // Append() waits for room: write whatever is queued
  bool writing_ = false;      // the writer thread holds popped items
  bool stopping_ = false;
  absl::Status write_status_;  // the writer thread's first error
  static constexpr uint64_t kWritebackBytes = uint64_t{8} << 20;
  uint64_t written_ = 0;         // bytes the writer thread has written; its own
  uint64_t writeback_from_ = 0;  // the first of them whose writeback is not started yet
  std::thread writer_thread_;
  // Until FinishData() writes and releases them: v1 records, and 32 bytes of digest per chunk.
  std::string chunk_infos_;
  std::string chunk_digests_;
  uint32_t chunk_count_ = 0;
  std::string toc_;
  BlobInfo info_;
  bool data_finished_ = false;
  bool committed_ = false;
};

}  // namespace naiad::rafs
