// File: rafs/builder.h
//
// Builds one layer's RAFS v6 image from an EntrySource: a data blob (chunks deduplicated within
// the layer and against a chunk dictionary of earlier layers) plus a bootstrap. Chunks are hashed
// and compressed on `threads` workers while the source is read; memory stays bounded by the
// pipeline window whatever the layer size.
//
//   LayerBuildOptions options;                 // 1 MiB chunks, zstd, blake3
//   options.blob_path = "out.blob";
//   ASSIGN_OR_RETURN(LayerBuildResult result, BuildLayer(source, options));
//   RETURN_IF_ERROR(WriteFileAtomically("out.boot", result.bootstrap));
//
// OCI whiteouts (".wh.<name>", ".wh..wh..opq") become their overlayfs form in the tree. Holes of
// sparse files (EntrySource::SkipHole) that span a whole chunk become hole chunks (no data: read
// as zeros by our reader and the kernel's), so they are never materialized. A failed build
// leaves no blob behind.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rafs/blob_writer.h"
#include "rafs/bootstrap.h"
#include "rafs/bootstrap_writer.h"
#include "rafs/entry_source.h"
#include "rafs/tree.h"

namespace naiad::rafs {

// The zstd levels a build accepts (zstd's own range also has negative and "ultra" levels).
inline constexpr int kMinCompressionLevel = 1;
inline constexpr int kMaxCompressionLevel = 19;

struct LayerBuildOptions {
  uint32_t chunk_size = kDefaultChunkSize;
  Compressor compressor = Compressor::kZstd;
  // zstd's level for chunk data (1..19; upstream uses 3). Other compressors ignore it.
  int compression_level = kDefaultZstdLevel;
  DigestAlgorithm digester = DigestAlgorithm::kBlake3;
  int threads = 2;
  // Input bytes hashed and compressed ahead of the blob writer; 0: the pipeline's default
  // (4 MiB per thread). Peak memory grows with these two; output bytes do not depend on them.
  size_t window_bytes = 0;
  // Blob bytes queued for the writer thread before the build waits for it.
  size_t write_queue_bytes = size_t{4} << 20;
  // Where the blob goes; empty: `blob_dir`/<blob id>.
  std::string blob_path;
  std::string blob_dir;
  // Embed the bootstrap in the blob (upstream --blob-inline-meta).
  bool inline_bootstrap = false;
  // Bootstraps whose chunks may be reused instead of stored again (upstream --chunk-dict).
  std::vector<std::string> chunk_dicts;
  std::vector<std::string> prefetch_paths;
  uint64_t build_time = 0;
  // Turn OCI whiteout files into their overlayfs form (upstream --whiteout-spec oci). Off, they
  // are kept as they are (overlayfs: the layer already uses 0:0 devices and xattrs; none).
  bool convert_oci_whiteouts = true;
};

struct LayerBuildStats {
  uint64_t files = 0;
  uint64_t bytes_in = 0;       // file content read
  uint64_t chunks = 0;         // chunks of all files, holes included
  uint64_t chunks_stored = 0;  // new chunks written to the blob
  uint64_t chunks_deduplicated = 0;
  uint64_t chunks_from_dict = 0;
  uint64_t hole_chunks = 0;  // chunk-sized holes of sparse files: recorded, never read or stored
};

struct LayerBuildResult {
  std::string bootstrap;         // the bootstrap bytes (write them with WriteFileAtomically)
  std::optional<BlobInfo> blob;  // absent when the layer has no file data
  std::string blob_path;         // where the blob was written
  LayerBuildStats stats;
};

absl::StatusOr<LayerBuildResult> BuildLayer(EntrySource& source, const LayerBuildOptions& options);

// Checks a chunk size: a power of two in [4 KiB, 16 MiB].
absl::Status ValidateChunkSize(uint64_t chunk_size);
// Checks a zstd level for chunk data: 1 (fastest) to 19 (smallest).
absl::Status ValidateCompressionLevel(int level);

}  // namespace naiad::rafs
