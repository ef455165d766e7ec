// File: get/downloader.h
//
// Downloads one URL to a file, for `naiad get`: the body streams into a temporary file beside
// the output while it is hashed, and only a complete download whose digest matches (when one is
// given) is renamed into place. A failed or interrupted download leaves no file behind, neither
// the output nor the temporary.
//
// The same code serves both of `naiad get`'s paths; only the client and the request differ:
//
//   // Straight from the origin: GET options.url with options.headers.
//   DownloadOptions options{.url = url, .output = "/tmp/blob", .digest = want};
//   ASSIGN_OR_RETURN(DownloadResult result, Download(client, options));
//
//   // Through the local peer daemon: another client (its unix socket) and request.
//   ASSIGN_OR_RETURN(result, Download(daemon.http(), daemon.DownloadRequest(...), options));
//
// An HTTP error status is an error naming options.url, the status and the start of the error
// body (or whatever options.on_error makes of the response).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/digest.h"
#include "net/http_client.h"

namespace naiad::get {

struct DownloadProgress {
  uint64_t bytes = 0;
  std::optional<uint64_t> total;  // from Content-Length, when the server sent one
  absl::Duration elapsed;
};

struct DownloadOptions {
  // The content's URL: what Download(client, options) fetches, and what errors name.
  std::string url;
  std::string output;
  // The request headers of Download(client, options).
  net::HttpHeaders headers;
  // Verified over the whole body; a mismatch is DataLoss and no output is written.
  std::optional<Digest> digest;
  // The whole download's limit; zero means none.
  absl::Duration timeout = absl::ZeroDuration();
  // How the bytes travel when not straight from `url`, for error messages: "the peer daemon at
  // /run/naiad/peer.sock".
  std::string via;
  // Called from the downloading thread as bytes arrive (at most every 100 ms, and at the end).
  std::function<void(const DownloadProgress&)> on_progress;
  // Called with a successful response's status and headers, before any of its body.
  std::function<void(const net::HttpResponse&)> on_response;
  // Makes the error Download returns for an HTTP error response, whose `body` holds at most the
  // first kMaxErrorBody bytes of the error body. Default: HttpStatusToStatus() naming `url`,
  // with ErrorBodyExcerpt(body).
  std::function<absl::Status(const net::HttpResponse&)> on_error;
};

struct DownloadResult {
  uint64_t bytes = 0;
  Digest sha256;
  absl::Duration elapsed;
};

inline constexpr size_t kMaxErrorBody = 4096;

// GET options.url with options.headers, with `client`.
absl::StatusOr<DownloadResult> Download(net::HttpClient& client, const DownloadOptions& options);

// Sends `request` instead (its on_headers and body_sink are Download's own; a zero timeout
// becomes options.timeout).
absl::StatusOr<DownloadResult> Download(net::HttpClient& client, net::HttpRequest request,
                                        const DownloadOptions& options);

// An error body fit for a one-line message: whitespace runs (newlines too) become one space,
// and a long body is cut at about 200 characters ("...").
std::string ErrorBodyExcerpt(std::string_view body);

}  // namespace naiad::get
