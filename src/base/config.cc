// Key paths, error formatting and the scalar decoders of base/config.h.
#include "base/config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_join.h"
#include "base/logging.h"
#include "base/strings.h"

namespace naiad::config_internal {
namespace {

using Json = nlohmann::json;

// A key that can appear bare in a path: letters, digits, '-', '_', '/', ':'.
bool IsPlainKey(std::string_view key) {
  if (key.empty()) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '/' ||
           c == ':';
  });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Edit distance where an adjacent transposition costs 1 ("tiemout" -> "timeout" is 1).
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// "unknown key", plus a suggestion when a declared key is a likely intended spelling.
std::string UnknownKeyProblem(std::string_view key, const std::vector<std::string>& known) {
  if (key.size() > 64) return "unknown key";  // EditDistance is quadratic
  const std::string* best = nullptr;
  size_t best_distance = 3;
  for (const std::string& candidate : known) {
    size_t distance = EditDistance(Lower(key), Lower(candidate));
    if (distance < best_distance && 2 * distance < key.size()) {
      best = &candidate;
      best_distance = distance;
    }
  }
  if (best == nullptr) return "unknown key";
  return StrCat("unknown key (did you mean ", QuoteString(*best), "?)");
}

// The integer in `j` if it fits [min, max]; `type` names the target in errors.
absl::StatusOr<__int128> IntegerIn(const Context& ctx, std::string_view path, const Json& j,
                                   int64_t min, uint64_t max, std::string_view type) {
  auto out_of_range = [&] {
    return ctx.Error(
        path, StrCat(DescribeScalar(j), " is out of range for ", type, " [", min, ", ", max, "]"));
  };
  __int128 value = 0;
  if (const auto* u = j.get_ptr<const Json::number_unsigned_t*>()) {
    value = *u;
  } else if (const auto* i = j.get_ptr<const Json::number_integer_t*>()) {
    value = *i;
  } else if (const auto* d = j.get_ptr<const Json::number_float_t*>()) {
    if (!std::isfinite(*d) || std::trunc(*d) != *d) return ctx.TypeError(path, "integer", j);
    if (*d < -0x1p63 || *d >= 0x1p64) return out_of_range();
    value = static_cast<__int128>(*d);
  } else {
    return ctx.TypeError(path, "integer", j);
  }
  if (value < min || value > max) return out_of_range();
  return value;
}

}  // namespace

std::string ChildPath(std::string_view parent, std::string_view key) {
  if (!IsPlainKey(key)) return StrCat(parent, "[", QuoteString(key), "]");
  if (parent.empty()) return std::string(key);
  return StrCat(parent, ".", key);
}

std::string IndexPath(std::string_view parent, size_t index) {
  return StrCat(parent, "[", index, "]");
}

const Json& EmptyObject() {
  static const Json* const kEmpty = new Json(Json::object());
  return *kEmpty;
}

std::string Context::Format(std::string_view path, std::string_view problem,
                            std::string_view line_path) const {
  int line = 0;
  if (lines_ != nullptr) {
    auto it = lines_->find(std::string(line_path));
    if (it != lines_->end()) line = it->second;
  }
  return FormatLocated(source_, path, problem, line);
}

absl::Status Context::ErrorNear(std::string_view path, std::string_view problem,
                                std::string_view line_path) const {
  return absl::InvalidArgumentError(Format(path, problem, line_path));
}

absl::Status Context::TypeError(std::string_view path, std::string_view expected,
                                const Json& got) const {
  return Error(path, StrCat("expected ", expected, ", got ", DescribeJson(got)));
}

absl::Status Context::Missing(std::string_view path, std::string_view parent, bool is_null) const {
  if (is_null) return Error(path, "required key is null");
  return ErrorNear(path, "required key is missing", parent);
}

absl::Status Context::CheckKeys(std::string_view path, const Json& object,
                                const std::vector<std::string>& known) const {
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) != known.end()) continue;
    std::string child = ChildPath(path, it.key());
    std::string problem = UnknownKeyProblem(it.key(), known);
    if (options_.unknown_keys == UnknownKeys::kError) return Error(child, problem);
    std::string warning = Format(child, problem, child);
    LogWarn("config warning", {{"detail", warning}});
    if (options_.warnings != nullptr) options_.warnings->push_back(std::move(warning));
  }
  return absl::OkStatus();
}

