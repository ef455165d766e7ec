#include "base/config.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status_matchers.h"

namespace naiad {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;

// ---- The nydusd configuration, as a user of this API would declare it ----

struct MirrorConfig {
  std::string host;
  std::map<std::string, std::string> headers;
  bool auth_through = false;
  int health_check_interval = 5;
  int failure_limit = 5;
  std::string ping_url;

  template <typename V>
  void Fields(V& v) {
    v("host", host, Required());
    v("headers", headers);
    v("auth_through", auth_through);
    v("health_check_interval", health_check_interval, Range(1, 3600));
    v("failure_limit", failure_limit, Range(1, 1000));
    v("ping_url", ping_url);
  }
};

struct RegistryConfig {
  std::vector<MirrorConfig> mirrors;
  std::string scheme = "https";
  std::string host;
  std::string repo;
  std::string auth;
  uint32_t timeout = 5;
  uint32_t connect_timeout = 5;
  int retry_limit = 0;

  template <typename V>
  void Fields(V& v) {
    v("mirrors", mirrors);
    v("scheme", scheme, OneOf({"http", "https"}));
    v("host", host);
    v("repo", repo);
    v("auth", auth, Secret());
    v("timeout", timeout);
    v("connect_timeout", connect_timeout);
    v("retry_limit", retry_limit, Range(0, 100));
  }
};

// A backend's "config" depends on its "type", so it stays raw until the type is known.
struct BackendConfig {
  std::string type;
  nlohmann::json config;

  template <typename V>
  void Fields(V& v) {
    v("type", type, Required(), OneOf({"registry", "localfs", "oss"}));
    v("config", config);
  }
};

struct CacheConfig {
  std::string type;
  nlohmann::json config;

  template <typename V>
  void Fields(V& v) {
    v("type", type);
    v("config", config);
  }
};

struct DeviceConfig {
  BackendConfig backend;
  CacheConfig cache;

  template <typename V>
  void Fields(V& v) {
    v("backend", backend, Required());
    v("cache", cache);
  }
};

struct FsPrefetchConfig {
  bool enable = false;
  uint32_t threads_count = 4;
  uint64_t merging_size = 0;
  uint64_t bandwidth_rate = 0;

  template <typename V>
  void Fields(V& v) {
    v("enable", enable);
    v("threads_count", threads_count, Range(1, 1024));
    v("merging_size", merging_size);
    v("bandwidth_rate", bandwidth_rate);
  }
};

enum class Mode { kDirect, kCached };

struct NydusdConfig {
  DeviceConfig device;
  Mode mode = Mode::kDirect;
  bool digest_validate = false;
  bool iostats_files = false;
  bool enable_xattr = false;
  FsPrefetchConfig fs_prefetch;

  template <typename V>
  void Fields(V& v) {
    v("device", device, Required());
    v("mode", mode, OneOf<Mode>({{"direct", Mode::kDirect}, {"cached", Mode::kCached}}));
    v("digest_validate", digest_validate);
    v("iostats_files", iostats_files);
    v("enable_xattr", enable_xattr);
    v("fs_prefetch", fs_prefetch);
  }
};

// The second stage: decodes device.backend.config once device.backend.type is known.
absl::StatusOr<RegistryConfig> DecodeRegistry(const NydusdConfig& config,
                                              const ConfigOptions& options = {}) {
  return DecodeConfig<RegistryConfig>(config.device.backend.config, options,
                                      "device.backend.config");
}

constexpr char kNydusdJson[] = R"({
  "device": {
    "backend": {
      "type": "registry",
      "config": {
        "mirrors": [{
          "host": "http://127.0.0.1:65001",
          "headers": {"X-Dragonfly-Registry": "https://index.docker.io"},
          "auth_through": false,
          "health_check_interval": 5,
          "failure_limit": 5,
          "ping_url": "http://127.0.0.1:40901/server/ping"
        }],
        "scheme": "https", "host": "", "repo": "", "auth": "",
        "timeout": 5, "connect_timeout": 5, "retry_limit": 2
      }
    },
    "cache": {"type": "blobcache", "config": {"work_dir": "/var/lib/nydus/cache/"}}
  },
  "mode": "direct",
  "digest_validate": false,
  "iostats_files": false,
  "enable_xattr": true,
  "fs_prefetch": {
    "enable": true, "threads_count": 10, "merging_size": 131072, "bandwidth_rate": 1048576
  }
})";

