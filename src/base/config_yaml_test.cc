// YAML decoding and file loading of base/config.h.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "base/config.h"
#include "base/env.h"
#include "base/fault_injection.h"
#include "base/file.h"
#include "base/status_matchers.h"

namespace naiad {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---- A slice of Dragonfly's dfdaemon configuration ----

struct TcpListen {
  std::string listen = "0.0.0.0";
  int port = 65001;

  template <typename V>
  void Fields(V& v) {
    v("listen", listen);
    v("port", port, Range(1, 65535));
  }
};

struct RegistryMirror {
  std::string url;
  bool insecure = false;

  template <typename V>
  void Fields(V& v) {
    v("url", url, Required());
    v("insecure", insecure);
  }
};

struct ProxyRule {
  std::string regx;
  bool use_https = false;
  bool direct = false;

  template <typename V>
  void Fields(V& v) {
    v("regx", regx, Required());
    v("useHTTPS", use_https);
    v("direct", direct);
  }
};

struct ProxyConfig {
  std::string default_filter;
  TcpListen tcp_listen;
  RegistryMirror registry_mirror;
  std::vector<ProxyRule> proxies;

  template <typename V>
  void Fields(V& v) {
    v("defaultFilter", default_filter);
    v("tcpListen", tcp_listen);
    v("registryMirror", registry_mirror);
    v("proxies", proxies);
  }
};

struct DfdaemonConfig {
  ProxyConfig proxy;
  absl::Duration gc_interval = absl::Minutes(1);

  template <typename V>
  void Fields(V& v) {
    v("proxy", proxy);
    v("gcInterval", gc_interval);
  }
};

constexpr char kDfdaemonYaml[] = R"(# dfdaemon.yaml
gcInterval: 1m0s
proxy:
  defaultFilter: "Expires&Signature&ns"
  tcpListen:
    port: 65001
  registryMirror:
    url: https://index.docker.io
  proxies:
    - regx: blobs/sha256.*
    - regx: manifests
      useHTTPS: true
)";

TEST(YamlConfig, LoadsDfdaemonYaml) {
  ASSERT_OK_AND_ASSIGN(DfdaemonConfig config, ParseYamlConfig<DfdaemonConfig>(kDfdaemonYaml));
  EXPECT_EQ(config.gc_interval, absl::Minutes(1));
  EXPECT_EQ(config.proxy.default_filter, "Expires&Signature&ns");
  EXPECT_EQ(config.proxy.tcp_listen.port, 65001);
  EXPECT_EQ(config.proxy.tcp_listen.listen, "0.0.0.0");
  EXPECT_EQ(config.proxy.registry_mirror.url, "https://index.docker.io");
  ASSERT_EQ(config.proxy.proxies.size(), 2u);
  EXPECT_EQ(config.proxy.proxies[0].regx, "blobs/sha256.*");
  EXPECT_TRUE(config.proxy.proxies[1].use_https);
}

TEST(YamlConfig, LoadsFlowStyleDfdaemonYaml) {
  constexpr char kFlow[] =
      R"(proxy: {defaultFilter: "Expires&Signature&ns", tcpListen: {port: 65001},
  registryMirror: {url: https://index.docker.io}, proxies: [{regx: blobs/sha256.*}]}
gcInterval: 1m0s)";
  ASSERT_OK_AND_ASSIGN(DfdaemonConfig config, ParseYamlConfig<DfdaemonConfig>(kFlow));
  EXPECT_EQ(config.proxy.registry_mirror.url, "https://index.docker.io");
  ASSERT_EQ(config.proxy.proxies.size(), 1u);
  EXPECT_EQ(config.proxy.proxies[0].regx, "blobs/sha256.*");
  EXPECT_EQ(config.gc_interval, absl::Minutes(1));
}

