#include "base/logging.h"

#include <atomic>
#include <memory>
#include <mutex>

#include "absl/strings/ascii.h"
#include "base/strings.h"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace naiad {
namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};

spdlog::level::level_enum ToSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger> MakeLogger(spdlog::sink_ptr sink) {
  auto logger = std::make_shared<spdlog::logger>("naiad", std::move(sink));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %L %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::trace);  // Filtering happens in LogEnabled().
  logger->flush_on(spdlog::level::warn);
  return logger;
}

std::mutex g_logger_mu;
std::shared_ptr<spdlog::logger>& Logger() {
  static auto* logger = new std::shared_ptr<spdlog::logger>(
      MakeLogger(std::make_shared<spdlog::sinks::stderr_sink_mt>()));
  return *logger;
}

bool NeedsQuotes(std::string_view value) {
  if (value.empty()) return true;
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\t') return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name) {
  std::string lower = absl::AsciiStrToLower(ToAbsl(name));
  if (lower == "trace") return LogLevel::kTrace;
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warn" || lower == "warning") return LogLevel::kWarn;
  if (lower == "error") return LogLevel::kError;
  if (lower == "off") return LogLevel::kOff;
  return absl::InvalidArgumentError(
      StrCat("unknown log level \"", name, "\": expected trace, debug, info, warn, error or off"));
}

void SetLogLevel(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }
LogLevel GetLogLevel() { return g_level.load(std::memory_order_relaxed); }

absl::Status SetLogFile(const std::string& path) {
  spdlog::sink_ptr sink;
  try {
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
  } catch (const spdlog::spdlog_ex& e) {
    return absl::InvalidArgumentError(StrCat("log file ", path, ": ", e.what()));
  }
  std::lock_guard lock(g_logger_mu);
  Logger() = MakeLogger(std::move(sink));
  return absl::OkStatus();
}

bool LogEnabled(LogLevel level) {
  LogLevel threshold = GetLogLevel();
  return threshold != LogLevel::kOff && level >= threshold;
}

std::string FormatLogFields(LogFields fields) {
  std::string out;
  for (const LogField& field : fields) {
    StrAppend(&out, " ", field.key, "=");
    if (NeedsQuotes(field.value)) {
      out += '"';
      for (char c : field.value) {
        if (c == '"' || c == '\\') out += '\\';
        out += (c == '\n') ? ' ' : c;
      }
      out += '"';
    } else {
      out += field.value;
    }
  }
  return out;
}

void LogRecord(LogLevel level, std::string_view message, LogFields fields) {
  if (!LogEnabled(level)) return;
  std::string line = StrCat(message, FormatLogFields(fields));
  std::shared_ptr<spdlog::logger> logger;
  {
    std::lock_guard lock(g_logger_mu);
    logger = Logger();
  }
  logger->log(ToSpdlog(level), "{}", line);
}

}  // namespace naiad
