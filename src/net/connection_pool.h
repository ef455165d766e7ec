// File: net/connection_pool.h  (internal to net/; HttpServer is the public face)
//
// The threading half of HttpServer, kept free of Beast: a listening socket, an acceptor thread
// that queues accepted connections, and a fixed pool of worker threads that each serve one
// connection at a time through a callback.
//
// Accepted sockets are non-blocking. Waits are poll()s on eventfds besides the socket:
//   stop      set when Shutdown() starts: the acceptor stops, idle connections close.
//   kill      set when the grace period is over: every wait on a socket must fail (kill_fd()).
//   pressure  a queued connection found no free worker: one worker idling on a keep-alive
//             connection that has served a request closes it and takes the queued one. (A
//             client retries a request that races with the close of a reused connection.)
// The queue is bounded; beyond it connections wait in the kernel's accept backlog.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/file.h"

namespace naiad::net::internal {

struct PoolOptions {
  std::string address = "127.0.0.1";  // a numeric IPv4 or IPv6 address
  uint16_t port = 0;                  // 0 picks a free port
  // Listen on this unix-domain socket instead of address:port. A stale socket file is replaced
  // (a live one is an error), the socket is made 0600, and Shutdown() removes it.
  std::string unix_socket_path;
  int threads = 16;
  absl::Duration idle_timeout = absl::Seconds(60);
};

class ConnectionPool {
 public:
  struct Connection {
    int fd;
    std::string remote;  // "ip:port", "[ipv6]:port", or "unix"
  };
  // Serves one connection until it should close; the pool closes the descriptor afterwards.
  // Workers run before Start() returns, hence the pool argument.
  using ServeFn = std::function<void(ConnectionPool& pool, const Connection& connection)>;

  static absl::StatusOr<std::unique_ptr<ConnectionPool>> Start(const PoolOptions& options,
                                                               ServeFn serve);
  // Shutdown() with a 5 s grace, then joins a worker left running by a Shutdown() called from a
  // ServeFn. Must not run on a worker thread.
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  uint16_t port() const { return port_; }  // 0 on a unix socket
  // The address as a URL host: "127.0.0.1", "[::1]"; "localhost" on a unix socket.
  const std::string& host() const { return host_; }
  // Becomes readable when the grace period is over; every I/O wait on a connection watches it.
  int kill_fd() const { return kill_fd_.get(); }
  bool stopping() const { return stopping_; }

  // For ServeFn: waits until `fd` has a request to read. `fresh`: no request was served on it
  // yet; `buffered`: the caller already holds bytes of the next request. False means close the
  // connection (idle timeout, shutting down, or yielding to a queued connection).
  bool WaitForRequest(int fd, bool fresh, bool buffered);

  // Stops accepting (new connections are refused), closes idle connections, lets busy ones run
  // for up to `grace`, then shuts their sockets down and joins the threads. Idempotent and
  // thread-safe. Called from a ServeFn, it neither waits for nor cuts off that connection and
  // does not join the calling thread (the destructor does).
  void Shutdown(absl::Duration grace);

 private:
  ConnectionPool(const PoolOptions& options, ServeFn serve);
  absl::Status Listen();
  absl::Status ListenUnix();
  // Removes our socket file, unless something else has replaced it since.
  void RemoveSocketFile();
  absl::Status StartThreads();
  void AcceptLoop();
  bool WaitForQueueRoom();
  void Enqueue(int fd, std::string remote);
  std::optional<Connection> PopConnection();
  bool ShouldYieldToQueued();
  void WorkerLoop();
  void CloseConnection(int fd);

  PoolOptions options_;
  ServeFn serve_;
  UniqueFd listen_fd_;
  uint16_t port_ = 0;
  std::string host_;
  // The unix socket we bound (device and inode), to remove it and only it.
  bool socket_file_bound_ = false;
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  UniqueFd stop_fd_, kill_fd_, pressure_fd_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> killed_{false};
  std::thread accept_thread_;
  std::vector<std::thread> workers_;

  std::mutex mu_;
  std::condition_variable work_cv_;     // queue_ gained a connection, or workers_exit_
  std::condition_variable room_cv_;     // queue_ has room, or stopping
  std::condition_variable drained_cv_;  // a connection closed
  std::deque<Connection> queue_;
  size_t max_queued_ = 0;
  size_t waiting_workers_ = 0;
  std::set<int> open_fds_;  // connections being served (for the forced close)
  bool workers_exit_ = false;

  std::mutex shutdown_mu_;
  bool shut_down_ = false;
};

// Milliseconds until `deadline` for poll(): -1 for never, rounded up so that a wait never spins.
int PollTimeout(absl::Time deadline);
// Now + `duration`; InfiniteFuture() for an infinite duration.
absl::Time DeadlineAfter(absl::Duration duration);

}  // namespace naiad::net::internal
