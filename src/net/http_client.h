// File: net/http_client.h
//
// An HTTP/1.1 client on libcurl, shared by every component that talks to registries, mirrors
// and peers.
//
//   HttpClient client;                                   // TLS verification on by default
//   HttpRequest request{.url = blob_url, .range = ByteRange{offset, length}};
//   ASSIGN_OR_RETURN(HttpResponse response, client.Send(request));
//   RETURN_IF_ERROR(HttpStatusToStatus(response.status, blob_url));   // 206 -> OK
//
// Streaming: set `body_sink` and the body is handed over in pieces as it arrives instead of being
// collected in HttpResponse::body; returning an error from the sink aborts the transfer and Send()
// returns that error. Uploads stream from `body_file`. The sink also receives the body of an error
// response (e.g. a 404 page): check the status in on_headers first.
//
// Methods: HEAD asks for headers only; POST, PUT, PATCH and any request with a body send it with
// a Content-Length (never chunked, never "Expect: 100-continue"). Requests are HTTP/1.1.
//
// Connections are reused across calls (and threads) per host. Send() is thread-safe.
// Transport failures become Status codes here: connection refused/reset/DNS -> Unavailable,
// timeouts -> DeadlineExceeded, cancellation -> Cancelled, TLS verification -> Unauthenticated.
// An HTTP error status is NOT a transport failure: Send() returns OK with response.status set.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/http_types.h"

namespace naiad::net {

struct HttpResponse {
  int status = 0;
  HttpHeaders headers;  // of the final response, after redirects
  std::string body;     // empty when the request had a body_sink
  std::string effective_url;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  HttpHeaders headers;
  // Sent as a Range header.
  std::optional<ByteRange> range;
  // The request body: either in memory or streamed from a file.
  std::string body;
  std::string body_file;
  // Called once the final response's status and headers are known (after redirects), before any
  // body bytes. An error aborts the transfer and becomes Send()'s result. For a response without a
  // body it runs when the transfer has completed.
  std::function<absl::Status(const HttpResponse&)> on_headers;
  // Receives the body in pieces as it arrives; see the file comment.
  std::function<absl::Status(std::string_view)> body_sink;
  // Overrides HttpClientOptions::timeout for this request when non-zero.
  absl::Duration timeout = absl::ZeroDuration();
  // Checked while the transfer runs; cancelling aborts it with Cancelled.
  const CancellationToken* cancel = nullptr;
  bool follow_redirects = true;
};

struct HttpClientOptions {
  absl::Duration connect_timeout = absl::Seconds(10);
  // Whole-request limit; zero means none (long downloads rely on the low-speed limit instead).
  absl::Duration timeout = absl::ZeroDuration();
  // Abort when fewer than low_speed_bytes_per_second arrive for low_speed_time (a stalled peer).
  absl::Duration low_speed_time = absl::Seconds(30);
  int64_t low_speed_bytes_per_second = 1;
  int max_redirects = 10;
  bool verify_tls = true;
  // Extra CA certificate files (PEM); the system store is used as well. (libcurl takes a single
  // bundle, so the client hands it curl's default bundle followed by these files, in memory.) A
  // file that cannot be read or holds no certificate fails every Send() with that error.
  std::vector<std::string> ca_files;
  // An HTTP proxy URL for all requests; empty means none (environment variables are ignored).
  std::string proxy;
  std::string user_agent;  // defaults to "naiad/<version>"
  // Connect to this unix-domain socket instead of the URL's host and port (which then only fill
  // the Host header): "http://localhost/api/v1/daemon" reaches a daemon's API socket. Applies to
  // every request and redirect of this client.
  std::string unix_socket_path;
};

class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  absl::StatusOr<HttpResponse> Send(const HttpRequest& request);

  // Convenience: GET with optional headers, body collected in memory.
  absl::StatusOr<HttpResponse> Get(std::string_view url, const HttpHeaders& headers = {});

  // Number of new TCP connections this client has opened (for tests of connection reuse).
  // Connections are shared by all threads using this client.
  uint64_t connections_opened() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace naiad::net
