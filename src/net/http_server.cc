// All Boost.Beast and Asio code of the project lives in this one translation unit: Beast is
// header-only and expensive to compile. The threads, the queue of accepted connections and
// Shutdown() are in connection_pool.cc; this file speaks HTTP on one connection at a time with
// synchronous reads and writes. Asio's own synchronous socket operations cannot time out, hence
// SocketStream below, whose waits are poll()s that also watch the pool's kill signal.
#include "net/http_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cctype>
#include <cerrno>

#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "net/connection_pool.h"

namespace naiad::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using internal::DeadlineAfter;
using internal::PollTimeout;

constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr absl::Duration kLingerTime = absl::Seconds(1);

std::string_view ToStd(beast::string_view s) { return {s.data(), s.size()}; }

// A connected non-blocking socket as a Beast SyncReadStream and SyncWriteStream. Reads are bounded
// by a deadline for the whole request; each write wait by `write_timeout` without progress. Any
// wait fails at once when `kill_fd` becomes readable.
class SocketStream {
 public:
  SocketStream(int fd, int kill_fd, absl::Duration write_timeout)
      : fd_(fd), kill_fd_(kill_fd), write_timeout_(write_timeout) {}

  void set_read_deadline(absl::Time deadline) { read_deadline_ = deadline; }
  int fd() const { return fd_; }

  template <typename Buffers>
  size_t read_some(const Buffers& buffers, error_code& ec) {
    std::array<iovec, kMaxIov> iov;
    return Read(iov.data(), ToIovec(buffers, &iov), ec);
  }
  template <typename Buffers>
  size_t read_some(const Buffers& buffers) {
    error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <typename Buffers>
  size_t write_some(const Buffers& buffers, error_code& ec) {
    std::array<iovec, kMaxIov> iov;
    return Write(iov.data(), ToIovec(buffers, &iov), ec);
  }
  template <typename Buffers>
  size_t write_some(const Buffers& buffers) {
    error_code ec;
    size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  static constexpr size_t kMaxIov = 16;

  template <typename Buffers>
  static int ToIovec(const Buffers& buffers, std::array<iovec, kMaxIov>* iov) {
    int n = 0;
    for (auto it = asio::buffer_sequence_begin(buffers);
         it != asio::buffer_sequence_end(buffers) && n < static_cast<int>(kMaxIov); ++it) {
      auto buffer = *it;
      if (buffer.size() == 0) continue;
      (*iov)[n++] =
          iovec{const_cast<void*>(static_cast<const void*>(buffer.data())), buffer.size()};
    }
    return n;
  }

  size_t Read(iovec* iov, int count, error_code& ec);
  size_t Write(iovec* iov, int count, error_code& ec);
  error_code Wait(short events, absl::Time deadline);

  int fd_;
  int kill_fd_;
  absl::Duration write_timeout_;
  absl::Time read_deadline_ = absl::InfiniteFuture();
};

size_t SocketStream::Read(iovec* iov, int count, error_code& ec) {
  ec = {};
  if (count == 0) return 0;
  for (;;) {
    ssize_t n = ::readv(fd_, iov, count);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) {
      ec = asio::error::eof;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = error_code(errno, boost::system::system_category());
      return 0;
    }
    if ((ec = Wait(POLLIN, read_deadline_))) return 0;
  }
}

size_t SocketStream::Write(iovec* iov, int count, error_code& ec) {
  ec = {};
  if (count == 0) return 0;
  msghdr message{};
  message.msg_iov = iov;
  message.msg_iovlen = static_cast<size_t>(count);
  for (;;) {
    ssize_t n = ::sendmsg(fd_, &message, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = error_code(errno, boost::system::system_category());
      return 0;
    }
    if ((ec = Wait(POLLOUT, DeadlineAfter(write_timeout_)))) return 0;
  }
}

error_code SocketStream::Wait(short events, absl::Time deadline) {
  for (;;) {
    pollfd fds[2] = {{fd_, events, 0}, {kill_fd_, POLLIN, 0}};
    int ready = ::poll(fds, 2, PollTimeout(deadline));
    if (ready < 0 && errno != EINTR) return error_code(errno, boost::system::system_category());
    if (fds[1].revents != 0) return asio::error::operation_aborted;
    if (ready > 0 && fds[0].revents != 0) return {};  // ready, or an error the retry reports
    if (ready == 0 && absl::Now() >= deadline) return asio::error::timed_out;
  }
}

using ResponseHeader = http::response<http::empty_body>;

// The bytes of a response's status line and fields, up to and including the blank line.
std::string SerializeHeader(ResponseHeader& header) {
  http::response_serializer<http::empty_body> serializer(header);
  serializer.split(true);
  std::string out;
  error_code ec;
  while (!serializer.is_header_done() && !ec) {
    serializer.next(ec, [&](error_code&, const auto& buffers) {
      out += beast::buffers_to_string(buffers);
      serializer.consume(beast::buffer_bytes(buffers));
    });
  }
  return out;
}

// Responses that never carry a body (nor Content-Length).
bool HasNoBody(int status) { return status == 204 || status == 304; }

// Fields the server manages itself; a handler's values for them are ignored.
bool IsManagedField(std::string_view name) {
  for (std::string_view managed : {"content-length", "transfer-encoding", "connection"}) {
    if (name.size() == managed.size() &&
        std::equal(name.begin(), name.end(), managed.begin(),
                   [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; }))
      return true;
  }
  return false;
}

// The ResponseWriter of one request; see http_server.h for the contract.
class Writer final : public ResponseWriter {
 public:
  Writer(SocketStream& stream, const ServerRequest& request, unsigned version, bool keep_alive)
      : stream_(stream),
        remote_(request.remote_address),
        head_(request.method == "HEAD"),
        discard_(head_),
        version_(version),
        keep_alive_(keep_alive) {}

