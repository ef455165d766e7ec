// Parsing JSON and YAML text into the documents that base/config.h decodes. This is the only
// place nlohmann's and yaml-cpp's parsers run; their exceptions stop here.
#include <charconv>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "absl/strings/match.h"
#include "base/config.h"
#include "base/env.h"
#include "base/strings.h"
#include "yaml-cpp/yaml.h"

namespace naiad::config_internal {
namespace {

using Json = nlohmann::json;

// Aliases can make a small YAML document expand enormously; refuse past this many nodes.
constexpr size_t kMaxYamlNodes = 1 << 20;

absl::Status SyntaxError(std::string_view source, std::string_view detail) {
  return absl::InvalidArgumentError(FormatLocated(source, "", detail, 0));
}

// "[json.exception.parse_error.101] parse error at line 1, column 2: ..." becomes
// "JSON syntax error at line 1, column 2: ...".
std::string JsonErrorDetail(std::string_view what) {
  size_t bracket = what.find("] ");
  if (what.starts_with("[json.exception.") && bracket != std::string_view::npos) {
    what.remove_prefix(bracket + 2);
  }
  if (what.starts_with("parse error")) what.remove_prefix(std::string_view("parse error").size());
  return StrCat("JSON syntax error", what.starts_with(" ") || what.starts_with(":") ? "" : ": ",
                what);
}

std::string YamlErrorDetail(const YAML::Exception& e) {
  if (e.mark.is_null()) return StrCat("YAML syntax error: ", e.msg);
  return StrCat("YAML syntax error at line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ",
                e.msg);
}

bool IsDigits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// YAML 1.2 core schema integers: [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+.
std::optional<Json> ParseYamlInt(std::string_view s) {
  int base = 10;
  bool negative = false;
  if (s.starts_with("0o") || s.starts_with("0x")) {
    base = s[1] == 'o' ? 8 : 16;
    s.remove_prefix(2);
  } else if (s.starts_with("-") || s.starts_with("+")) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (base == 10 && !IsDigits(s)) return std::nullopt;
  uint64_t magnitude = 0;
  auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), magnitude, base);
  if (s.empty() || error != std::errc() || end != s.data() + s.size()) return std::nullopt;
  if (!negative) return Json(magnitude);
  if (magnitude > uint64_t{1} << 63) return std::nullopt;  // Too small: becomes a float.
  return Json(static_cast<int64_t>(0 - magnitude));
}

