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
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "base/digest.h"
#include "base/file.h"
#include "rafs/bootstrap.h"

namespace naiad::rafs {

// A chunk ready to be stored: hashed, and compressed when that helped.
struct PreparedChunk {
  Digest digest;  // of the uncompressed data
  std::string stored;
  bool compressed = false;
  uint32_t uncompressed_size = 0;
  // The digest was already known, so `stored` was left empty: only a duplicate can be this.
  bool skipped = false;
};

struct BlobWriterOptions {
  Compressor compressor = Compressor::kZstd;
  DigestAlgorithm digester = DigestAlgorithm::kBlake3;
  uint32_t chunk_size = kDefaultChunkSize;
};

class BlobWriter {
 public:
  static absl::StatusOr<std::unique_ptr<BlobWriter>> Create(const std::string& path,
                                                            const BlobWriterOptions& options);
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // Appends a chunk new to this blob and returns where it lives (blob_index is 0).
  absl::StatusOr<ChunkRef> Append(const PreparedChunk& chunk);
  // Writes the chunk-info and digest sections. With `inline_bootstrap` the blob id is fixed
  // here (the bootstrap written next must name it); otherwise Commit() sets it to the file's
  // sha256.
  absl::StatusOr<BlobInfo> FinishData(bool inline_bootstrap);
  absl::Status WriteInlineBootstrap(std::string_view bootstrap);
  // Writes the TOC and moves the blob into place. Returns the final blob-table fields.
  absl::StatusOr<BlobInfo> Commit();

  uint32_t chunk_count() const { return static_cast<uint32_t>(chunks_.size()); }
  const std::string& path() const { return path_; }

 private:
  BlobWriter(std::string path, std::string temp, UniqueFd fd, const BlobWriterOptions& options);
  absl::Status Write(std::string_view data);
  absl::Status WriteTarHeader(std::string_view name, uint64_t size);
  void AddTocEntry(std::string_view name, Compressor compressor, std::string_view uncompressed,
                   uint64_t offset, uint64_t stored_size);

  std::string path_;
  std::string temp_;
  UniqueFd fd_;
  BlobWriterOptions options_;
  uint64_t offset_ = 0;
  uint64_t uncompressed_offset_ = 0;
  Sha256 id_hasher_;              // every byte written
  std::string chunk_infos_;       // v1 records
  std::string chunk_digests_;     // 32 bytes per chunk
  std::vector<uint64_t> chunks_;  // uncompressed offsets, for counting and checks
  std::string toc_;
  BlobInfo info_;
  bool data_finished_ = false;
  bool committed_ = false;
};

}  // namespace naiad::rafs
