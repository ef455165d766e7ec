#include "net/connection_pool.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <exception>
#include <system_error>

#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::net::internal {
namespace {

constexpr int kQueuedPerThread = 4;

// The pool and connection the current worker thread serves: Shutdown() called from a ServeFn
// neither waits for nor cuts off its own connection, nor joins its own thread.
thread_local const ConnectionPool* tls_pool = nullptr;
thread_local int tls_connection_fd = -1;

void Notify(int event_fd) {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(event_fd, &one, sizeof(one));
}

bool TryConsume(int event_fd) {
  uint64_t value;
  return ::read(event_fd, &value, sizeof(value)) == sizeof(value);
}

absl::StatusOr<UniqueFd> MakeEventFd(int flags) {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC | flags);
  if (fd < 0) return ErrnoError(errno, "eventfd");
  return UniqueFd(fd);
}

// "1.2.3.4:80", "[::1]:80" or "unix".
std::string FormatAddress(const sockaddr_storage& address) {
  if (address.ss_family == AF_UNIX) return "unix";
  char text[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
    ::inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof(text));
    return StrCat("[", text, "]:", ntohs(v6.sin6_port));
  }
  const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
  ::inet_ntop(AF_INET, &v4.sin_addr, text, sizeof(text));
  return StrCat(text, ":", ntohs(v4.sin_port));
}

// A socket address for a numeric IPv4 or IPv6 address; false if `text` is neither.
bool ParseAddress(const std::string& text, uint16_t port, sockaddr_storage* address,
                  socklen_t* length) {
  *address = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(address);
  if (::inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *length = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(address);
  if (::inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *length = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

}  // namespace

int PollTimeout(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return -1;
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, INT_MAX));
}

absl::Time DeadlineAfter(absl::Duration duration) {
  return duration == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + duration;
}

ConnectionPool::ConnectionPool(const PoolOptions& options, ServeFn serve)
    : options_(options), serve_(std::move(serve)) {
  options_.threads = std::max(options_.threads, 1);
  max_queued_ = static_cast<size_t>(options_.threads) * kQueuedPerThread;
}

absl::StatusOr<std::unique_ptr<ConnectionPool>> ConnectionPool::Start(const PoolOptions& options,
                                                                      ServeFn serve) {
  std::unique_ptr<ConnectionPool> pool(new ConnectionPool(options, std::move(serve)));
  RETURN_IF_ERROR(pool->Listen());
  RETURN_IF_ERROR(pool->StartThreads());
  return pool;
}

ConnectionPool::~ConnectionPool() {
  Shutdown(absl::Seconds(5));
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();  // left by a Shutdown() called from a ServeFn
  }
}

absl::Status ConnectionPool::Listen() {
  ASSIGN_OR_RETURN(stop_fd_, MakeEventFd(0));
  ASSIGN_OR_RETURN(kill_fd_, MakeEventFd(0));
  ASSIGN_OR_RETURN(pressure_fd_, MakeEventFd(EFD_SEMAPHORE));
  if (!options_.unix_socket_path.empty()) return ListenUnix();
  sockaddr_storage address;
  socklen_t length;
  if (!ParseAddress(options_.address, options_.port, &address, &length)) {
    return absl::InvalidArgumentError(StrCat("bad listen address ", options_.address));
  }
  host_ = address.ss_family == AF_INET6 ? StrCat("[", options_.address, "]") : options_.address;
  const std::string what = StrCat("listening on ", FormatAddress(address));
  listen_fd_ = UniqueFd(::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_fd_.valid()) return ErrnoError(errno, what);
  int one = 1;
  ::setsockopt(listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      ::listen(listen_fd_.get(), SOMAXCONN) != 0 ||
      ::getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return ErrnoError(errno, what);
  }
  port_ =
      ntohs(address.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6&>(address).sin6_port
                                          : reinterpret_cast<const sockaddr_in&>(address).sin_port);
  return absl::OkStatus();
}

