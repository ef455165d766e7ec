// File: test/testing/rafs_convert.h
//
// Converts a test image's OCI layers to a RAFS v6 image the way users do, with the real binary:
// `naiad image create <layer> -t targz-rafs --blob-inline-meta --features blob-toc` per layer,
// then `naiad image merge --blob-digests` naming each blob by its sha256 (how a registry names
// it). The demo, the `naiad fs` end-to-end tests and bench/lazy share it.
//
//   ASSERT_OK_AND_ASSIGN(RafsImage rafs, ConvertToRafs(image, work_dir));
//   for (size_t i = 0; i < rafs.blob_paths.size(); ++i) registry->PushBlobFile(repo,
//   rafs.blob_paths[i]);
//   // mount rafs.bootstrap with naiad fs
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/file.h"
#include "nlohmann/json.hpp"
#include "test/testing/test_images.h"

namespace naiad::testing {

struct RafsImage {
  std::string bootstrap;                  // the merged image.boot
  std::vector<std::string> blob_paths;    // bottom layer first
  std::vector<std::string> blob_digests;  // "sha256:<hex>" of each blob file
  std::vector<uint64_t> blob_sizes;
  std::vector<nlohmann::json> layer_reports;  // `naiad image create` JSON output per layer
};

// Writes <work_dir>/blobs/*, <work_dir>/layer<i>.boot and <work_dir>/image.boot. `naiad` is the
// binary to run (default: the one in this build tree).
absl::StatusOr<RafsImage> ConvertToRafs(const TestImage& image, const std::string& work_dir,
                                        std::string naiad = "");

// A test image converted once for a whole suite (in SetUpTestSuite): the image, a directory of
// its own (removed with it) and the conversion.
struct ConvertedTestImage {
  TestImage image;
  TempDir dir;
  RafsImage rafs;
  uint64_t blob_bytes = 0;  // the sum of rafs.blob_sizes
};
// TestImages::Get(recipe), then ConvertToRafs into CreateOwnedTempDir(dir_prefix).
absl::StatusOr<std::unique_ptr<ConvertedTestImage>> ConvertTestImage(std::string_view recipe,
                                                                     std::string_view dir_prefix);

// Runs a command that prints a JSON document (after any log lines) and parses it.
absl::StatusOr<nlohmann::json> RunJsonCommand(const std::vector<std::string>& argv);

}  // namespace naiad::testing
