#include "test/testing/net_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::testing {
namespace {

absl::StatusOr<sockaddr_in> Ipv4Address(const std::string& address, uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(StrCat("not an IPv4 address: ", address));
  }
  return addr;
}

// Waits for a non-blocking connect() to finish; returns the socket error (0 on success).
absl::StatusOr<int> AwaitConnect(int fd, absl::Duration timeout) {
  pollfd pfd{fd, POLLOUT, 0};
  int ready;
  do {
    ready = ::poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  } while (ready < 0 && errno == EINTR);
  if (ready < 0) return ErrnoError(errno, "poll");
  if (ready == 0) return ETIMEDOUT;
  int error = 0;
  socklen_t len = sizeof(error);
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) {
    return ErrnoError(errno, "getsockopt");
  }
  return error;
}

}  // namespace

absl::Status RunInNetns(const std::string& netns_path, absl::FunctionRef<absl::Status()> fn) {
  if (netns_path.empty()) return fn();
  ASSIGN_OR_RETURN(UniqueFd ns, UniqueFd::Open(netns_path, O_RDONLY));
  absl::Status result;
  std::thread worker([&] {
    if (::setns(ns.get(), CLONE_NEWNET) != 0) {
      result = ErrnoError(errno, StrCat("setns ", netns_path));
      return;
    }
    result = fn();
  });
  worker.join();
  return result;
}

absl::StatusOr<uint16_t> PickFreePort(const std::string& address) {
  ASSIGN_OR_RETURN(sockaddr_in addr, Ipv4Address(address, 0));
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError(errno, "socket");
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError(errno, StrCat("bind ", address, ":0"));
  }
  socklen_t len = sizeof(addr);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoError(errno, "getsockname");
  }
  return ntohs(addr.sin_port);
}

absl::Status TcpConnect(const std::string& address, uint16_t port, absl::Duration timeout) {
  ASSIGN_OR_RETURN(sockaddr_in addr, Ipv4Address(address, port));
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return ErrnoError(errno, "socket");
  std::string what = StrCat("connect ", address, ":", port);
  int error = 0;
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) {
      error = errno;
    } else {
      ASSIGN_OR_RETURN(error, AwaitConnect(fd.get(), timeout));
    }
  }
  if (error == 0) return absl::OkStatus();
  if (error == ETIMEDOUT) return absl::DeadlineExceededError(StrCat(what, ": timed out"));
  absl::Status status = ErrnoError(error, what);
  return absl::UnavailableError(status.message());
}

absl::Status WaitForTcp(const std::string& address, uint16_t port, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (true) {
    last = TcpConnect(address, port, absl::Seconds(1));
    if (last.ok() || absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return last;
}

}  // namespace naiad::testing
