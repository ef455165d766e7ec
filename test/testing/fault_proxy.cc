#include "test/testing/fault_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::testing {
namespace {

constexpr size_t kMaxHead = 64 << 10;
constexpr int kReadTimeoutMs = 30000;

bool IsHopByHop(std::string_view name) {
  for (const char* h :
       {"Host", "Connection", "Proxy-Connection", "Proxy-Authorization", "Keep-Alive", "TE",
        "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Expect"}) {
    if (absl::EqualsIgnoreCase(ToAbsl(name), h)) return true;
  }
  return false;
}

// Writes all of `data`; false once the peer is gone.
bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads more bytes into `buffer`; false on EOF, error or timeout.
bool ReadMore(int fd, std::string* buffer) {
  pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
  int ready = ::poll(&p, 1, kReadTimeoutMs);
  if (ready <= 0) return false;
  char chunk[16384];
  ssize_t n;
  do {
    n = ::recv(fd, chunk, sizeof(chunk), 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  buffer->append(chunk, static_cast<size_t>(n));
  return true;
}

void ResetConnection(int fd) {
  linger l{.l_onoff = 1, .l_linger = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

struct ParsedRequest {
  std::string method;
  std::string target;
  net::HttpHeaders headers;
  std::string body;
};

// Reads one request; false if the connection ended first or the request is malformed.
bool ReadRequest(int fd, ParsedRequest* request) {
  std::string buffer;
  size_t head_end;
  while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
    if (buffer.size() > kMaxHead || !ReadMore(fd, &buffer)) return false;
  }
  std::string_view head(buffer.data(), head_end);
  size_t line_end = head.find("\r\n");
  std::string_view request_line = head.substr(0, line_end);
  size_t sp1 = request_line.find(' ');
  size_t sp2 = request_line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return false;
  request->method = std::string(request_line.substr(0, sp1));
  request->target = std::string(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
  std::string_view rest =
      line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
  uint64_t content_length = 0;
  while (!rest.empty()) {
    size_t end = rest.find("\r\n");
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name(line.substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(ToAbsl(line.substr(colon + 1))));
    if (absl::EqualsIgnoreCase(name, "Content-Length")) {
      content_length = std::strtoull(value.c_str(), nullptr, 10);
    }
    request->headers.Add(name, value).IgnoreError();
  }
  request->body = buffer.substr(head_end + 4);
  while (request->body.size() < content_length) {
    if (!ReadMore(fd, &request->body)) return false;
  }
  request->body.resize(content_length);
  return true;
}

std::string ResponseHead(int status, const net::HttpHeaders& headers, uint64_t content_length) {
  std::string head = StrCat("HTTP/1.1 ", status, " Fault Proxy\r\n");
  for (const auto& [name, value] : headers.entries()) {
    if (IsHopByHop(name)) continue;
    StrAppend(&head, name, ": ", value, "\r\n");
  }
  StrAppend(&head, "Content-Length: ", content_length, "\r\nConnection: close\r\n\r\n");
  return head;
}

}  // namespace

FaultProxy::FaultProxy(FaultProxyOptions options)
    : options_(std::move(options)),
      upstream_client_(net::HttpClientOptions{.connect_timeout = absl::Seconds(5),
                                              .low_speed_time = absl::Seconds(30)}) {}

FaultProxy::~FaultProxy() { Stop(); }

absl::StatusOr<std::unique_ptr<FaultProxy>> FaultProxy::Start(FaultProxyOptions options) {
  std::unique_ptr<FaultProxy> proxy(new FaultProxy(std::move(options)));
  RETURN_IF_ERROR(proxy->Listen());
  proxy->acceptor_ = std::thread([p = proxy.get()] { p->AcceptLoop(); });
  return proxy;
}

absl::Status FaultProxy::Listen() {
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return ErrnoError(errno, "socket");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(options_.port);
  if (::inet_pton(AF_INET, options_.address.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(StrCat("fault proxy: bad address ", options_.address));
  }
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError(errno, StrCat("bind ", options_.address, ":", options_.port));
  }
  if (::listen(listen_fd_, 128) != 0) return ErrnoError(errno, "listen");
  socklen_t len = sizeof(addr);
  if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoError(errno, "getsockname");
  }
  port_ = ntohs(addr.sin_port);
  return absl::OkStatus();
}

std::string FaultProxy::url() const { return StrCat("http://", options_.address, ":", port_); }

void FaultProxy::AcceptLoop() {
  while (true) {
    pollfd fds[2] = {{.fd = listen_fd_, .events = POLLIN, .revents = 0},
                     {.fd = wake_pipe_[0], .events = POLLIN, .revents = 0}};
    int ready = ::poll(fds, 2, -1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0 || fds[1].revents != 0) return;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    connection_fds_.push_back(fd);
    connection_threads_.emplace_back([this, fd] {
      Serve(fd);
      absl::MutexLock lock(&mu_);
      connection_fds_.erase(std::find(connection_fds_.begin(), connection_fds_.end(), fd));
      ::close(fd);
    });
  }
}

void FaultProxy::Stop() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (int fd : connection_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  if (wake_pipe_[1] >= 0) {
    char c = 0;
    [[maybe_unused]] ssize_t n = ::write(wake_pipe_[1], &c, 1);
  }
  if (acceptor_.joinable()) acceptor_.join();
  {
    absl::MutexLock lock(&mu_);
    threads = std::move(connection_threads_);
  }
  for (std::thread& t : threads) t.join();
  for (int* fd : {&listen_fd_, &wake_pipe_[0], &wake_pipe_[1]}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
}

void FaultProxy::Stall(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
}

void FaultProxy::SetFault(Fault fault) {
  absl::MutexLock lock(&mu_);
  fault_ = std::move(fault);
}

void FaultProxy::SetPingHealthy(bool healthy) {
  absl::MutexLock lock(&mu_);
  ping_healthy_ = healthy;
}

Fault FaultProxy::TakeFault(const std::string& method) {
  absl::MutexLock lock(&mu_);
  if (fault_.kind == FaultKind::kNone || fault_.count == 0) return {};
  if (!fault_.method.empty() && fault_.method != method) return {};
  Fault taken = fault_;
  ++faults_applied_;
  if (fault_.count > 0 && --fault_.count == 0) fault_ = {};
  return taken;
}

uint64_t FaultProxy::requests_seen() const {
  absl::MutexLock lock(&mu_);
  return requests_seen_;
}

uint64_t FaultProxy::pings_seen() const {
  absl::MutexLock lock(&mu_);
  return pings_seen_;
}

uint64_t FaultProxy::faults_applied() const {
  absl::MutexLock lock(&mu_);
  return faults_applied_;
}

uint64_t FaultProxy::bytes_relayed() const {
  absl::MutexLock lock(&mu_);
  return bytes_relayed_;
}

std::vector<SeenRequest> FaultProxy::requests() const {
  absl::MutexLock lock(&mu_);
  return seen_;
}

void FaultProxy::ResetCounters() {
  absl::MutexLock lock(&mu_);
  requests_seen_ = pings_seen_ = faults_applied_ = bytes_relayed_ = 0;
  seen_.clear();
}

void FaultProxy::Serve(int fd) {
  ParsedRequest request;
  if (!ReadRequest(fd, &request)) return;
  std::string path = request.target.substr(0, request.target.find('?'));
  if (path == options_.ping_path || path == StrCat(options_.ping_path, "/")) {
    bool healthy;
    {
      absl::MutexLock lock(&mu_);
      ++pings_seen_;
      healthy = ping_healthy_;
    }
    std::string body = healthy ? "{}" : "ping failed";
    WriteAll(fd, StrCat(ResponseHead(healthy ? 200 : 503, {}, body.size()), body));
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    ++requests_seen_;
    seen_.push_back({request.method, request.target, request.headers});
  }
  Fault fault = TakeFault(request.method);
  switch (fault.kind) {
    case FaultKind::kStatus: {
      std::string body = StrCat("fault proxy: injected HTTP ", fault.status);
      WriteAll(fd, StrCat(ResponseHead(fault.status, {}, body.size()), body));
      return;
    }
    case FaultKind::kResetBeforeResponse:
      ResetConnection(fd);
      return;
    case FaultKind::kStallBeforeResponse:
      Stall(fault.stall);
      return;
    default:
      break;
  }

  std::string upstream_url =
      request.target.starts_with("http://") || request.target.starts_with("https://")
          ? request.target
          : StrCat(options_.upstream, request.target);
  net::HttpRequest forward{.method = request.method, .url = upstream_url, .body = request.body};
  forward.follow_redirects = false;
  for (const auto& [name, value] : request.headers.entries()) {
    if (!IsHopByHop(name)) forward.headers.Add(name, value).IgnoreError();
  }
  absl::StatusOr<net::HttpResponse> response = upstream_client_.Send(forward);
  if (!response.ok()) {
    std::string body = StrCat("fault proxy: upstream failed: ", response.status().ToString());
    WriteAll(fd, StrCat(ResponseHead(502, {}, body.size()), body));
    return;
  }
  std::string& body = response->body;
  uint64_t content_length = body.size();
  if (request.method == "HEAD") {
    std::optional<std::string> length = response->headers.Get("Content-Length");
    content_length = length ? std::strtoull(length->c_str(), nullptr, 10) : 0;
  }
  if (fault.kind == FaultKind::kCorruptBody && !body.empty()) body[body.size() / 2] ^= 0x5a;
  std::string head = ResponseHead(response->status, response->headers, content_length);
  bool mid_body = fault.kind == FaultKind::kResetMidBody || fault.kind == FaultKind::kStallMidBody;
  std::string_view to_send = body;
  if (mid_body) to_send = to_send.substr(0, body.size() / 2);
  if (!WriteAll(fd, head) || !WriteAll(fd, to_send)) return;
  {
    absl::MutexLock lock(&mu_);
    bytes_relayed_ += to_send.size();
  }
  if (fault.kind == FaultKind::kResetMidBody) {
    ResetConnection(fd);
  } else if (fault.kind == FaultKind::kStallMidBody) {
    Stall(fault.stall);
  }
}

}  // namespace naiad::testing