TEST(YamlConfig, ErrorsNameThePathAndLine) {
  EXPECT_THAT(ParseYamlConfig<DfdaemonConfig>("proxy:\n  tcpListen:\n    port: 70000\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("proxy.tcpListen.port: 70000 is out of range [1, 65535] (line 3)")));
  EXPECT_THAT(ParseYamlConfig<DfdaemonConfig>(
                  "proxy:\n  proxies:\n  - regx: a\n  - regx: b\n  - regx: 7\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("proxy.proxies[2].regx: expected string, got integer 7 (line 5)")));
  // A missing key is reported at its parent's line.
  EXPECT_THAT(ParseYamlConfig<DfdaemonConfig>("gcInterval: 1s\nproxy:\n  registryMirror:\n"
                                              "    insecure: true\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("proxy.registryMirror.url: required key is missing (line 3)")));
  EXPECT_THAT(ParseYamlConfig<DfdaemonConfig>("proxy:\n  tcpListen:\n    prot: 1\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(R"(proxy.tcpListen.prot: unknown key (did you mean "port"?) (line 3))")));
}

TEST(YamlConfig, DurationsFromYaml) {
  EXPECT_THAT(ParseYamlConfig<DfdaemonConfig>("gcInterval: 60\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(R"(gcInterval: expected duration string such as "30s", got integer 60 )"
                          "(line 1)")));
  ASSERT_OK_AND_ASSIGN(DfdaemonConfig config, ParseYamlConfig<DfdaemonConfig>("gcInterval: 500ms"));
  EXPECT_EQ(config.gc_interval, absl::Milliseconds(500));
}

TEST(YamlConfig, FollowsTheYaml12CoreSchema) {
  ASSERT_OK_AND_ASSIGN(nlohmann::json json, YamlToJson(R"(
t: true
f: False
yes_is_a_string: yes
on_is_a_string: on
n1: null
n2: ~
n3:
i: -42
big: 18446744073709551615
hex: 0x1F
oct: 0o17
f1: 1.5e3
f2: .5
inf: -.inf
nan: .nan
quoted_int: "5"
single_quoted_bool: 'true'
tagged: !!str 7
block: |
  two
  lines
version: 1.10
url: https://index.docker.io
)"));
  EXPECT_EQ(json["t"], true);
  EXPECT_EQ(json["f"], false);
  EXPECT_EQ(json["yes_is_a_string"], "yes");
  EXPECT_EQ(json["on_is_a_string"], "on");
  EXPECT_TRUE(json["n1"].is_null());
  EXPECT_TRUE(json["n2"].is_null());
  EXPECT_TRUE(json["n3"].is_null());
  EXPECT_EQ(json["i"], -42);
  EXPECT_EQ(json["big"].get<uint64_t>(), UINT64_MAX);
  EXPECT_EQ(json["hex"], 31);
  EXPECT_EQ(json["oct"], 15);
  EXPECT_EQ(json["f1"], 1500.0);
  EXPECT_EQ(json["f2"], 0.5);
  EXPECT_TRUE(std::isinf(json["inf"].get<double>()) && json["inf"].get<double>() < 0);
  EXPECT_TRUE(std::isnan(json["nan"].get<double>()));
  EXPECT_EQ(json["quoted_int"], "5");
  EXPECT_EQ(json["single_quoted_bool"], "true");
  EXPECT_EQ(json["tagged"], "7");
  EXPECT_EQ(json["block"], "two\nlines\n");
  EXPECT_EQ(json["version"], 1.1);
  EXPECT_EQ(json["url"], "https://index.docker.io");
}

TEST(YamlConfig, QuotedScalarsAreStrings) {
  EXPECT_THAT(
      ParseYamlConfig<DfdaemonConfig>("proxy:\n  tcpListen:\n    port: \"65001\"\n"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq(R"(proxy.tcpListen.port: expected integer, got string "65001" (line 3))")));
}

TEST(YamlConfig, SyntaxErrorsHaveLineAndColumn) {
  EXPECT_THAT(ParseYamlConfig<DfdaemonConfig>("proxy:\n  proxies: [a, b\ngcInterval: 1s\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("YAML syntax error at line 3, column")));
  EXPECT_THAT(ParseYamlConfig<DfdaemonConfig>("a: 1\n\tb: 2\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("YAML syntax error at line")));
}

TEST(YamlConfig, DuplicateKeysAreErrors) {
  EXPECT_THAT(
      ParseYamlConfig<DfdaemonConfig>("gcInterval: 1s\nproxy: {}\ngcInterval: 2s\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("gcInterval: duplicate key (line 3)")));
}

TEST(YamlConfig, OneDocumentOnly) {
  EXPECT_THAT(
      ParseYamlConfig<DfdaemonConfig>("gcInterval: 1s\n---\ngcInterval: 2s\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("expected one YAML document, found 2")));
}

TEST(YamlConfig, EmptyDocumentGivesDefaults) {
  ASSERT_OK_AND_ASSIGN(DfdaemonConfig config, ParseYamlConfig<DfdaemonConfig>("# nothing\n"));
  EXPECT_EQ(config.gc_interval, absl::Minutes(1));
  EXPECT_EQ(config.proxy.tcp_listen.port, 65001);
}

TEST(YamlConfig, AnchorsAndAliasesExpand) {
  ASSERT_OK_AND_ASSIGN(DfdaemonConfig config,
                       ParseYamlConfig<DfdaemonConfig>(R"(
rule: &blobs {regx: blobs/sha256.*}
proxy:
  proxies: [*blobs, *blobs]
)",
                                                       {.unknown_keys = UnknownKeys::kWarn}));
  ASSERT_EQ(config.proxy.proxies.size(), 2u);
  EXPECT_EQ(config.proxy.proxies[1].regx, "blobs/sha256.*");
}

TEST(YamlConfig, NonScalarKeysAreErrors) {
  EXPECT_THAT(ParseYamlConfig<DfdaemonConfig>("proxy:\n  ? [a, b]\n  : 1\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("proxy: mapping keys must be scalars (line 2)")));
}

// ---- Files ----

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-config-")); }
  std::string Write(std::string_view name, std::string_view content) {
    std::string path = dir_.Join(name);
    EXPECT_OK(WriteFileAtomically(path, content));
    return path;
  }

  TempDir dir_;
};

TEST_F(ConfigFileTest, FormatFollowsTheExtension) {
  ASSERT_OK_AND_ASSIGN(DfdaemonConfig yaml,
                       LoadConfigFile<DfdaemonConfig>(Write("d.yaml", kDfdaemonYaml)));
  EXPECT_EQ(yaml.proxy.tcp_listen.port, 65001);
  ASSERT_OK_AND_ASSIGN(DfdaemonConfig yml,
                       LoadConfigFile<DfdaemonConfig>(Write("d.yml", "gcInterval: 2s")));
  EXPECT_EQ(yml.gc_interval, absl::Seconds(2));
  ASSERT_OK_AND_ASSIGN(DfdaemonConfig json,
                       LoadConfigFile<DfdaemonConfig>(Write("d.json", R"({"gcInterval": "3s"})")));
  EXPECT_EQ(json.gc_interval, absl::Seconds(3));
  // YAML syntax in a .json file is a JSON error.
  EXPECT_THAT(LoadConfigFile<DfdaemonConfig>(Write("bad.json", "gcInterval: 3s")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON syntax error")));
}

TEST_F(ConfigFileTest, FormatIsSniffedWithoutAKnownExtension) {
  ASSERT_OK_AND_ASSIGN(DfdaemonConfig json, LoadConfigFile<DfdaemonConfig>(
                                                Write("d.conf", "\n  {\"gcInterval\": \"4s\"}")));
  EXPECT_EQ(json.gc_interval, absl::Seconds(4));
  ASSERT_OK_AND_ASSIGN(DfdaemonConfig yaml,
                       LoadConfigFile<DfdaemonConfig>(Write("dfdaemon", "gcInterval: 5s\n")));
  EXPECT_EQ(yaml.gc_interval, absl::Seconds(5));
}

TEST_F(ConfigFileTest, ErrorsStartWithTheFileName) {
  std::string path = Write("d.yaml", "proxy:\n  tcpListen:\n    port: 0\n");
  EXPECT_THAT(
      LoadConfigFile<DfdaemonConfig>(path),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq(StrCat(path, ": proxy.tcpListen.port: 0 is out of range [1, 65535] (line 3)"))));
  std::string broken = Write("broken.yaml", "a: [1,\n");
  EXPECT_THAT(LoadConfigFile<DfdaemonConfig>(broken),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith(StrCat(broken, ": YAML syntax error at line "))));
  std::string broken_json = Write("broken.json", "{\n\"a\": }");
  EXPECT_THAT(LoadConfigFile<DfdaemonConfig>(broken_json),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith(StrCat(broken_json, ": JSON syntax error at line 2, column 6"))));
}

TEST_F(ConfigFileTest, WarningsNameTheFile) {
  std::string path = Write("d.yaml", "gcInterval: 1s\nextra: 1\n");
  std::vector<std::string> warnings;
  ASSERT_OK(LoadConfigFile<DfdaemonConfig>(
      path, {.unknown_keys = UnknownKeys::kWarn, .warnings = &warnings}));
  EXPECT_THAT(warnings, ElementsAre(StrCat(path, ": extra: unknown key (line 2)")));
}

TEST_F(ConfigFileTest, MissingFileIsNotFound) {
  EXPECT_THAT(LoadConfigFile<DfdaemonConfig>(dir_.Join("absent.yaml")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent.yaml")));
}

TEST_F(ConfigFileTest, ReadsThroughTheGivenFileSystem) {
  std::string path = Write("d.yaml", kDfdaemonYaml);
  FaultInjectingFileSystem fs(FileSystem::Default());
  fs.AddFault({.op = FsOp::kRead, .path = "d.yaml", .status = absl::DataLossError("bad disk")});
  EXPECT_THAT(LoadConfigFile<DfdaemonConfig>(path, {.file_system = &fs}),
              StatusIs(absl::StatusCode::kDataLoss, Eq("bad disk")));
  EXPECT_EQ(fs.calls(FsOp::kRead), 1);
}

}  // namespace
}  // namespace naiad