// Matches [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool IsYamlFloatSyntax(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i - start;
  };
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t mantissa = digits();
  if (i < s.size() && s[i] == '.') {
    ++i;
    mantissa += digits();
  }
  if (mantissa == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

std::optional<Json> ParseYamlFloat(std::string_view s) {
  std::string_view body = s;
  double sign = 1;
  if (body.starts_with("-") || body.starts_with("+")) {
    sign = body[0] == '-' ? -1 : 1;
    body.remove_prefix(1);
  }
  if (body == ".inf" || body == ".Inf" || body == ".INF") {
    return Json(sign * std::numeric_limits<double>::infinity());
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    return Json(std::numeric_limits<double>::quiet_NaN());
  }
  if (!IsYamlFloatSyntax(s)) return std::nullopt;
  if (s.starts_with("+")) s.remove_prefix(1);
  double value = 0;
  auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (error != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return Json(value);
}

// Resolves a plain (unquoted) scalar under the YAML 1.2 core schema.
Json ResolvePlainScalar(const std::string& s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (std::optional<Json> n = ParseYamlInt(s)) return *n;
  if (std::optional<Json> f = ParseYamlFloat(s)) return *f;
  return s;
}

// Converts a yaml-cpp node tree into JSON, recording the line of every key and element.
class YamlConverter {
 public:
  YamlConverter(std::string_view source, LineMap& lines) : source_(source), lines_(lines) {}

  absl::StatusOr<Json> Convert(const YAML::Node& node, const std::string& path) {
    if (++nodes_ > kMaxYamlNodes) {
      return Error(path, StrCat("document has more than ", kMaxYamlNodes, " nodes"), node.Mark());
    }
    switch (node.Type()) {
      case YAML::NodeType::Scalar:
        return ConvertScalar(node);
      case YAML::NodeType::Sequence:
        return ConvertSequence(node, path);
      case YAML::NodeType::Map:
        return ConvertMap(node, path);
      default:
        return Json();
    }
  }

 private:
  static Json ConvertScalar(const YAML::Node& node) {
    const std::string& tag = node.Tag();
    if (tag == "!" || tag == "tag:yaml.org,2002:str") return node.Scalar();
    return ResolvePlainScalar(node.Scalar());
  }

  absl::StatusOr<Json> ConvertSequence(const YAML::Node& node, const std::string& path) {
    Json array = Json::array();
    for (YAML::Node item : node) {
      std::string child = IndexPath(path, array.size());
      Record(child, item.Mark());
      ASSIGN_OR_RETURN(Json value, Convert(item, child));
      array.push_back(std::move(value));
    }
    return array;
  }

  absl::StatusOr<Json> ConvertMap(const YAML::Node& node, const std::string& path) {
    Json object = Json::object();
    for (auto it = node.begin(); it != node.end(); ++it) {
      // Copies: yaml-cpp's iterator yields a temporary pair, so references would dangle.
      YAML::Node key = it->first;
      YAML::Node value = it->second;
      if (!key.IsScalar()) return Error(path, "mapping keys must be scalars", key.Mark());
      std::string child = ChildPath(path, key.Scalar());
      if (object.contains(key.Scalar())) return Error(child, "duplicate key", key.Mark());
      Record(child, key.Mark());
      ASSIGN_OR_RETURN(object[key.Scalar()], Convert(value, child));
    }
    return object;
  }

  void Record(const std::string& path, const YAML::Mark& mark) {
    if (!mark.is_null()) lines_[path] = mark.line + 1;
  }

  absl::Status Error(std::string_view path, std::string_view problem, const YAML::Mark& mark) {
    return absl::InvalidArgumentError(
        FormatLocated(source_, path, problem, mark.is_null() ? 0 : mark.line + 1));
  }

  std::string_view source_;
  LineMap& lines_;
  size_t nodes_ = 0;
};

}  // namespace

absl::StatusOr<Document> ParseJsonDocument(std::string_view text, std::string source) {
  Document doc;
  doc.source = std::move(source);
  try {
    doc.json = Json::parse(text.begin(), text.end());
  } catch (const std::exception& e) {
    return SyntaxError(doc.source, JsonErrorDetail(e.what()));
  }
  return doc;
}

absl::StatusOr<Document> ParseYamlDocument(std::string_view text, std::string source) {
  Document doc;
  doc.source = std::move(source);
  try {
    std::vector<YAML::Node> nodes = YAML::LoadAll(std::string(text));
    if (nodes.size() > 1) {
      return SyntaxError(doc.source, StrCat("expected one YAML document, found ", nodes.size()));
    }
    if (nodes.empty()) return doc;
    YamlConverter converter(doc.source, doc.lines);
    ASSIGN_OR_RETURN(doc.json, converter.Convert(nodes[0], ""));
  } catch (const YAML::Exception& e) {
    return SyntaxError(doc.source, YamlErrorDetail(e));
  } catch (const std::exception& e) {
    return SyntaxError(doc.source, StrCat("YAML error: ", e.what()));
  }
  return doc;
}

absl::StatusOr<Document> ReadDocument(const std::string& path, FileSystem* file_system) {
  if (file_system == nullptr) file_system = FileSystem::Default();
  ASSIGN_OR_RETURN(std::string text, file_system->ReadFile(path));
  absl::string_view name = ToAbsl(path);
  bool json = absl::EndsWithIgnoreCase(name, ".json");
  bool yaml = absl::EndsWithIgnoreCase(name, ".yaml") || absl::EndsWithIgnoreCase(name, ".yml");
  if (!json && !yaml) {
    size_t first = text.find_first_not_of(" \t\r\n");
    json = first != std::string::npos && (text[first] == '{' || text[first] == '[');
  }
  return json ? ParseJsonDocument(text, path) : ParseYamlDocument(text, path);
}

}  // namespace naiad::config_internal

namespace naiad {

absl::StatusOr<nlohmann::json> YamlToJson(std::string_view text) {
  ASSIGN_OR_RETURN(config_internal::Document doc, config_internal::ParseYamlDocument(text, ""));
  return std::move(doc.json);
}

}  // namespace naiad
