// File: base/config.h
//
// Typed configuration loading from JSON and YAML. A config struct declares its fields once, in a
// `Fields()` member template; that one declaration decodes the struct from JSON text, YAML text
// or a file, and encodes it back to JSON (for `--print-config`).
//
//   struct MirrorConfig {
//     std::string host;
//     std::map<std::string, std::string> headers;
//     int health_check_interval = 5;                   // defaults come from member initializers
//     absl::Duration timeout = absl::Seconds(5);
//
//     template <typename V>
//     void Fields(V& v) {
//       v("host", host, Required());
//       v("headers", headers);
//       v("health_check_interval", health_check_interval, Range(1, 3600));
//       v("timeout", timeout, NumberAsSeconds());
//     }
//   };
//
//   ASSIGN_OR_RETURN(MirrorConfig mirror, LoadConfigFile<MirrorConfig>("/etc/naiad/mirror.yaml"));
//
// Field types: bool; every integer type (range-checked against the type: -1 into uint32 or
// 3000000000 into int32 is an error, and so is 5.5; an integral float such as 1e6 is accepted);
// double; std::string; enum classes (with a OneOf<E> name table); absl::Duration (Go-style
// strings such as "1m0s", "30s", "500ms", "1h"; see NumberAsSeconds()); std::vector<T>;
// std::map<std::string, T>; std::optional<T>; nested structs with Fields(); and nlohmann::json,
// kept raw (decode it later with DecodeConfig<T>(json, options, "its.path"), e.g. once a sibling
// "type" key says which schema applies).
//
// Decoding rules:
//   - A key that is absent, or present with a null value, leaves the member's default. An
//     absent std::optional stays std::nullopt. Required() makes absence an error; it checks the
//     key's presence in its parent object only (an absent parent keeps its whole default).
//   - Keys that no field declares are errors (reported before any other error in the same
//     object, with a "did you mean" hint for near misses), or with UnknownKeys::kWarn,
//     warnings: appended to ConfigOptions::warnings and logged with LogWarn().
//   - Options given to a container field apply to its elements: Range(1, 9) on a
//     std::vector<int> checks every element.
//   - After a struct's fields decode, its `absl::Status Validate() const`, if it has one, runs;
//     its error is reported under the struct's path.
//   - YAML follows the YAML 1.2 core schema: plain true/false, null/~, integers (also 0x, 0o)
//     and floats (also .inf, .nan) are typed; every other scalar, and every quoted or block
//     scalar, is a string ("yes" and "on" are strings). Duplicate keys are errors.
//
// Every syntax or decoding error is InvalidArgument (LoadConfigFile() passes read errors such as
// NotFound through) and names the full key path and the problem:
//   device.backend.type: required key is missing
//   device.backend.config.timeout: expected integer, got string "5s"
//   device.backend.config.tiemout: unknown key (did you mean "timeout"?)
//   proxy.tcpListen.port: 70000 is out of range [1, 65535]
//   proxy.proxies[2].regx: expected string, got integer 7
//   mode: "fast" is not one of direct, cached
// Errors found in YAML end with " (line N)"; errors in a file start with "<file>: ". Syntax
// errors read "<file>: YAML syntax error at line 3, column 9: <detail>" (likewise for JSON).
// Map keys that are not plain words are quoted in paths: headers["a.b"].
//
// No exception escapes this API: every throwing nlohmann/yaml-cpp call is wrapped.
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace naiad {

class FileSystem;

// What to do with keys that no field declares.
enum class UnknownKeys { kError, kWarn };

struct ConfigOptions {
  UnknownKeys unknown_keys = UnknownKeys::kError;
  // Receives one message per warning, formatted like an error. May be null; warnings are
  // logged with LogWarn() either way.
  std::vector<std::string>* warnings = nullptr;
  // Where LoadConfigFile() reads; null means FileSystem::Default().
  FileSystem* file_system = nullptr;
};

struct EncodeOptions {
  // Fields marked Secret() encode as "<redacted>" when they are not empty.
  bool redact_secrets = true;
};

// ---- Field options, the optional trailing arguments of v(name, field, ...) ----

struct RequiredOption {};
// The key must be present (and not null).
inline RequiredOption Required() { return {}; }

template <typename T>
struct RangeOption {
  T lo;
  T hi;
};
// The value must lie in [lo, hi]: "port: 70000 is out of range [1, 65535]". Works for integers,
// doubles and absl::Duration.
template <typename T>
RangeOption<T> Range(T lo, T hi) {
  return {lo, hi};
}

struct OneOfOption {
  std::vector<std::string> names;
};
// A std::string field must hold one of `names`: OneOf({"direct", "cached"}).
inline OneOfOption OneOf(std::initializer_list<std::string_view> names) {
  return {std::vector<std::string>(names.begin(), names.end())};
}

template <typename E>
struct EnumOption {
  std::vector<std::pair<std::string, E>> names;
};
// The name table of an enum field; also used to encode it:
//   OneOf<Mode>({{"direct", Mode::kDirect}, {"cached", Mode::kCached}})
template <typename E>
EnumOption<E> OneOf(std::initializer_list<std::pair<std::string_view, E>> names) {
  EnumOption<E> option;
  for (const auto& [name, value] : names) option.names.emplace_back(std::string(name), value);
  return option;
}

struct NumberAsSecondsOption {};
// An absl::Duration field also accepts a number, meaning seconds (nydusd's "timeout": 5), and
// encodes as a number of seconds.
inline NumberAsSecondsOption NumberAsSeconds() { return {}; }

struct SecretOption {};
// Encoding redacts the value (see EncodeOptions). Decoding is unaffected.
inline SecretOption Secret() { return {}; }

// ---- Entry points ----

// Decodes an already parsed JSON value. `path` is the key path of `json` inside its document,
// used as the prefix of error paths ("device.backend.config").
template <typename T>
absl::StatusOr<T> DecodeConfig(const nlohmann::json& json, const ConfigOptions& options = {},
                               std::string_view path = "");

template <typename T>
absl::StatusOr<T> ParseJsonConfig(std::string_view text, const ConfigOptions& options = {});

template <typename T>
absl::StatusOr<T> ParseYamlConfig(std::string_view text, const ConfigOptions& options = {});

// Reads and decodes a file: JSON for *.json, YAML for *.yaml and *.yml, otherwise JSON if the
// first non-blank character is '{' or '[' and YAML if not. Errors start with the file name.
template <typename T>
absl::StatusOr<T> LoadConfigFile(const std::string& path, const ConfigOptions& options = {});

// Encodes a config struct (or any supported field type) to JSON. std::nullopt fields are omitted.
template <typename T>
nlohmann::json EncodeConfig(const T& value, const EncodeOptions& options = {});

// Converts YAML text to JSON under the rules above (exposed for tools and tests).
absl::StatusOr<nlohmann::json> YamlToJson(std::string_view text);

}  // namespace naiad

#include "base/config_internal.h"  // IWYU pragma: export
