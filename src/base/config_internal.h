// File: base/config_internal.h
//
// Implementation details of base/config.h: the visitors that decode and encode a struct's
// Fields(), and the per-type decoders. Include base/config.h, not this header.
#pragma once

#include <concepts>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/config.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "nlohmann/json.hpp"

namespace naiad::config_internal {

// ---- Documents and errors (config.cc) ----

// YAML line numbers (1-based) of nodes, by key path.
using LineMap = std::unordered_map<std::string, int>;

struct Document {
  nlohmann::json json;
  LineMap lines;       // empty for JSON
  std::string source;  // file name, or empty for text
};

absl::StatusOr<Document> ParseJsonDocument(std::string_view text, std::string source);
absl::StatusOr<Document> ParseYamlDocument(std::string_view text, std::string source);
absl::StatusOr<Document> ReadDocument(const std::string& path, FileSystem* file_system);

// Key paths: ChildPath("a", "b") == "a.b", ChildPath("a", "x.y") == "a[\"x.y\"]",
// IndexPath("a", 2) == "a[2]".
std::string ChildPath(std::string_view parent, std::string_view key);
std::string IndexPath(std::string_view parent, size_t index);

// Message text (config_format.cc). QuoteString("a\"b") == "\"a\\\"b\"" (JSON escaping, long
// strings elided); DescribeScalar(5.5) == "5.5"; DescribeJson("5s") == "string \"5s\"".
std::string QuoteString(std::string_view s);
std::string DescribeScalar(const nlohmann::json& j);
std::string DescribeJson(const nlohmann::json& j);
// "<source>: <path>: <problem> (line N)"; empty parts and line 0 are left out.
std::string FormatLocated(std::string_view source, std::string_view path, std::string_view problem,
                          int line);

// Formats errors and reports unknown keys for one decode.
class Context {
 public:
  Context(const ConfigOptions& options, std::string_view source, const LineMap* lines)
      : options_(options), source_(source), lines_(lines) {}

  // InvalidArgument "<source>: <path>: <problem> (line N)", N being the line of `line_path`.
  absl::Status ErrorNear(std::string_view path, std::string_view problem,
                         std::string_view line_path) const;
  absl::Status Error(std::string_view path, std::string_view problem) const {
    return ErrorNear(path, problem, path);
  }
  // "<path>: expected <expected>, got string \"5s\"".
  absl::Status TypeError(std::string_view path, std::string_view expected,
                         const nlohmann::json& got) const;
  // A Required() key of the object at `parent` is absent or null.
  absl::Status Missing(std::string_view path, std::string_view parent, bool is_null) const;
  // Reports keys of `object` that are not in `known`: an error or warnings, per the options.
  absl::Status CheckKeys(std::string_view path, const nlohmann::json& object,
                         const std::vector<std::string>& known) const;

 private:
  std::string Format(std::string_view path, std::string_view problem,
                     std::string_view line_path) const;

