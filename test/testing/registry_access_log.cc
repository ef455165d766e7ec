#include "test/testing/registry_access_log.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "base/strings.h"

namespace naiad::testing {

bool AccessLogEntry::IsBlobGet() const {
  if (method != "GET" || !uri.starts_with("/v2/")) return false;
  std::string_view path = std::string_view(uri).substr(0, uri.find('?'));
  size_t blobs = path.rfind("/blobs/");
  if (blobs == std::string_view::npos || blobs <= 3) return false;
  std::string_view rest = path.substr(blobs + 7);
  return !rest.starts_with("uploads") && rest.find(':') != std::string_view::npos;
}

std::optional<AccessLogEntry> ParseAccessLogLine(std::string_view line) {
  if (line.starts_with("time=")) return std::nullopt;
  // "<ip> - - [<date>] "<METHOD> <URI> <PROTO>" <status> <size> "<referer>" "<agent>"
  size_t open = line.find("] \"");
  if (open == std::string_view::npos) return std::nullopt;
  size_t request_start = open + 3;
  size_t request_end = line.find('"', request_start);
  if (request_end == std::string_view::npos) return std::nullopt;
  std::vector<absl::string_view> request =
      absl::StrSplit(ToAbsl(line.substr(request_start, request_end - request_start)), ' ');
  std::vector<absl::string_view> tail =
      absl::StrSplit(ToAbsl(line.substr(request_end + 1)), ' ', absl::SkipEmpty());
  if (request.size() != 3 || tail.size() < 2) return std::nullopt;
  AccessLogEntry entry{.method = std::string(request[0]), .uri = std::string(request[1])};
  if (!absl::SimpleAtoi(tail[0], &entry.status)) return std::nullopt;
  if (tail[1] != "-" && !absl::SimpleAtoi(tail[1], &entry.bytes)) return std::nullopt;
  return entry;
}

std::vector<AccessLogEntry> ParseAccessLog(std::string_view text) {
  std::vector<AccessLogEntry> entries;
  size_t start = 0;
  while (true) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) break;
    if (auto entry = ParseAccessLogLine(text.substr(start, end - start))) {
      entries.push_back(std::move(*entry));
    }
    start = end + 1;
  }
  return entries;
}

}  // namespace naiad::testing
