// File: base/test_files.h (test-only)
//
// Files for tests: where the shared upstream fixtures live, and a plain (unsynced) writer for
// building test trees quickly.
//
//   if (!std::filesystem::exists(NydusFixturePath(""))) GTEST_SKIP() << "no ../shared/fixtures";
//   ASSERT_OK(WriteTestFile(dir + "/a.txt", "hello", 0600));
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace naiad::testing {

// <source dir>/../shared/fixtures/nydus/<relative>. The source dir is $NAIAD_SOURCE_DIR (ctest
// sets it) or the one this library was built from.
std::string NydusFixturePath(std::string_view relative);
// <source dir>/<relative> (test data checked in beside the code).
std::string SourcePath(std::string_view relative);
// <source dir>/../shared/<relative> (the seed document, references and fixtures).
std::string SharedPath(std::string_view relative);

// Creates or truncates `path` with `data` and exactly `mode`. No fsync: test fixtures need no
// durability, and hundreds of fsyncs make a suite slow.
absl::Status WriteTestFile(const std::string& path, std::string_view data, mode_t mode = 0644);

// `size` pseudo-random (incompressible), deterministic bytes; a different `seed` gives different
// bytes.
std::string PseudoRandomBytes(uint64_t size, uint64_t seed = 1);

}  // namespace naiad::testing
