// File: fs/config.h
//
// The configuration of `naiad fs`: upstream nydusd's v1 JSON ("RafsConfig"), key for key, so
// the files users have today (the seed's nydusd-config.json, nydus-snapshotter's generated
// configs) load unchanged. Unknown keys are warnings, not errors (configs written for newer
// nydusd versions still mount); invalid values are errors naming the key path.
//
//   ASSIGN_OR_RETURN(FsConfig config, LoadFsConfig("/etc/nydus/config.json", &warnings));
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/config.h"
#include "storage/config.h"

namespace naiad::fs {

struct PrefetchConfig {
  bool enable = false;
  int threads_count = 8;
  uint64_t merging_size = 1 << 20;  // largest backend request prefetch makes
  uint64_t bandwidth_rate = 0;      // bytes per second for all prefetch workers; 0 = unlimited
  bool prefetch_all = true;         // after the bootstrap's list, every other chunk
  bool stream_prefetch = false;     // accepted; Naiad prefetches by ranges either way

  template <typename V>
  void Fields(V& v) {
    v("enable", enable);
    v("threads_count", threads_count, Range(1, 1024));
    v("merging_size", merging_size, Range<uint64_t>(4096, 64 << 20));
    v("bandwidth_rate", bandwidth_rate);
    v("prefetch_all", prefetch_all);
    v("stream_prefetch", stream_prefetch);
  }
};

struct FsConfig {
  storage::DeviceConfig device;
  std::string mode = "direct";   // metadata handling; both map the bootstrap
  bool digest_validate = false;  // verify cached chunks on every read (fetched ones always are)
  bool iostats_files = false;    // per-file access counters in the API
  bool enable_xattr = false;
  bool access_pattern = false;
  bool latest_read_files = false;
  uint64_t amplify_io = 1 << 20;  // a missed read fetches up to this many bytes of the blob
  PrefetchConfig fs_prefetch;
  // device.backend.config decoded by its type (set by LoadFsConfig/ParseFsConfig).
  storage::DecodedBackend backend;

  template <typename V>
  void Fields(V& v) {
    v("device", device, Required());
    v("mode", mode, OneOf({"direct", "cached"}));
    v("digest_validate", digest_validate);
    v("iostats_files", iostats_files);
    v("enable_xattr", enable_xattr);
    v("access_pattern", access_pattern);
    v("latest_read_files", latest_read_files);
    v("amplify_io", amplify_io, Range<uint64_t>(0, 0x10000000));
    v("fs_prefetch", fs_prefetch);
  }
};

// Loads a nydusd v1 JSON config; warnings (unknown keys) are appended to `warnings` if given.
absl::StatusOr<FsConfig> LoadFsConfig(const std::string& path,
                                      std::vector<std::string>* warnings = nullptr);
absl::StatusOr<FsConfig> ParseFsConfig(std::string_view json,
                                       std::vector<std::string>* warnings = nullptr);

}  // namespace naiad::fs
