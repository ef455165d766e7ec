// Message text for base/config.h errors.
#include <cmath>
#include <string>
#include <string_view>

#include "base/config.h"
#include "base/strings.h"

namespace naiad::config_internal {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxQuoted = 80;

// dump() that cannot throw: invalid UTF-8 is replaced rather than reported.
std::string SafeDump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

std::string QuoteString(std::string_view s) {
  if (s.size() <= kMaxQuoted) return SafeDump(Json(std::string(s)));
  std::string quoted = SafeDump(Json(std::string(s.substr(0, kMaxQuoted))));
  quoted.insert(quoted.size() - 1, "...");
  return quoted;
}

std::string DescribeScalar(const Json& j) {
  if (const auto* d = j.get_ptr<const Json::number_float_t*>()) {
    if (std::isnan(*d)) return ".nan";
    if (std::isinf(*d)) return *d > 0 ? ".inf" : "-.inf";
  }
  if (const auto* s = j.get_ptr<const Json::string_t*>()) return QuoteString(*s);
  return SafeDump(j);
}

std::string DescribeJson(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return StrCat("boolean ", DescribeScalar(j));
    case Json::value_t::string:
      return StrCat("string ", DescribeScalar(j));
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return StrCat("integer ", DescribeScalar(j));
    case Json::value_t::number_float:
      return StrCat("number ", DescribeScalar(j));
    case Json::value_t::array:
      return "array";
    case Json::value_t::object:
      return "object";
    default:
      return "unsupported value";
  }
}

std::string FormatLocated(std::string_view source, std::string_view path, std::string_view problem,
                          int line) {
  std::string out;
  if (!source.empty()) StrAppend(&out, source, ": ");
  if (!path.empty()) StrAppend(&out, path, ": ");
  StrAppend(&out, problem);
  if (line > 0) StrAppend(&out, " (line ", line, ")");
  return out;
}

}  // namespace naiad::config_internal
