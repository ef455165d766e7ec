// File: rafs/bootstrap_writer.h
//
// Lays out a Tree as a RAFS v6 bootstrap (see layout.h and docs/formats/rafs-v6.md): superblocks,
// device and blob tables, prefetch table, inodes in breadth-first order with inline xattrs,
// directory entries, symlink targets and chunk indexes, then the chunk-info table.
//
//   BootstrapOptions options{.chunk_size = 1 << 20, .compressor = Compressor::kZstd};
//   ASSIGN_OR_RETURN(std::string bytes, WriteBootstrap(tree, blobs, options));
//
// The output is deterministic for a given tree, blob table and options.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/digest.h"
#include "rafs/bootstrap.h"
#include "rafs/tree.h"

namespace naiad::rafs {

struct BootstrapOptions {
  uint32_t chunk_size = kDefaultChunkSize;
  Compressor compressor = Compressor::kZstd;
  DigestAlgorithm digester = DigestAlgorithm::kBlake3;
  // Blobs carry their chunk digests (blob.digest): sets INLINED_CHUNK_DIGEST.
  bool inlined_chunk_digest = true;
  // Paths (absolute or relative to the root) whose inodes go into the prefetch table, in order.
  std::vector<std::string> prefetch_paths;
  uint64_t build_time = 0;  // reported as the mtime of compact inodes
};

absl::StatusOr<std::string> WriteBootstrap(const Tree& tree, const std::vector<BlobInfo>& blobs,
                                           const BootstrapOptions& options);

// Fills a blob-table entry from a BlobInfo (exposed for the blob writer's inline bootstrap).
BlobTableEntry ToBlobTableEntry(const BlobInfo& blob);

}  // namespace naiad::rafs
