#include "fs/config.h"

#include <filesystem>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::fs {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

std::string SeedConfigPath() {
  return testing::SourcePath("src/fs/testdata/seed-nydusd-config.json");
}

void ExpectSeedValues(const FsConfig& config) {
  ASSERT_TRUE(config.backend.registry.has_value());
  const storage::RegistryBackendConfig& registry = *config.backend.registry;
  ASSERT_EQ(registry.mirrors.size(), 1u);
  EXPECT_EQ(registry.mirrors[0].host, "http://127.0.0.1:65001");
  EXPECT_FALSE(registry.mirrors[0].auth_through);
  EXPECT_EQ(registry.mirrors[0].headers.at("X-Dragonfly-Registry"), "https://index.docker.io");
  EXPECT_EQ(registry.mirrors[0].ping_url, "http://127.0.0.1:40901/server/ping");
  EXPECT_EQ(registry.scheme, "https");
  EXPECT_EQ(registry.timeout, absl::Seconds(10));
  EXPECT_EQ(registry.connect_timeout, absl::Seconds(10));
  EXPECT_EQ(registry.retry_limit, 2);
  EXPECT_TRUE(config.device.cache.enabled());
  EXPECT_EQ(config.device.cache.config.work_dir, "/var/lib/nydus/cache/");
  EXPECT_EQ(config.mode, "direct");
  EXPECT_TRUE(config.enable_xattr);
  EXPECT_TRUE(config.fs_prefetch.enable);
  EXPECT_EQ(config.fs_prefetch.threads_count, 10);
  EXPECT_EQ(config.fs_prefetch.merging_size, 131072u);
  EXPECT_EQ(config.fs_prefetch.bandwidth_rate, 1048576u);
}

TEST(FsConfig, SeedConfigLoadsUnchanged) {
  std::vector<std::string> warnings;
  ASSERT_OK_AND_ASSIGN(FsConfig config, LoadFsConfig(SeedConfigPath(), &warnings));
  EXPECT_THAT(warnings, ::testing::IsEmpty());
  ExpectSeedValues(config);
}

// The copy in testdata is the seed's text, byte for byte (the seed document is the source).
TEST(FsConfig, SeedDocumentConfigIsTheTestdataCopy) {
  std::filesystem::path seed_dir = testing::SharedPath("seed");
  if (!std::filesystem::exists(seed_dir)) GTEST_SKIP() << "no ../shared/seed beside the checkout";
  ASSERT_OK_AND_ASSIGN(std::string copy, ReadFileToString(SeedConfigPath()));
  bool found = false;
  for (const auto& entry : std::filesystem::directory_iterator(seed_dir)) {
    ASSERT_OK_AND_ASSIGN(std::string text, ReadFileToString(entry.path().string()));
    if (text.find(copy) != std::string::npos) found = true;
  }
  EXPECT_TRUE(found) << "the seed's nydusd-config.json differs from " << SeedConfigPath();
}

TEST(FsConfig, UnknownKeysWarnInvalidValuesFail) {
  std::vector<std::string> warnings;
  ASSERT_OK_AND_ASSIGN(FsConfig config, ParseFsConfig(R"({
      "device": {"backend": {"type": "localfs", "config": {"dir": "/b", "future": 1}}},
      "new_option": true})",
                                                      &warnings));
  EXPECT_THAT(warnings, ::testing::ElementsAre(HasSubstr("new_option"), HasSubstr("future")));
  EXPECT_THAT(ParseFsConfig(R"({"device": {"backend": {"type": "localfs",
                                 "config": {"dir": "/b"}}}, "fs_prefetch": {"threads_count": 0}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fs_prefetch.threads_count")));
  EXPECT_THAT(
      ParseFsConfig(R"({"device": {"backend": {"type": "registry",
                                 "config": {"timeout": "x"}}}})"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("device.backend.config.timeout")));
  EXPECT_THAT(ParseFsConfig(R"({"mode": "direct"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("device")));
  EXPECT_THAT(ParseFsConfig(R"({"device": {"backend": {"type": "localfs", "config": {}}},
                                "mode": "fast"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mode")));
}

}  // namespace
}  // namespace naiad::fs