  const ConfigOptions& options_;
  std::string_view source_;
  const LineMap* lines_;
};

// ---- Scalar decoders (config.cc) ----

absl::Status DecodeBool(const Context& ctx, std::string_view path, const nlohmann::json& j,
                        bool& out);
absl::Status DecodeSigned(const Context& ctx, std::string_view path, const nlohmann::json& j,
                          int bits, int64_t& out);
absl::Status DecodeUnsigned(const Context& ctx, std::string_view path, const nlohmann::json& j,
                            int bits, uint64_t& out);
absl::Status DecodeDouble(const Context& ctx, std::string_view path, const nlohmann::json& j,
                          double& out);
absl::Status DecodeString(const Context& ctx, std::string_view path, const nlohmann::json& j,
                          std::string& out);
absl::Status DecodeDuration(const Context& ctx, std::string_view path, const nlohmann::json& j,
                            bool number_as_seconds, absl::Duration& out);
absl::Status NotOneOf(const Context& ctx, std::string_view path, std::string_view value,
                      const std::vector<std::string>& names);
nlohmann::json EncodeDuration(absl::Duration d, bool as_seconds);
const nlohmann::json& EmptyObject();

// ---- Type traits ----

template <typename T>
inline constexpr bool kAlwaysFalse = false;

template <typename T>
inline constexpr bool kIsOptional = false;
template <typename T>
inline constexpr bool kIsOptional<std::optional<T>> = true;

template <typename T>
inline constexpr bool kIsVector = false;
template <typename T>
inline constexpr bool kIsVector<std::vector<T>> = true;

template <typename T>
inline constexpr bool kIsStringMap = false;
template <typename T>
inline constexpr bool kIsStringMap<std::map<std::string, T>> = true;

template <typename Want, typename... Opts>
inline constexpr bool kHasOption = (std::is_same_v<Want, Opts> || ...);

template <typename Want, typename First, typename... Rest>
const Want& GetOption(const First& first, const Rest&... rest) {
  if constexpr (std::is_same_v<Want, First>) {
    return first;
  } else {
    return GetOption<Want>(rest...);
  }
}

// Collects the names a struct's Fields() declares.
struct KeyLister {
  std::vector<std::string> names;
  template <typename F, typename... Opts>
  void operator()(std::string_view name, F&, const Opts&...) {
    names.emplace_back(name);
  }
};

template <typename T>
concept ConfigStruct = requires(T& t, KeyLister& v) {
  t.Fields(v);
};

template <typename T>
concept HasValidate = requires(const T& t) {
  { t.Validate() } -> std::convertible_to<absl::Status>;
};

// ---- Option checks, applied to each decoded scalar ----

template <typename T>
std::string FormatValue(const T& v) {
  if constexpr (std::is_same_v<T, absl::Duration>) {
    return absl::FormatDuration(v);
  } else if constexpr (std::is_integral_v<T>) {
    return StrCat(static_cast<std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>(v));
  } else {
    return StrCat(v);
  }
}

template <typename A, typename B>
bool Less(const A& a, const B& b) {
  if constexpr (std::is_integral_v<A> && std::is_integral_v<B>) {
    return std::cmp_less(a, b);
  } else {
    return a < b;
  }
}

template <typename V>
absl::Status CheckOne(const Context&, std::string_view, const V&, const RequiredOption&) {
  return absl::OkStatus();
}
template <typename V>
absl::Status CheckOne(const Context&, std::string_view, const V&, const SecretOption&) {
  return absl::OkStatus();
}
template <typename V>
absl::Status CheckOne(const Context&, std::string_view, const V&, const NumberAsSecondsOption&) {
  static_assert(std::is_same_v<V, absl::Duration>, "NumberAsSeconds() is for absl::Duration");
  return absl::OkStatus();
}
template <typename V, typename E>
absl::Status CheckOne(const Context&, std::string_view, const V&, const EnumOption<E>&) {
  static_assert(std::is_same_v<V, E>, "OneOf<E>() is for fields of enum type E");
  return absl::OkStatus();
}
template <typename V>
absl::Status CheckOne(const Context& ctx, std::string_view path, const V& value,
                      const OneOfOption& option) {
  static_assert(std::is_same_v<V, std::string>, "OneOf({...}) is for std::string fields");
  for (const std::string& name : option.names) {
    if (name == value) return absl::OkStatus();
  }
  return NotOneOf(ctx, path, value, option.names);
}
template <typename V, typename R>
absl::Status CheckOne(const Context& ctx, std::string_view path, const V& value,
                      const RangeOption<R>& range) {
  if (!Less(value, range.lo) && !Less(range.hi, value)) return absl::OkStatus();
  return ctx.Error(path, StrCat(FormatValue(value), " is out of range [", FormatValue(range.lo),
                                ", ", FormatValue(range.hi), "]"));
}

template <typename V, typename... Opts>
absl::Status CheckOptions(const Context& ctx, [[maybe_unused]] std::string_view path,
                          const V& value, const Opts&... opts) {
  absl::Status status;
  (void)((status = CheckOne(ctx, path, value, opts), status.ok()) && ...);
  return status;
}

// ---- Decoding ----

template <typename T, typename... Opts>
absl::Status DecodeValue(const Context& ctx, const std::string& path, const nlohmann::json& j,
                         T& out, const Opts&... opts);

template <typename E>
absl::Status DecodeEnum(const Context& ctx, std::string_view path, const nlohmann::json& j,
                        const EnumOption<E>& option, E& out) {
  std::string name;
  RETURN_IF_ERROR(DecodeString(ctx, path, j, name));
  std::vector<std::string> names;
  for (const auto& [candidate, value] : option.names) {
    if (candidate == name) {
      out = value;
      return absl::OkStatus();
    }
    names.push_back(candidate);
  }
  return NotOneOf(ctx, path, name, names);
}

template <typename T, typename... Opts>
absl::Status DecodeScalar(const Context& ctx, std::string_view path, const nlohmann::json& j,
                          T& out, const Opts&... opts) {
  if constexpr (std::is_same_v<T, bool>) {
    return DecodeBool(ctx, path, j, out);
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    int64_t value = 0;
    RETURN_IF_ERROR(DecodeSigned(ctx, path, j, sizeof(T) * 8, value));
    out = static_cast<T>(value);
    return absl::OkStatus();
  } else if constexpr (std::is_integral_v<T>) {
    uint64_t value = 0;
    RETURN_IF_ERROR(DecodeUnsigned(ctx, path, j, sizeof(T) * 8, value));
    out = static_cast<T>(value);
    return absl::OkStatus();
  } else if constexpr (std::is_floating_point_v<T>) {
    double value = 0;
    RETURN_IF_ERROR(DecodeDouble(ctx, path, j, value));
    out = static_cast<T>(value);
    return absl::OkStatus();
  } else if constexpr (std::is_same_v<T, std::string>) {
    return DecodeString(ctx, path, j, out);
  } else if constexpr (std::is_same_v<T, absl::Duration>) {
    return DecodeDuration(ctx, path, j, kHasOption<NumberAsSecondsOption, Opts...>, out);
  } else if constexpr (std::is_same_v<T, nlohmann::json>) {
    out = j;
    return absl::OkStatus();
  } else if constexpr (std::is_enum_v<T>) {
    static_assert(kHasOption<EnumOption<T>, Opts...>, "an enum field needs OneOf<E>({...})");
    return DecodeEnum(ctx, path, j, GetOption<EnumOption<T>>(opts...), out);
  } else {
    static_assert(kAlwaysFalse<T>, "unsupported config field type");
  }
}

// The visitor handed to Fields() when decoding: decodes each declared key of one object.
class FieldDecoder {
 public:
  FieldDecoder(const Context& ctx, const std::string& path, const nlohmann::json& object)
      : ctx_(ctx), path_(path), object_(object) {}