absl::Status DecodeBool(const Context& ctx, std::string_view path, const Json& j, bool& out) {
  const auto* value = j.get_ptr<const Json::boolean_t*>();
  if (value == nullptr) return ctx.TypeError(path, "boolean", j);
  out = *value;
  return absl::OkStatus();
}

absl::Status DecodeSigned(const Context& ctx, std::string_view path, const Json& j, int bits,
                          int64_t& out) {
  int64_t max = bits >= 64 ? INT64_MAX : (int64_t{1} << (bits - 1)) - 1;
  ASSIGN_OR_RETURN(__int128 value, IntegerIn(ctx, path, j, -max - 1, static_cast<uint64_t>(max),
                                             StrCat("int", bits)));
  out = static_cast<int64_t>(value);
  return absl::OkStatus();
}

absl::Status DecodeUnsigned(const Context& ctx, std::string_view path, const Json& j, int bits,
                            uint64_t& out) {
  uint64_t max = bits >= 64 ? UINT64_MAX : (uint64_t{1} << bits) - 1;
  ASSIGN_OR_RETURN(__int128 value, IntegerIn(ctx, path, j, 0, max, StrCat("uint", bits)));
  out = static_cast<uint64_t>(value);
  return absl::OkStatus();
}

absl::Status DecodeDouble(const Context& ctx, std::string_view path, const Json& j, double& out) {
  if (!j.is_number()) return ctx.TypeError(path, "number", j);
  if (const auto* d = j.get_ptr<const Json::number_float_t*>()) {
    out = *d;
  } else if (const auto* u = j.get_ptr<const Json::number_unsigned_t*>()) {
    out = static_cast<double>(*u);
  } else {
    out = static_cast<double>(*j.get_ptr<const Json::number_integer_t*>());
  }
  return absl::OkStatus();
}

absl::Status DecodeString(const Context& ctx, std::string_view path, const Json& j,
                          std::string& out) {
  const auto* value = j.get_ptr<const Json::string_t*>();
  if (value == nullptr) return ctx.TypeError(path, "string", j);
  out = *value;
  return absl::OkStatus();
}

absl::Status DecodeDuration(const Context& ctx, std::string_view path, const Json& j,
                            bool number_as_seconds, absl::Duration& out) {
  if (const auto* text = j.get_ptr<const Json::string_t*>()) {
    if (absl::ParseDuration(*text, &out)) return absl::OkStatus();
    return ctx.Error(path, StrCat("invalid duration ", QuoteString(*text),
                                  " (expected e.g. \"30s\", \"1m0s\", \"500ms\", \"1h\")"));
  }
  if (number_as_seconds && j.is_number_integer()) {
    int64_t seconds = 0;
    RETURN_IF_ERROR(DecodeSigned(ctx, path, j, 64, seconds));
    out = absl::Seconds(seconds);
    return absl::OkStatus();
  }
  const auto* seconds = j.get_ptr<const Json::number_float_t*>();
  if (number_as_seconds && seconds != nullptr && std::isfinite(*seconds)) {
    out = absl::Seconds(*seconds);
    return absl::OkStatus();
  }
  return ctx.TypeError(path,
                       number_as_seconds ? "duration (a string such as \"30s\" or seconds)"
                                         : "duration string such as \"30s\"",
                       j);
}

absl::Status NotOneOf(const Context& ctx, std::string_view path, std::string_view value,
                      const std::vector<std::string>& names) {
  return ctx.Error(path, StrCat(QuoteString(value), " is not one of ", absl::StrJoin(names, ", ")));
}

Json EncodeDuration(absl::Duration d, bool as_seconds) {
  if (!as_seconds || d == absl::InfiniteDuration() || d == -absl::InfiniteDuration()) {
    return absl::FormatDuration(d);
  }
  if (absl::Trunc(d, absl::Seconds(1)) == d) return absl::ToInt64Seconds(d);
  return absl::ToDoubleSeconds(d);
}

}  // namespace naiad::config_internal