  absl::Status Respond(int status, const HttpHeaders& headers, std::string_view body) override;
  absl::Status Begin(int status, const HttpHeaders& headers,
                     std::optional<uint64_t> content_length) override;
  absl::Status Write(std::string_view data) override;
  absl::Status End() override;
  bool started() const override { return state_ != State::kNew; }

  // After the handler returned: answers 500 if it never responded. Returns whether the
  // connection may carry another request.
  bool Finish();

 private:
  enum class State { kNew, kStreaming, kDone };

  absl::StatusOr<ResponseHeader> MakeHeader(int status, const HttpHeaders& headers) const;
  template <typename Buffers>
  absl::Status Send(const Buffers& buffers);

  SocketStream& stream_;
  std::string remote_;
  bool head_;
  bool discard_;  // no body goes out: HEAD, or a 204/304 response
  unsigned version_;
  bool keep_alive_;
  State state_ = State::kNew;
  bool streamed_ = false;
  bool chunked_ = false;
  std::optional<uint64_t> length_;
  uint64_t written_ = 0;
  bool must_close_ = false;  // the response is broken or incomplete
  absl::Status io_error_;
};

absl::StatusOr<ResponseHeader> Writer::MakeHeader(int status, const HttpHeaders& headers) const {
  if (state_ != State::kNew) return absl::FailedPreconditionError("response already started");
  if (status < 200 || status > 599) {
    return absl::InvalidArgumentError(StrCat("invalid final HTTP status ", status));
  }
  ResponseHeader header(static_cast<http::status>(status), version_);
  for (const auto& [name, value] : headers.entries()) {
    if (!IsManagedField(name)) header.insert(name, value);
  }
  header.keep_alive(keep_alive_);
  return header;
}

template <typename Buffers>
absl::Status Writer::Send(const Buffers& buffers) {
  if (!io_error_.ok()) return io_error_;
  error_code ec;
  asio::write(stream_, buffers, ec);
  if (ec) {
    must_close_ = true;
    io_error_ = absl::UnavailableError(StrCat("sending response to ", remote_, ": ", ec.message()));
  }
  return io_error_;
}

absl::Status Writer::Respond(int status, const HttpHeaders& headers, std::string_view body) {
  ASSIGN_OR_RETURN(ResponseHeader header, MakeHeader(status, headers));
  state_ = State::kDone;
  if (HasNoBody(status)) {
    body = {};
  } else {
    header.content_length(body.size());
  }
  std::string head = SerializeHeader(header);
  if (head_) body = {};
  return Send(std::array<asio::const_buffer, 2>{asio::buffer(head), asio::buffer(body)});
}

absl::Status Writer::Begin(int status, const HttpHeaders& headers,
                           std::optional<uint64_t> content_length) {
  ASSIGN_OR_RETURN(ResponseHeader header, MakeHeader(status, headers));
  state_ = State::kStreaming;
  streamed_ = true;
  length_ = content_length;
  if (HasNoBody(status)) {  // no framing; Write() discards
    discard_ = true;
    length_.reset();
  } else if (length_) {
    header.content_length(*length_);
  } else if (version_ >= 11) {
    header.chunked(true);
    chunked_ = true;
  } else {  // HTTP/1.0 has no chunking: the body ends when the connection closes.
    keep_alive_ = false;
    header.keep_alive(false);
  }
  return Send(asio::buffer(SerializeHeader(header)));
}

absl::Status Writer::Write(std::string_view data) {
  if (state_ != State::kStreaming) {
    return absl::FailedPreconditionError("Write() outside Begin()...End()");
  }
  RETURN_IF_ERROR(io_error_);
  if (length_ && data.size() > *length_ - written_) {
    must_close_ = true;
    return absl::FailedPreconditionError(
        StrCat("response body exceeds its Content-Length of ", *length_));
  }
  written_ += data.size();
  if (discard_ || data.empty()) return absl::OkStatus();  // an empty chunk would end the body
  if (chunked_) return Send(http::make_chunk(asio::buffer(data.data(), data.size())));
  return Send(asio::buffer(data.data(), data.size()));
}

absl::Status Writer::End() {
  if (!streamed_) return absl::FailedPreconditionError("End() without Begin()");
  if (state_ == State::kDone) return io_error_;
  state_ = State::kDone;
  if (length_ && written_ < *length_) {
    must_close_ = true;  // closing is the only way to tell the client the body is short
    return absl::FailedPreconditionError(
        StrCat("response ended after ", written_, " of ", *length_, " bytes"));
  }
  RETURN_IF_ERROR(io_error_);
  if (chunked_ && !discard_) return Send(http::make_chunk_last());
  return absl::OkStatus();
}

bool Writer::Finish() {
  if (state_ == State::kNew) {
    Respond(500, {}, "handler did not respond\n").IgnoreError();
  } else if (state_ == State::kStreaming) {
    must_close_ = true;  // began but never ended: truncate
  }
  return keep_alive_ && !must_close_;
}

ServerRequest ToServerRequest(http::request<http::string_body>&& message, std::string remote) {
  ServerRequest request;
  request.method = std::string(ToStd(message.method_string()));
  request.target = std::string(ToStd(message.target()));
  size_t question = request.target.find('?');
  request.path = request.target.substr(0, question);
  if (question != std::string::npos) request.query = request.target.substr(question + 1);
  for (const auto& field : message) {
    // Beast has validated the syntax; HttpHeaders is stricter only about odd bytes (e.g. NUL).
    request.headers.Add(ToStd(field.name_string()), ToStd(field.value())).IgnoreError();
  }
  request.body = std::move(message.body());
  request.remote_address = std::move(remote);
  return request;
}

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(const HttpServerOptions& options, HttpHandler handler)
      : options_(options), handler_(std::move(handler)) {}
  // The pool goes first: its threads run handler_.
  ~ServerImpl() override { pool_.reset(); }

