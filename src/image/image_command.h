// File: image/image_command.h
//
// `naiad image` (alias `nydus-image`): build and read RAFS v6 images. Flags follow upstream
// nydus-image so users' scripts keep working:
//
//   naiad image create SOURCE -t tar-rafs -B layer.boot -D blobs/ --blob-inline-meta --features
//   blob-toc naiad image merge --bootstrap image.boot --blob-digests sha256:..,sha256:.. l1.boot
//   l2.boot naiad image check image.boot --blob-dir blobs/ -J report.json naiad image inspect
//   image.boot --request tree naiad image unpack image.boot --blob-dir blobs/ --output rootfs.tar
//
// Each subcommand is a function over parsed flags, so tests can call them directly.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace naiad::image {

struct CreateFlags {
  std::string source;
  std::string type;  // dir-rafs, tar-rafs, targz-rafs; empty: by the source
  std::string bootstrap;
  std::string blob;
  std::string blob_dir;
  std::string fs_version = "6";
  std::string compressor = "zstd";
  int compression_level = 3;  // zstd, 1..19; upstream's level
  std::string chunk_size = "0x100000";
  std::string digester = "blake3";
  std::vector<std::string> chunk_dict;  // "bootstrap=<path>" or a path
  bool blob_inline_meta = false;
  std::vector<std::string> features;     // "blob-toc" (always on)
  std::string prefetch_policy = "none";  // fs: paths on stdin
  std::string whiteout_spec = "oci";
  std::string output_json;
  int threads = 0;  // 0: all cores
  bool strip_leading_slash = false;
};
absl::StatusOr<nlohmann::json> Create(const CreateFlags& flags);

struct MergeFlags {
  std::vector<std::string>
      sources;  // layer bootstraps (or blobs with inline bootstraps), bottom first
  std::string bootstrap;
  std::string blob_digests;  // comma separated, one per source
  std::string blob_sizes;
  std::string blob_toc_digests;
  std::string blob_toc_sizes;
  std::string prefetch_policy = "none";
  std::string output_json;
};
absl::StatusOr<nlohmann::json> Merge(const MergeFlags& flags);

struct CheckFlags {
  std::string bootstrap;
  std::string blob_dir;
  std::vector<std::string> blobs;
  std::string output_json;
  bool verbose = false;
};
absl::StatusOr<nlohmann::json> Check(const CheckFlags& flags);

struct InspectFlags {
  std::string bootstrap;
  std::string request = "summary";  // summary, superblock, blobs, tree, stat, chunks, prefetch
  std::string path = "/";
  bool json = false;
};
absl::StatusOr<std::string> Inspect(const InspectFlags& flags);

struct UnpackFlags {
  std::string bootstrap;
  std::string output;
  std::string blob;
  std::string blob_dir;
};
absl::StatusOr<nlohmann::json> Unpack(const UnpackFlags& flags);

// Reads a bootstrap from a bootstrap file or from a blob that carries one (image.boot).
absl::StatusOr<std::string> LoadBootstrapBytes(const std::string& path);

// Parses "0x100000" or "1048576".
absl::StatusOr<uint64_t> ParseSize(const std::string& text);

}  // namespace naiad::image
