// File: test/testing/registry_access_log.h
//
// Parses docker-registry's (distribution 2.8) access log, which is how RegistryFixture counts the
// requests and bytes the registry served. The registry writes two lines per request to its
// output: a logrus record ("response completed ... http.response.written=N", only for 2xx/3xx)
// on stderr, and an Apache combined-format line on stdout for every request:
//
//   127.0.0.1 - - [28/Nov/2026:09:53:02 +0000] "GET /v2/t/blobs/sha256:d2.. HTTP/1.1" 206 1024 ""
//   "curl/7.88.1"
//
// The size field is the number of body bytes the handler wrote (HEAD: 0). Measured: both lines
// are written before the last bytes of the response are flushed to the socket, so once a client
// has read a whole response its line is in the log. A client that hangs up early is counted
// with what the registry wrote into the socket, which can be more than the client read.
//
//   for (const AccessLogEntry& e : ParseAccessLog(log_text)) total += e.bytes;
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace naiad::testing {

struct AccessLogEntry {
  std::string method;
  std::string uri;  // as requested: path and query
  int status = 0;
  uint64_t bytes = 0;  // response body bytes written

  // GET of /v2/<name>/blobs/<digest> (not an upload URL).
  bool IsBlobGet() const;
};

// Parses one combined-format line; nullopt for anything else (logrus records, partial lines).
std::optional<AccessLogEntry> ParseAccessLogLine(std::string_view line);

// Every access-log entry in `text`; a trailing line without '\n' is ignored (it may still be
// being written).
std::vector<AccessLogEntry> ParseAccessLog(std::string_view text);

}  // namespace naiad::testing