  template <typename F, typename... Opts>
  void operator()(std::string_view name, F& field, const Opts&... opts) {
    if (!status_.ok()) return;
    std::string path = ChildPath(path_, name);
    auto it = object_.find(std::string(name));
    if (it == object_.end() || it->is_null()) {
      if constexpr (kHasOption<RequiredOption, Opts...>) {
        status_ = ctx_.Missing(path, path_, it != object_.end());
      }
      return;
    }
    status_ = DecodeValue(ctx_, path, *it, field, opts...);
  }

  const absl::Status& status() const { return status_; }

 private:
  const Context& ctx_;
  const std::string& path_;
  const nlohmann::json& object_;
  absl::Status status_;
};

template <ConfigStruct T>
absl::Status DecodeStruct(const Context& ctx, const std::string& path, const nlohmann::json& j,
                          T& out) {
  const nlohmann::json& object = j.is_null() ? EmptyObject() : j;
  if (!object.is_object()) return ctx.TypeError(path, "object", j);
  KeyLister lister;
  out.Fields(lister);
  RETURN_IF_ERROR(ctx.CheckKeys(path, object, lister.names));
  FieldDecoder decoder(ctx, path, object);
  out.Fields(decoder);
  RETURN_IF_ERROR(decoder.status());
  if constexpr (HasValidate<T>) {
    absl::Status status = out.Validate();
    if (!status.ok()) return ctx.Error(path, ToStd(status.message()));
  }
  return absl::OkStatus();
}

template <typename T, typename... Opts>
absl::Status DecodeValue(const Context& ctx, const std::string& path, const nlohmann::json& j,
                         T& out, const Opts&... opts) {
  if constexpr (ConfigStruct<T>) {
    static_assert(
        ((std::is_same_v<Opts, RequiredOption> || std::is_same_v<Opts, SecretOption>)&&...),
        "only Required() and Secret() apply to a struct field");
    return DecodeStruct(ctx, path, j, out);
  } else if constexpr (kIsOptional<T>) {
    if (j.is_null()) {
      out.reset();
      return absl::OkStatus();
    }
    typename T::value_type value{};
    RETURN_IF_ERROR(DecodeValue(ctx, path, j, value, opts...));
    out = std::move(value);
    return absl::OkStatus();
  } else if constexpr (kIsVector<T>) {
    if (!j.is_array()) return ctx.TypeError(path, "array", j);
    T result;
    result.reserve(j.size());
    for (const nlohmann::json& item : j) {
      typename T::value_type element{};
      RETURN_IF_ERROR(DecodeValue(ctx, IndexPath(path, result.size()), item, element, opts...));
      result.push_back(std::move(element));
    }
    out = std::move(result);
    return absl::OkStatus();
  } else if constexpr (kIsStringMap<T>) {
    if (!j.is_object()) return ctx.TypeError(path, "object", j);
    T result;
    for (auto it = j.begin(); it != j.end(); ++it) {
      typename T::mapped_type element{};
      RETURN_IF_ERROR(DecodeValue(ctx, ChildPath(path, it.key()), *it, element, opts...));
      result.emplace(it.key(), std::move(element));
    }
    out = std::move(result);
    return absl::OkStatus();
  } else {
    RETURN_IF_ERROR(DecodeScalar(ctx, path, j, out, opts...));
    return CheckOptions(ctx, path, out, opts...);
  }
}

template <typename T>
absl::StatusOr<T> DecodeDocument(const Document& doc, const ConfigOptions& options) {
  Context ctx(options, doc.source, &doc.lines);
  T value{};
  RETURN_IF_ERROR(DecodeValue(ctx, std::string(), doc.json, value));
  return value;
}

// ---- Encoding ----

template <typename T, typename... Opts>
nlohmann::json EncodeValue(const T& value, const EncodeOptions& options, const Opts&... opts);

// The visitor handed to Fields() when encoding: adds each field to a JSON object.
class FieldEncoder {
 public:
  explicit FieldEncoder(const EncodeOptions& options) : options_(options) {}