  absl::Status Start() {
    internal::PoolOptions pool_options{.address = options_.address,
                                       .port = options_.port,
                                       .unix_socket_path = options_.unix_socket_path,
                                       .threads = options_.threads,
                                       .idle_timeout = options_.idle_timeout};
    ASSIGN_OR_RETURN(pool_,
                     internal::ConnectionPool::Start(
                         pool_options, [this](auto& pool, const auto& c) { Serve(pool, c); }));
    return absl::OkStatus();
  }

  uint16_t port() const override { return pool_->port(); }
  std::string url() const override {
    if (!options_.unix_socket_path.empty()) return StrCat("http://", pool_->host());
    return StrCat("http://", pool_->host(), ":", port());
  }
  void Shutdown(absl::Duration grace) override { pool_->Shutdown(grace); }

 private:
  void Serve(internal::ConnectionPool& pool,
             const internal::ConnectionPool::Connection& connection);
  bool ServeRequest(SocketStream& stream, beast::flat_buffer& buffer, const std::string& remote,
                    bool stopping);
  void RunHandler(const ServerRequest& request, Writer& writer);
  void Reject(SocketStream& stream, const error_code& ec);

  HttpServerOptions options_;
  HttpHandler handler_;
  std::unique_ptr<internal::ConnectionPool> pool_;
};