absl::Status ConnectionPool::ListenUnix() {
  const std::string& path = options_.unix_socket_path;
  const std::string what = StrCat("listening on unix socket ", path);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        StrCat(what, ": path longer than ", sizeof(address.sun_path) - 1, " bytes"));
  }
  path.copy(address.sun_path, path.size());
  const auto* addr = reinterpret_cast<const sockaddr*>(&address);
  const socklen_t length = sizeof(address);
  host_ = "localhost";

  // A socket file left by a server that died is replaced; one a server still answers on is not,
  // and neither is anything that is not a socket.
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(StrCat(what, ": exists and is not a socket"));
    }
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() && ::connect(probe.get(), addr, length) == 0) {
      return absl::AlreadyExistsError(StrCat(what, ": another server is listening there"));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError(errno, StrCat(what, ": removing stale socket"));
    }
  } else if (errno != ENOENT) {
    return ErrnoError(errno, StrCat(what, ": stat"));
  }

  listen_fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_fd_.valid()) return ErrnoError(errno, what);
  if (::bind(listen_fd_.get(), addr, length) != 0) return ErrnoError(errno, what);
  // Owner only, set before listen(): until then a connect() is refused anyway.
  if (::chmod(path.c_str(), 0600) != 0 || ::stat(path.c_str(), &st) != 0) {
    absl::Status status = ErrnoError(errno, StrCat(what, ": chmod"));
    ::unlink(path.c_str());
    return status;
  }
  socket_file_bound_ = true;
  socket_dev_ = st.st_dev;
  socket_ino_ = st.st_ino;
  if (::listen(listen_fd_.get(), SOMAXCONN) != 0) {
    absl::Status status = ErrnoError(errno, what);
    RemoveSocketFile();
    return status;
  }
  return absl::OkStatus();
}

void ConnectionPool::RemoveSocketFile() {
  if (!socket_file_bound_) return;
  socket_file_bound_ = false;
  struct stat st;
  const std::string& path = options_.unix_socket_path;
  if (::lstat(path.c_str(), &st) == 0 && st.st_dev == socket_dev_ && st.st_ino == socket_ino_) {
    ::unlink(path.c_str());
  }
}

absl::Status ConnectionPool::StartThreads() {
  try {
    accept_thread_ = std::thread([this] { AcceptLoop(); });
    for (int i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  } catch (const std::system_error& e) {
    Shutdown(absl::ZeroDuration());
    return absl::ResourceExhaustedError(StrCat("starting HTTP server threads: ", e.what()));
  }
  return absl::OkStatus();
}

// Blocks while the queue is full, so that excess connections wait in the kernel's backlog.
bool ConnectionPool::WaitForQueueRoom() {
  std::unique_lock lock(mu_);
  room_cv_.wait(lock, [&] { return queue_.size() < max_queued_ || stopping_; });
  return !stopping_;
}

void ConnectionPool::AcceptLoop() {
  while (WaitForQueueRoom()) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
    if (fds[1].revents != 0) break;
    if (fds[0].revents == 0) continue;
    sockaddr_storage remote{};
    socklen_t length = sizeof(remote);
    int fd = ::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&remote), &length,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      LogWarn("HTTP server accept failed", {{"error", ErrnoError(errno, "accept").ToString()}});
      pollfd stop = {stop_fd_.get(), POLLIN, 0};
      ::poll(&stop, 1, 100);  // e.g. out of descriptors: back off instead of spinning
      continue;
    }
    if (remote.ss_family != AF_UNIX) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    Enqueue(fd, FormatAddress(remote));
  }
}

void ConnectionPool::Enqueue(int fd, std::string remote) {
  bool no_free_worker;
  {
    std::lock_guard lock(mu_);
    queue_.push_back({fd, std::move(remote)});
    no_free_worker = queue_.size() > waiting_workers_;
  }
  work_cv_.notify_one();
  if (no_free_worker) Notify(pressure_fd_.get());
}

