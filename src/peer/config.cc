#include "peer/config.h"

#include <regex>

#include "absl/strings/str_split.h"
#include "base/strings.h"

namespace naiad::peer {
namespace {

ConfigOptions Options(std::vector<std::string>* warnings) {
  return {.unknown_keys = UnknownKeys::kWarn, .warnings = warnings};
}

absl::Status CheckRegex(const std::string& pattern, std::string_view where) {
  // std::regex throws on a bad pattern; this is the one place that is caught.
  try {
    std::regex compiled(pattern);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(
        StrCat(where, ": bad regular expression \"", pattern, "\": ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PeerConfig::Validate() const {
  for (size_t i = 0; i < proxy.proxies.size(); ++i) {
    RETURN_IF_ERROR(CheckRegex(proxy.proxies[i].regx, StrCat("proxy.proxies[", i, "].regx")));
  }
  for (size_t i = 0; i < proxy.white_list.size(); ++i) {
    if (!proxy.white_list[i].regx.empty()) {
      RETURN_IF_ERROR(
          CheckRegex(proxy.white_list[i].regx, StrCat("proxy.whiteList[", i, "].regx")));
    }
  }
  if (proxy.registry_mirror.url.rfind("http://", 0) != 0 &&
      proxy.registry_mirror.url.rfind("https://", 0) != 0) {
    return absl::InvalidArgumentError(StrCat("proxy.registryMirror.url: \"",
                                             proxy.registry_mirror.url,
                                             "\" must start with http:// or https://"));
  }
  return absl::OkStatus();
}

std::vector<std::string> PeerConfig::FilteredParams() const {
  std::vector<std::string> params;
  for (absl::string_view part : absl::StrSplit(ToAbsl(proxy.default_filter), '&')) {
    if (!part.empty()) params.emplace_back(part);
  }
  return params;
}

absl::StatusOr<PeerConfig> LoadPeerConfig(const std::string& path,
                                          std::vector<std::string>* warnings) {
  return LoadConfigFile<PeerConfig>(path, Options(warnings));
}

absl::StatusOr<PeerConfig> ParsePeerConfig(std::string_view yaml,
                                           std::vector<std::string>* warnings) {
  return ParseYamlConfig<PeerConfig>(yaml, Options(warnings));
}

}  // namespace naiad::peer