  template <typename F, typename... Opts>
  void operator()(std::string_view name, const F& field, const Opts&... opts) {
    if constexpr (kIsOptional<F>) {
      if (!field.has_value()) return;
    }
    nlohmann::json& slot = object_[std::string(name)];
    if constexpr (kHasOption<SecretOption, Opts...>) {
      bool empty = false;
      if constexpr (std::is_same_v<F, std::string>) empty = field.empty();
      if (options_.redact_secrets && !empty) {
        slot = "<redacted>";
        return;
      }
    }
    slot = EncodeValue(field, options_, opts...);
  }

  nlohmann::json Take() { return std::move(object_); }

 private:
  const EncodeOptions& options_;
  nlohmann::json object_ = nlohmann::json::object();
};

template <typename T, typename... Opts>
nlohmann::json EncodeValue(const T& value, const EncodeOptions& options, const Opts&... opts) {
  if constexpr (ConfigStruct<T>) {
    FieldEncoder encoder(options);
    const_cast<T&>(value).Fields(encoder);  // FieldEncoder only reads the fields.
    return encoder.Take();
  } else if constexpr (kIsOptional<T>) {
    return value.has_value() ? EncodeValue(*value, options, opts...) : nlohmann::json();
  } else if constexpr (kIsVector<T>) {
    nlohmann::json array = nlohmann::json::array();
    for (const auto& element : value) array.push_back(EncodeValue(element, options, opts...));
    return array;
  } else if constexpr (kIsStringMap<T>) {
    nlohmann::json object = nlohmann::json::object();
    for (const auto& [key, element] : value) object[key] = EncodeValue(element, options, opts...);
    return object;
  } else if constexpr (std::is_same_v<T, absl::Duration>) {
    return EncodeDuration(value, kHasOption<NumberAsSecondsOption, Opts...>);
  } else if constexpr (std::is_enum_v<T>) {
    for (const auto& [name, e] : GetOption<EnumOption<T>>(opts...).names) {
      if (e == value) return name;
    }
    return static_cast<std::underlying_type_t<T>>(value);
  } else {
    return nlohmann::json(value);
  }
}

}  // namespace naiad::config_internal

namespace naiad {

template <typename T>
absl::StatusOr<T> DecodeConfig(const nlohmann::json& json, const ConfigOptions& options,
                               std::string_view path) {
  config_internal::Context ctx(options, "", nullptr);
  T value{};
  RETURN_IF_ERROR(config_internal::DecodeValue(ctx, std::string(path), json, value));
  return value;
}

template <typename T>
absl::StatusOr<T> ParseJsonConfig(std::string_view text, const ConfigOptions& options) {
  ASSIGN_OR_RETURN(config_internal::Document doc, config_internal::ParseJsonDocument(text, ""));
  return config_internal::DecodeDocument<T>(doc, options);
}

template <typename T>
absl::StatusOr<T> ParseYamlConfig(std::string_view text, const ConfigOptions& options) {
  ASSIGN_OR_RETURN(config_internal::Document doc, config_internal::ParseYamlDocument(text, ""));
  return config_internal::DecodeDocument<T>(doc, options);
}

template <typename T>
absl::StatusOr<T> LoadConfigFile(const std::string& path, const ConfigOptions& options) {
  ASSIGN_OR_RETURN(config_internal::Document doc,
                   config_internal::ReadDocument(path, options.file_system));
  return config_internal::DecodeDocument<T>(doc, options);
}

template <typename T>
nlohmann::json EncodeConfig(const T& value, const EncodeOptions& options) {
  return config_internal::EncodeValue(value, options);
}

}  // namespace naiad
