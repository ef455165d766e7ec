#include "storage/config.h"

#include "absl/strings/match.h"
#include "base/strings.h"

namespace naiad::storage {

absl::Status MirrorConfig::Validate() const {
  if (!absl::StartsWith(ToAbsl(host), "http://") && !absl::StartsWith(ToAbsl(host), "https://")) {
    return absl::InvalidArgumentError(
        StrCat("host: \"", host, "\" must be a URL starting with http:// or https://"));
  }
  return absl::OkStatus();
}

absl::Status LocalfsBackendConfig::Validate() const {
  if (dir.empty() && blob_file.empty()) {
    return absl::InvalidArgumentError("one of \"dir\" and \"blob_file\" is required");
  }
  return absl::OkStatus();
}

absl::StatusOr<DecodedBackend> DecodeBackend(const BackendConfig& backend,
                                             const ConfigOptions& options) {
  constexpr std::string_view kPath = "device.backend.config";
  const nlohmann::json& json = backend.config.is_null() ? nlohmann::json::object() : backend.config;
  DecodedBackend decoded;
  if (backend.type == "registry") {
    ASSIGN_OR_RETURN(decoded.registry, DecodeConfig<RegistryBackendConfig>(json, options, kPath));
  } else if (backend.type == "localfs") {
    ASSIGN_OR_RETURN(decoded.localfs, DecodeConfig<LocalfsBackendConfig>(json, options, kPath));
  } else {
    return absl::InvalidArgumentError(
        StrCat("device.backend.type: \"", backend.type, "\" is not one of registry, localfs"));
  }
  return decoded;
}

}  // namespace naiad::storage