std::optional<ConnectionPool::Connection> ConnectionPool::PopConnection() {
  std::unique_lock lock(mu_);
  ++waiting_workers_;
  work_cv_.wait(lock, [&] { return !queue_.empty() || workers_exit_; });
  --waiting_workers_;
  if (queue_.empty()) return std::nullopt;
  Connection connection = std::move(queue_.front());
  queue_.pop_front();
  open_fds_.insert(connection.fd);
  room_cv_.notify_one();
  return connection;
}

void ConnectionPool::WorkerLoop() {
  while (std::optional<Connection> connection = PopConnection()) {
    tls_pool = this;
    tls_connection_fd = connection->fd;
    try {
      serve_(*this, *connection);
    } catch (const std::exception& e) {  // the ServeFn should not throw; keep the worker alive
      LogError("HTTP connection failed", {{"remote", connection->remote}, {"error", e.what()}});
    }
    tls_pool = nullptr;
    tls_connection_fd = -1;
    CloseConnection(connection->fd);
  }
}

void ConnectionPool::CloseConnection(int fd) {
  {
    std::lock_guard lock(mu_);
    open_fds_.erase(fd);
    drained_cv_.notify_all();
  }
  ::close(fd);
}

// Called by a worker idling on a keep-alive connection when the pressure signal fires.
bool ConnectionPool::ShouldYieldToQueued() {
  if (!TryConsume(pressure_fd_.get())) return false;  // another worker took it
  std::lock_guard lock(mu_);
  return queue_.size() > waiting_workers_;
}

bool ConnectionPool::WaitForRequest(int fd, bool fresh, bool buffered) {
  if (killed_) return false;
  if (buffered) return true;
  absl::Time deadline = DeadlineAfter(options_.idle_timeout);
  for (;;) {
    pollfd fds[3] = {{fd, POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}, {pressure_fd_.get(), POLLIN, 0}};
    int ready = ::poll(fds, fresh ? 2 : 3, PollTimeout(deadline));
    if (ready < 0 && errno != EINTR) return false;
    if (fds[0].revents != 0) return true;  // data, or the EOF/error the read reports
    if (fds[1].revents != 0) return false;
    if (fds[2].revents != 0 && ShouldYieldToQueued()) return false;
    if (ready == 0 && absl::Now() >= deadline) return false;
  }
}

void ConnectionPool::Shutdown(absl::Duration grace) {
  std::lock_guard shutdown_lock(shutdown_mu_);  // a concurrent caller waits for the first
  if (shut_down_) return;
  shut_down_ = true;
  const auto deadline =
      std::chrono::steady_clock::now() +
      absl::ToChronoMilliseconds(std::clamp(grace, absl::ZeroDuration(), absl::Hours(24)));
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  room_cv_.notify_all();
  if (stop_fd_.valid()) Notify(stop_fd_.get());  // the acceptor and idle connections stop now
  if (accept_thread_.joinable()) accept_thread_.join();
  listen_fd_.Reset();  // new connections are refused from here on
  RemoveSocketFile();
  {
    std::unique_lock lock(mu_);
    workers_exit_ = true;
    work_cv_.notify_all();
    const int own_fd = tls_pool == this ? tls_connection_fd : -1;
    drained_cv_.wait_until(lock, deadline, [&] {
      return queue_.empty() && open_fds_.size() == (open_fds_.contains(own_fd) ? 1 : 0);
    });
    for (int fd : open_fds_) {
      if (fd != own_fd) ::shutdown(fd, SHUT_RDWR);
    }
  }
  killed_ = true;
  if (kill_fd_.valid()) Notify(kill_fd_.get());  // whatever still runs fails its next I/O wait
  for (std::thread& worker : workers_) {
    if (worker.joinable() && worker.get_id() != std::this_thread::get_id()) worker.join();
  }
  std::lock_guard lock(mu_);
  for (const Connection& connection : queue_) ::close(connection.fd);
  queue_.clear();
}

}  // namespace naiad::net::internal
