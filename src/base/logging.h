// File: base/logging.h
//
// Structured logging on spdlog. A record is a message plus key=value fields:
//
//   LogInfo("chunk fetched", {{"blob", blob_id}, {"offset", offset}, {"ms", elapsed_ms}});
//   // 2026-11-28T10:00:00.123Z I chunk fetched blob=3f2a.. offset=1048576 ms=12
//
// Values are formatted with fmt and quoted when they contain spaces, quotes or '='. Records go to
// stderr unless SetLogFile() names a file. All functions are thread-safe.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fmt/format.h"

namespace naiad {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };

// One key=value pair of a log record.
struct LogField {
  template <typename T>
  LogField(std::string_view k, const T& v) : key(k), value(Format(v)) {}

  std::string_view key;
  std::string value;

 private:
  template <typename T>
  static std::string Format(const T& v) {
    if constexpr (std::is_convertible_v<const T&, std::string_view>) {
      return std::string(std::string_view(v));
    } else if constexpr (requires { v.ToString(); }) {
      return v.ToString();
    } else {
      return fmt::format("{}", v);
    }
  }
};

using LogFields = std::initializer_list<LogField>;

// Parses "trace", "debug", "info", "warn"/"warning", "error" or "off" (any case).
absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name);
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Sends records to `path` (appending) instead of stderr.
absl::Status SetLogFile(const std::string& path);

bool LogEnabled(LogLevel level);
void LogRecord(LogLevel level, std::string_view message, LogFields fields);
// Renders fields as " k=v k2=v2" (exposed for tests).
std::string FormatLogFields(LogFields fields);

inline void LogTrace(std::string_view m, LogFields f = {}) { LogRecord(LogLevel::kTrace, m, f); }
inline void LogDebug(std::string_view m, LogFields f = {}) { LogRecord(LogLevel::kDebug, m, f); }
inline void LogInfo(std::string_view m, LogFields f = {}) { LogRecord(LogLevel::kInfo, m, f); }
inline void LogWarn(std::string_view m, LogFields f = {}) { LogRecord(LogLevel::kWarn, m, f); }
inline void LogError(std::string_view m, LogFields f = {}) { LogRecord(LogLevel::kError, m, f); }

}  // namespace naiad
