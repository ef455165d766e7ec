#include "storage/config.h"

#include "base/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::storage {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<DecodedBackend> Decode(std::string_view json) {
  ASSIGN_OR_RETURN(BackendConfig backend, ParseJsonConfig<BackendConfig>(json));
  return DecodeBackend(backend);
}

TEST(StorageConfig, DecodesRegistryWithMirrors) {
  ASSERT_OK_AND_ASSIGN(DecodedBackend decoded, Decode(R"({"type": "registry", "config": {
      "mirrors": [{"host": "http://127.0.0.1:65001", "auth_through": false,
                   "headers": {"X-Dragonfly-Registry": "https://index.docker.io"},
                   "ping_url": "http://127.0.0.1:40901/server/ping"}],
      "scheme": "https", "skip_verify": false, "timeout": 10, "connect_timeout": 10,
      "retry_limit": 2}})"));
  ASSERT_TRUE(decoded.registry.has_value());
  EXPECT_FALSE(decoded.localfs.has_value());
  const RegistryBackendConfig& registry = *decoded.registry;
  EXPECT_EQ(registry.timeout, absl::Seconds(10));
  EXPECT_EQ(registry.retry_limit, 2);
  ASSERT_EQ(registry.mirrors.size(), 1u);
  EXPECT_EQ(registry.mirrors[0].headers.at("X-Dragonfly-Registry"), "https://index.docker.io");
  EXPECT_EQ(registry.mirrors[0].failure_limit, 5);
  EXPECT_EQ(registry.mirrors[0].health_check_interval, absl::Seconds(5));
}

TEST(StorageConfig, ErrorsNameTheKeyPath) {
  EXPECT_THAT(
      Decode(R"({"type": "registry", "config": {"timeout": "soon"}})"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("device.backend.config.timeout")));
  EXPECT_THAT(
      Decode(R"({"type": "registry", "config": {"mirrors": [{"host": "mirror:1"}]}})"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("device.backend.config.mirrors[0]")));
  EXPECT_THAT(Decode(R"({"type": "registry", "config": {"retry_limit": -1}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("retry_limit")));
  EXPECT_THAT(Decode(R"({"type": "oss", "config": {}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type")));
  EXPECT_THAT(Decode(R"({"type": "localfs", "config": {}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dir")));
}

TEST(StorageConfig, DecodesLocalfs) {
  ASSERT_OK_AND_ASSIGN(DecodedBackend decoded,
                       Decode(R"({"type": "localfs", "config": {"dir": "/blobs"}})"));
  ASSERT_TRUE(decoded.localfs.has_value());
  EXPECT_EQ(decoded.localfs->dir, "/blobs");
}

}  // namespace
}  // namespace naiad::storage
