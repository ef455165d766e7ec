// File: net/http_types.h
//
// Types shared by the HTTP client and server: headers, byte ranges, and the one place where an
// HTTP status becomes an absl::Status.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace naiad::net {

// An ordered list of header fields; names compare case-insensitively. Values never contain CR
// or LF (Add/Set reject them, which blocks header injection).
class HttpHeaders {
 public:
  // Appends a field. InvalidArgument if the name is not an HTTP token or the value has CR/LF.
  absl::Status Add(std::string_view name, std::string_view value);
  // Replaces every field named `name` with one field.
  absl::Status Set(std::string_view name, std::string_view value);
  void Remove(std::string_view name);
  // The first field named `name`.
  std::optional<std::string> Get(std::string_view name) const;
  bool Has(std::string_view name) const { return Get(name).has_value(); }

  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

// A byte range [offset, offset + length).
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;

  uint64_t end() const { return offset + length; }
  // "bytes=<first>-<last>" for a Range request header. length must be > 0.
  std::string ToRangeHeader() const;
  // "bytes <first>-<last>/<total>" for a Content-Range response header.
  std::string ToContentRange(uint64_t total) const;
  friend bool operator==(const ByteRange&, const ByteRange&) = default;
};

// Resolves a Range request header ("bytes=a-b", "bytes=a-", "bytes=-n") against a resource of
// `content_length` bytes. Multiple ranges are not supported (InvalidArgument). A range that
// starts at or past the end is OutOfRange (answer 416); a syntax error is InvalidArgument.
absl::StatusOr<ByteRange> ParseRangeHeader(std::string_view value, uint64_t content_length);

// Parses a Content-Range response header "bytes <first>-<last>/<total|*>".
struct ContentRange {
  ByteRange range;
  std::optional<uint64_t> total;
};
absl::StatusOr<ContentRange> ParseContentRange(std::string_view value);

// Converts an HTTP status code into a Status at the HTTP boundary; `context` names the request.
// 2xx/3xx -> OK; 400 InvalidArgument; 401 Unauthenticated; 403 PermissionDenied; 404 NotFound;
// 408/504 DeadlineExceeded; 409 Aborted; 412 FailedPrecondition; 416 OutOfRange;
// 429 ResourceExhausted; other 4xx FailedPrecondition; 5xx Unavailable (retryable).
absl::Status HttpStatusToStatus(int http_status, std::string_view context);

// The reverse, for servers: the HTTP status that answers a failed Status.
int StatusToHttpStatus(const absl::Status& status);

// Whether a failed operation may succeed if retried: Unavailable, DeadlineExceeded,
// ResourceExhausted, Aborted.
bool IsRetryable(const absl::Status& status);

// A flag that aborts transfers from another thread. Thread-safe.
class CancellationToken {
 public:
  void Cancel() { cancelled_.store(true, std::memory_order_release); }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> cancelled_{false};
};

}  // namespace naiad::net
