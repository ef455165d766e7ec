#include "fs/config.h"

namespace naiad::fs {
namespace {

ConfigOptions Options(std::vector<std::string>* warnings) {
  return {.unknown_keys = UnknownKeys::kWarn, .warnings = warnings};
}

absl::Status DecodeBackend(FsConfig& config, std::vector<std::string>* warnings) {
  ASSIGN_OR_RETURN(config.backend,
                   storage::DecodeBackend(config.device.backend, Options(warnings)));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FsConfig> LoadFsConfig(const std::string& path, std::vector<std::string>* warnings) {
  ASSIGN_OR_RETURN(FsConfig config, LoadConfigFile<FsConfig>(path, Options(warnings)));
  RETURN_IF_ERROR(Annotate(DecodeBackend(config, warnings), path));
  return config;
}

absl::StatusOr<FsConfig> ParseFsConfig(std::string_view json, std::vector<std::string>* warnings) {
  ASSIGN_OR_RETURN(FsConfig config, ParseJsonConfig<FsConfig>(json, Options(warnings)));
  RETURN_IF_ERROR(DecodeBackend(config, warnings));
  return config;
}

}  // namespace naiad::fs