// The nydusd config with `registry_config` as device.backend.config.
std::string NydusdWithRegistry(std::string_view registry_config) {
  return StrCat(R"({"device": {"backend": {"type": "registry", "config": )", registry_config,
                "}}}");
}

TEST(Config, LoadsNydusdJson) {
  ASSERT_OK_AND_ASSIGN(NydusdConfig config, ParseJsonConfig<NydusdConfig>(kNydusdJson));
  EXPECT_EQ(config.device.backend.type, "registry");
  EXPECT_EQ(config.device.cache.type, "blobcache");
  EXPECT_EQ(config.device.cache.config["work_dir"], "/var/lib/nydus/cache/");
  EXPECT_EQ(config.mode, Mode::kDirect);
  EXPECT_TRUE(config.enable_xattr);
  EXPECT_FALSE(config.digest_validate);
  EXPECT_TRUE(config.fs_prefetch.enable);
  EXPECT_EQ(config.fs_prefetch.threads_count, 10u);
  EXPECT_EQ(config.fs_prefetch.merging_size, 131072u);
  EXPECT_EQ(config.fs_prefetch.bandwidth_rate, 1048576u);

  ASSERT_OK_AND_ASSIGN(RegistryConfig registry, DecodeRegistry(config));
  EXPECT_EQ(registry.scheme, "https");
  EXPECT_EQ(registry.timeout, 5u);
  EXPECT_EQ(registry.retry_limit, 2);
  ASSERT_EQ(registry.mirrors.size(), 1u);
  const MirrorConfig& mirror = registry.mirrors[0];
  EXPECT_EQ(mirror.host, "http://127.0.0.1:65001");
  EXPECT_THAT(mirror.headers, ElementsAre(std::pair<const std::string, std::string>(
                                  "X-Dragonfly-Registry", "https://index.docker.io")));
  EXPECT_EQ(mirror.ping_url, "http://127.0.0.1:40901/server/ping");
}