// Serves requests on one connection until it should close (the pool then closes it).
void ServerImpl::Serve(internal::ConnectionPool& pool,
                       const internal::ConnectionPool::Connection& connection) {
  SocketStream stream(connection.fd, pool.kill_fd(), options_.io_timeout);
  beast::flat_buffer buffer;
  for (bool fresh = true; pool.WaitForRequest(connection.fd, fresh, buffer.size() > 0);
       fresh = false) {
    if (!ServeRequest(stream, buffer, connection.remote, pool.stopping()) || pool.stopping()) {
      break;
    }
  }
}

// Reads one request and runs the handler. Returns whether the connection may carry another.
bool ServerImpl::ServeRequest(SocketStream& stream, beast::flat_buffer& buffer,
                              const std::string& remote, bool stopping) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(kMaxHeaderBytes);
  parser.body_limit(options_.max_request_body);
  stream.set_read_deadline(DeadlineAfter(options_.io_timeout));
  error_code ec;
  http::read_header(stream, buffer, parser, ec);
  if (!ec) {
    auto expect = parser.get().find(http::field::expect);
    if (expect != parser.get().end() && beast::iequals(expect->value(), "100-continue")) {
      asio::write(stream, asio::buffer(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")), ec);
    }
  }
  if (!ec) http::read(stream, buffer, parser, ec);
  if (ec) {
    Reject(stream, ec);
    return false;
  }
  const unsigned version = parser.get().version();
  const bool keep_alive = parser.get().keep_alive() && !stopping;
  ServerRequest request = ToServerRequest(parser.release(), remote);
  Writer writer(stream, request, version, keep_alive);
  RunHandler(request, writer);
  return writer.Finish();
}

void ServerImpl::RunHandler(const ServerRequest& request, Writer& writer) {
  try {
    handler_(request, writer);
  } catch (const std::exception& e) {
    LogError("HTTP handler threw", {{"path", request.path}, {"error", e.what()}});
  } catch (...) {
    LogError("HTTP handler threw", {{"path", request.path}});
  }
}

// Answers a request that could not be read, where an answer helps, and closes gently: shutting
// down our side and draining what the client still sends keeps the kernel from resetting the
// connection before the client has read the answer (e.g. a 413 during a large upload).
void ServerImpl::Reject(SocketStream& stream, const error_code& ec) {
  int status;
  if (ec == http::error::body_limit) {
    status = 413;
  } else if (ec == http::error::header_limit) {
    status = 431;
  } else if (ec == asio::error::timed_out) {
    status = 408;
  } else if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
             ec != http::error::end_of_stream && ec != http::error::partial_message) {
    status = 400;
  } else {
    return;  // the client went away or the server is being killed: nobody to answer
  }
  ResponseHeader header(static_cast<http::status>(status), 11);
  header.keep_alive(false);
  header.content_length(0);
  error_code write_error;
  asio::write(stream, asio::buffer(SerializeHeader(header)), write_error);
  if (write_error) return;
  ::shutdown(stream.fd(), SHUT_WR);
  stream.set_read_deadline(absl::Now() + kLingerTime);
  std::array<char, 64 * 1024> sink;
  error_code read_error;
  while (!read_error) stream.read_some(asio::buffer(sink), read_error);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              HttpHandler handler) {
  if (!handler) return absl::InvalidArgumentError("HttpServer::Start without a handler");
  try {
    auto server = std::make_unique<ServerImpl>(options, std::move(handler));
    RETURN_IF_ERROR(server->Start());
    return std::unique_ptr<HttpServer>(std::move(server));
  } catch (const std::exception& e) {  // e.g. std::bad_alloc; nothing else throws here
    return absl::InternalError(StrCat("starting HTTP server: ", e.what()));
  }
}

}  // namespace naiad::net
