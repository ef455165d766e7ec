// File: net/http_server.h
//
// An HTTP/1.1 server on Boost.Beast for the daemons' APIs, the registry-mirror proxy and the
// piece upload service.
//
//   auto server = HttpServer::Start({.port = 0}, [](const ServerRequest& req, ResponseWriter& w) {
//     if (req.path == "/server/ping") { w.Respond(200, {}, "").IgnoreError(); return; }
//     w.Begin(200, headers, size).IgnoreError();      // streaming: Content-Length known
//     while (...) if (!w.Write(piece).ok()) return;   // client went away
//     w.End().IgnoreError();
//   });
//   uint16_t port = (*server)->port();
//
// Threading: connections are served by a fixed pool of `threads` worker threads, one connection
// per thread at a time, with keep-alive; a handler may block (e.g. waiting for pieces) without
// stalling other connections. Handlers run concurrently and must be thread-safe. When a new
// connection finds no free worker, a worker idling on a keep-alive connection closes it (clients
// retry on a fresh connection) and takes the new one.
//
// A handler that returns without responding gets a 500. A handler that began a streamed response
// but did not End() it has its connection closed (the client sees a truncated body, never a
// complete-looking one). HEAD requests get headers only; Write() discards the body. 204 and 304
// responses carry neither a body nor a Content-Length. Content-Length, Transfer-Encoding and
// Connection are managed by the server; a handler's values for them are ignored.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/http_types.h"

namespace naiad::net {

struct ServerRequest {
  std::string method;  // "GET", "HEAD", ...
  std::string target;  // as sent: path plus "?query"
  std::string path;    // the part before '?', not percent-decoded
  std::string query;   // the part after '?', without it
  HttpHeaders headers;
  std::string body;
  std::string remote_address;  // "ip:port", or "unix" on a unix-domain socket
};

class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;

  // A whole response at once (sets Content-Length).
  virtual absl::Status Respond(int status, const HttpHeaders& headers, std::string_view body) = 0;
  // Starts a streamed response. With a content length the body is sent as-is and must be exactly
  // that long; without one it is sent chunked.
  virtual absl::Status Begin(int status, const HttpHeaders& headers,
                             std::optional<uint64_t> content_length) = 0;
  // Sends body bytes. Fails (Unavailable) once the client has gone away; stop writing then.
  virtual absl::Status Write(std::string_view data) = 0;
  // Completes a streamed response. FailedPrecondition if fewer bytes than the announced content
  // length were written (the connection is then closed).
  virtual absl::Status End() = 0;
  virtual bool started() const = 0;
};

using HttpHandler = std::function<void(const ServerRequest&, ResponseWriter&)>;

struct HttpServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port; see HttpServer::port()
  // When set, listen on this unix-domain socket instead of address:port (a daemon's API socket).
  // A stale socket file there is replaced; a socket another server still listens on is an error
  // (AlreadyExists), and so is a file that is not a socket. The socket is made 0600 (owner only)
  // and removed by Shutdown(). Clients reach it with HttpClientOptions::unix_socket_path.
  std::string unix_socket_path;
  int threads = 16;  // connections served at once; more wait in the accept backlog
  absl::Duration idle_timeout = absl::Seconds(60);  // keep-alive connection with no request
  // Reading a whole request; writing a response, per wait for the client to take more bytes.
  absl::Duration io_timeout = absl::Seconds(60);
  uint64_t max_request_body = 16 << 20;  // larger bodies get 413
};

class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           HttpHandler handler);
  virtual ~HttpServer() = default;

  virtual uint16_t port() const = 0;  // 0 on a unix socket
  // "http://<address>:<port>"; "http://localhost" on a unix socket.
  virtual std::string url() const = 0;
  // Stops accepting; requests in flight may finish for up to `grace`; then every connection is
  // closed and the threads are joined. Idempotent; the destructor calls it. Idle keep-alive
  // connections close at once. After `grace`, a handler's next Write() fails; a handler that
  // blocks without writing delays Shutdown() until it returns. May be called from a handler: it
  // then neither waits for nor cuts off that handler's own request. The server must not be
  // destroyed from one of its handlers.
  virtual void Shutdown(absl::Duration grace = absl::Seconds(5)) = 0;
};

}  // namespace naiad::net