TEST(Config, MissingRequiredKeyNamesPath) {
  EXPECT_THAT(ParseJsonConfig<NydusdConfig>(R"({"device": {"backend": {"config": {}}}})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("device.backend.type: required key is missing")));
  EXPECT_THAT(ParseJsonConfig<NydusdConfig>(R"({"device": {"backend": {"type": null}}})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("device.backend.type: required key is null")));
  EXPECT_THAT(ParseJsonConfig<NydusdConfig>("{}"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("device: required key is missing")));
}

TEST(Config, WrongTypeNamesPathAndValue) {
  ASSERT_OK_AND_ASSIGN(NydusdConfig config,
                       ParseJsonConfig<NydusdConfig>(NydusdWithRegistry(R"({"timeout": "5s"})")));
  EXPECT_THAT(DecodeRegistry(config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(R"(device.backend.config.timeout: expected integer, got string "5s")")));
  EXPECT_THAT(ParseJsonConfig<NydusdConfig>(R"({"device": {"backend": {"type": 1}}})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("device.backend.type: expected string, got integer 1")));
  EXPECT_THAT(ParseJsonConfig<NydusdConfig>(
                  R"({"enable_xattr": "yes", "device": {"backend": {"type": "oss"}}})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(R"(enable_xattr: expected boolean, got string "yes")")));
  EXPECT_THAT(
      ParseJsonConfig<NydusdConfig>(R"({"device": []})"),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("device: expected object, got array")));
  EXPECT_THAT(ParseJsonConfig<NydusdConfig>("[1]"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("expected object, got array")));
}

TEST(Config, UnknownKeyIsAnErrorByDefault) {
  ASSERT_OK_AND_ASSIGN(NydusdConfig config,
                       ParseJsonConfig<NydusdConfig>(NydusdWithRegistry(R"({"tiemout": 5})")));
  EXPECT_THAT(
      DecodeRegistry(config),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq(R"(device.backend.config.tiemout: unknown key (did you mean "timeout"?))")));
  EXPECT_THAT(
      ParseJsonConfig<NydusdConfig>(R"({"device": {"backend": {"type": "oss"}}, "colour": 1})"),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("colour: unknown key")));
}

TEST(Config, UnknownKeyWarnModeCollectsWarnings) {
  std::vector<std::string> warnings;
  ConfigOptions options{.unknown_keys = UnknownKeys::kWarn, .warnings = &warnings};
  ASSERT_OK_AND_ASSIGN(
      NydusdConfig config,
      ParseJsonConfig<NydusdConfig>(NydusdWithRegistry(R"({"tiemout": 7, "x": 1})"), options));
  ASSERT_OK_AND_ASSIGN(RegistryConfig registry, DecodeRegistry(config, options));
  EXPECT_EQ(registry.timeout, 5u);
  EXPECT_THAT(warnings,
              ElementsAre(R"(device.backend.config.tiemout: unknown key (did you mean "timeout"?))",
                          "device.backend.config.x: unknown key"));
}

TEST(Config, RangeViolationNamesBounds) {
  EXPECT_THAT(
      ParseJsonConfig<NydusdConfig>(
          R"({"device": {"backend": {"type": "oss"}}, "fs_prefetch": {"threads_count": 0}})"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("fs_prefetch.threads_count: 0 is out of range [1, 1024]")));
}

TEST(Config, ArrayElementsAndMapValuesHavePaths) {
  ASSERT_OK_AND_ASSIGN(
      NydusdConfig config,
      ParseJsonConfig<NydusdConfig>(NydusdWithRegistry(
          R"({"mirrors": [{"host": "a", "headers": {"X-Ok": "1", "X-Foo": 1}}]})")));
  EXPECT_THAT(DecodeRegistry(config), StatusIs(absl::StatusCode::kInvalidArgument,
                                               Eq("device.backend.config.mirrors[0].headers.X-Foo: "
                                                  "expected string, got integer 1")));
  ASSERT_OK_AND_ASSIGN(config, ParseJsonConfig<NydusdConfig>(NydusdWithRegistry(
                                   R"({"mirrors": [{"host": "a"}, {"host": "b"}, {}]})")));
  EXPECT_THAT(DecodeRegistry(config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("device.backend.config.mirrors[2].host: required key is missing")));
}

struct Headers {
  std::map<std::string, int> values;

  template <typename V>
  void Fields(V& v) {
    v("values", values);
  }
};

TEST(Config, MapKeysThatAreNotWordsAreQuotedInPaths) {
  EXPECT_THAT(ParseJsonConfig<Headers>(R"({"values": {"a.b": "x"}})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(R"(values["a.b"]: expected integer, got string "x")")));
}

struct Integers {
  int8_t i8 = 0;
  uint8_t u8 = 0;
  int16_t i16 = 0;
  uint16_t u16 = 0;
  int32_t i32 = 0;
  uint32_t u32 = 0;
  int64_t i64 = 0;
  uint64_t u64 = 0;
  double ratio = 0;

  template <typename V>
  void Fields(V& v) {
    v("i8", i8);
    v("u8", u8);
    v("i16", i16);
    v("u16", u16);
    v("i32", i32);
    v("u32", u32);
    v("i64", i64);
    v("u64", u64);
    v("ratio", ratio, Range(0.0, 1.0));
  }
};

TEST(Config, IntegersAreCheckedAgainstTheirType) {
  ASSERT_OK_AND_ASSIGN(Integers ok, ParseJsonConfig<Integers>(R"({
      "i8": -128, "u8": 255, "i16": -32768, "u16": 65535, "i32": 2147483647,
      "u32": 4294967295, "i64": -9223372036854775808, "u64": 18446744073709551615})"));
  EXPECT_EQ(ok.i8, -128);
  EXPECT_EQ(ok.u8, 255);
  EXPECT_EQ(ok.i16, -32768);
  EXPECT_EQ(ok.u16, 65535);
  EXPECT_EQ(ok.i32, 2147483647);
  EXPECT_EQ(ok.u32, 4294967295u);
  EXPECT_EQ(ok.i64, INT64_MIN);
  EXPECT_EQ(ok.u64, UINT64_MAX);

  EXPECT_THAT(ParseJsonConfig<Integers>(R"({"u32": -1})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("u32: -1 is out of range for uint32 [0, 4294967295]")));
  EXPECT_THAT(ParseJsonConfig<Integers>(R"({"i32": 3000000000})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("i32: 3000000000 is out of range for int32 [-2147483648, 2147483647]")));
  EXPECT_THAT(ParseJsonConfig<Integers>(R"({"i8": 128})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("i8: 128 is out of range for int8 [-128, 127]")));
  EXPECT_THAT(ParseJsonConfig<Integers>(R"({"u64": 18446744073709551616})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is out of range for uint64 [0, 18446744073709551615]")));
}

TEST(Config, FractionalNumbersAreNotIntegers) {
  EXPECT_THAT(
      ParseJsonConfig<Integers>(R"({"i32": 5.5})"),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("i32: expected integer, got number 5.5")));
  ASSERT_OK_AND_ASSIGN(Integers whole, ParseJsonConfig<Integers>(R"({"i32": 1e6, "ratio": 1})"));
  EXPECT_EQ(whole.i32, 1000000);
  EXPECT_EQ(whole.ratio, 1.0);
  EXPECT_THAT(
      ParseJsonConfig<Integers>(R"({"ratio": 1.5})"),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("ratio: 1.5 is out of range [0, 1]")));
}

TEST(Config, OneOfStringsAndEnums) {
  EXPECT_THAT(
      ParseJsonConfig<NydusdConfig>(R"({"device": {"backend": {"type": "oss"}}, "mode": "fast"})"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq(R"(mode: "fast" is not one of direct, cached)")));
  EXPECT_THAT(ParseJsonConfig<NydusdConfig>(R"({"device": {"backend": {"type": "s3"}}})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(R"(device.backend.type: "s3" is not one of registry, localfs, oss)")));
  ASSERT_OK_AND_ASSIGN(NydusdConfig config, ParseJsonConfig<NydusdConfig>(
                                                R"({"device": {"backend": {"type": "oss"}},
                                                    "mode": "cached"})"));
  EXPECT_EQ(config.mode, Mode::kCached);
  EXPECT_EQ(EncodeConfig(config)["mode"], "cached");
}

struct Timeouts {
  absl::Duration gc_interval = absl::Minutes(1);
  absl::Duration timeout = absl::Seconds(5);
  std::optional<absl::Duration> deadline;

  template <typename V>
  void Fields(V& v) {
    v("gcInterval", gc_interval, Range(absl::Milliseconds(100), absl::Hours(24)));
    v("timeout", timeout, NumberAsSeconds());
    v("deadline", deadline);
  }
};

TEST(Config, DurationsParseGoStyleStrings) {
  for (const auto& [text, want] :
       std::vector<std::pair<std::string, absl::Duration>>{{"1m0s", absl::Minutes(1)},
                                                           {"30s", absl::Seconds(30)},
                                                           {"500ms", absl::Milliseconds(500)},
                                                           {"1h", absl::Hours(1)},
                                                           {"1h30m", absl::Minutes(90)}}) {
    EXPECT_THAT(ParseJsonConfig<Timeouts>(StrCat(R"({"gcInterval": ")", text, R"("})")),
                IsOkAndHolds(::testing::Field(&Timeouts::gc_interval, want)))
        << text;
  }
}

TEST(Config, DurationsRejectNumbersUnlessSecondsAllowed) {
  EXPECT_THAT(
      ParseJsonConfig<Timeouts>(R"({"gcInterval": 60})"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq(R"(gcInterval: expected duration string such as "30s", got integer 60)")));
  EXPECT_THAT(ParseJsonConfig<Timeouts>(R"({"gcInterval": "1 minute"})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(R"(gcInterval: invalid duration "1 minute")")));
  EXPECT_THAT(ParseJsonConfig<Timeouts>(R"({"gcInterval": "2d"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gcInterval")));
  EXPECT_THAT(ParseJsonConfig<Timeouts>(R"({"gcInterval": "10ms"})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("gcInterval: 10ms is out of range [100ms, 24h]")));
  EXPECT_THAT(ParseJsonConfig<Timeouts>(R"({"timeout": 7})"),
              IsOkAndHolds(::testing::Field(&Timeouts::timeout, absl::Seconds(7))));
  EXPECT_THAT(ParseJsonConfig<Timeouts>(R"({"timeout": 0.25})"),
              IsOkAndHolds(::testing::Field(&Timeouts::timeout, absl::Milliseconds(250))));
  EXPECT_THAT(ParseJsonConfig<Timeouts>(R"({"timeout": "2s"})"),
              IsOkAndHolds(::testing::Field(&Timeouts::timeout, absl::Seconds(2))));
}

TEST(Config, OptionalAbsentStaysNullopt) {
  ASSERT_OK_AND_ASSIGN(Timeouts absent, ParseJsonConfig<Timeouts>("{}"));
  EXPECT_EQ(absent.deadline, std::nullopt);
  EXPECT_EQ(absent.gc_interval, absl::Minutes(1));  // member initializer
  ASSERT_OK_AND_ASSIGN(Timeouts null, ParseJsonConfig<Timeouts>(R"({"deadline": null})"));
  EXPECT_EQ(null.deadline, std::nullopt);
  ASSERT_OK_AND_ASSIGN(Timeouts set, ParseJsonConfig<Timeouts>(R"({"deadline": "10s"})"));
  EXPECT_EQ(set.deadline, absl::Seconds(10));
}

TEST(Config, NullKeepsTheDefault) {
  ASSERT_OK_AND_ASSIGN(Timeouts config,
                       ParseJsonConfig<Timeouts>(R"({"gcInterval": null, "timeout": null})"));
  EXPECT_EQ(config.gc_interval, absl::Minutes(1));
  EXPECT_EQ(config.timeout, absl::Seconds(5));
}

struct Ports {
  std::vector<int> ports;
  std::map<std::string, std::optional<int>> named;

  template <typename V>
  void Fields(V& v) {
    v("ports", ports, Range(1, 65535));
    v("named", named, Range(1, 65535));
  }
};

TEST(Config, OptionsApplyToContainerElements) {
  ASSERT_OK_AND_ASSIGN(Ports ok, ParseJsonConfig<Ports>(R"({"ports": [1, 2], "named": {"a": 3}})"));
  EXPECT_THAT(ok.ports, ElementsAre(1, 2));
  EXPECT_EQ(ok.named["a"], 3);
  EXPECT_THAT(
      ParseJsonConfig<Ports>(R"({"ports": [1, 0]})"),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("ports[1]: 0 is out of range [1, 65535]")));
  EXPECT_THAT(ParseJsonConfig<Ports>(R"({"named": {"b": 70000}})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("named.b: 70000 is out of range [1, 65535]")));
}

struct Window {
  int low = 0;
  int high = 10;

  template <typename V>
  void Fields(V& v) {
    v("low", low);
    v("high", high);
  }
  absl::Status Validate() const {
    if (low > high) return absl::InvalidArgumentError("low must not exceed high");
    return absl::OkStatus();
  }
};

struct Outer {
  Window window;

  template <typename V>
  void Fields(V& v) {
    v("window", window);
  }
};

TEST(Config, ValidateRunsAfterFieldsAndNamesTheStruct) {
  EXPECT_OK(ParseJsonConfig<Outer>(R"({"window": {"low": 3}})"));
  EXPECT_THAT(ParseJsonConfig<Outer>(R"({"window": {"low": 30}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("window: low must not exceed high")));
}

TEST(Config, JsonSyntaxErrorsHaveLineAndColumn) {
  EXPECT_THAT(ParseJsonConfig<Timeouts>("{\n  \"timeout\": 5,\n  oops\n}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("JSON syntax error at line 3, column 3")));
  EXPECT_THAT(ParseJsonConfig<Timeouts>(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON syntax error")));
}

TEST(Config, EncodeRoundTripsAndRedactsSecrets) {
  ASSERT_OK_AND_ASSIGN(NydusdConfig config, ParseJsonConfig<NydusdConfig>(kNydusdJson));
  nlohmann::json encoded = EncodeConfig(config);
  EXPECT_EQ(encoded["fs_prefetch"]["threads_count"], 10);
  EXPECT_EQ(encoded["device"]["backend"]["config"]["mirrors"][0]["host"], "http://127.0.0.1:65001");
  ASSERT_OK_AND_ASSIGN(NydusdConfig again, DecodeConfig<NydusdConfig>(encoded));
  EXPECT_EQ(EncodeConfig(again), encoded);

  ASSERT_OK_AND_ASSIGN(RegistryConfig registry, DecodeRegistry(config));
  EXPECT_EQ(EncodeConfig(registry)["auth"], "");  // empty secrets are shown as empty
  registry.auth = "dXNlcjpwYXNz";
  EXPECT_EQ(EncodeConfig(registry)["auth"], "<redacted>");
  EXPECT_EQ(EncodeConfig(registry, {.redact_secrets = false})["auth"], "dXNlcjpwYXNz");
}

TEST(Config, EncodeFormatsDurationsAndOmitsNullopt) {
  Timeouts timeouts;
  timeouts.timeout = absl::Milliseconds(1500);
  nlohmann::json encoded = EncodeConfig(timeouts);
  EXPECT_EQ(encoded, nlohmann::json::parse(R"({"gcInterval": "1m", "timeout": 1.5})"));
  timeouts.deadline = absl::Seconds(3);
  timeouts.timeout = absl::Seconds(2);
  encoded = EncodeConfig(timeouts);
  EXPECT_EQ(encoded["deadline"], "3s");
  EXPECT_EQ(encoded["timeout"], 2);
  EXPECT_THAT(DecodeConfig<Timeouts>(encoded),
              IsOkAndHolds(::testing::Field(&Timeouts::deadline, absl::Seconds(3))));
}

}  // namespace
}  // namespace naiad
