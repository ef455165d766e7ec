// File: test/testing/fault_proxy.h
//
// A user-space HTTP proxy for tests that sits in front of an upstream server (a registry, blob
// storage) and misbehaves on command: answers 500, resets connections, stalls, corrupts bodies,
// fails its health ping. Usable as a registry mirror (every path is forwarded to
// `upstream` + path) and as an HTTP forward proxy (a request whose target is an absolute
// "http://..." URL goes to that URL).
//
//   ASSERT_OK_AND_ASSIGN(auto mirror, FaultProxy::Start({.upstream = registry->url()}));
//   mirror->SetFault({.kind = FaultKind::kStatus, .status = 500, .count = 2});  // next 2 requests
//   ... reads through mirror->url() ...
//   mirror->SetFault({.kind = FaultKind::kResetBeforeResponse});     // until ClearFault()
//   mirror->SetPingHealthy(false);                                   // GET /v2 -> 503
//   EXPECT_EQ(mirror->requests_seen(), 3);
//   for (const auto& r : mirror->requests()) EXPECT_FALSE(r.headers.Has("Authorization"));
//
// The ping path (`ping_path`, default "/v2", with or without a trailing slash) is answered by the
// proxy itself: 200 while healthy, 503 otherwise; faults never apply to it and it is counted
// separately. Faults apply to the next `count` requests (that match `method`), or until cleared
// when count is -1.
//
// Raw sockets, one thread per connection, one request per connection ("Connection: close"), so
// a reset or a stall affects exactly one request. Response bodies are buffered (test blobs are
// small). Stop() (and the destructor) ends stalls at once and joins every thread.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "net/http_client.h"
#include "net/http_types.h"

namespace naiad::testing {

enum class FaultKind {
  kNone,                 // pass through
  kStatus,               // answer `status` without asking upstream
  kResetBeforeResponse,  // read the request, then reset the connection (RST) without answering
  kResetMidBody,         // send the headers and half the body, then reset
  kStallBeforeResponse,  // read the request, then say nothing for `stall`, then close
  kStallMidBody,         // send the headers and half the body, stall for `stall`, then close
  kCorruptBody,          // flip one byte in the middle of the body
};

struct Fault {
  FaultKind kind = FaultKind::kNone;
  int status = 500;  // kStatus
  absl::Duration stall = absl::Seconds(30);
  int count = -1;      // requests it applies to; -1: until cleared
  std::string method;  // only requests with this method ("GET"); empty: any
};

struct FaultProxyOptions {
  // Base URL that request paths are appended to, "http://127.0.0.1:5000". May be empty when the
  // proxy is only used as a forward proxy.
  std::string upstream;
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port
  std::string ping_path = "/v2";
};

struct SeenRequest {
  std::string method;
  std::string target;  // as sent: path?query, or an absolute URL (forward-proxy use)
  net::HttpHeaders headers;
};

class FaultProxy {
 public:
  static absl::StatusOr<std::unique_ptr<FaultProxy>> Start(FaultProxyOptions options);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  // "http://<address>:<port>"
  std::string url() const;
  uint16_t port() const { return port_; }

  // Replaces the current fault.
  void SetFault(Fault fault);
  void ClearFault() { SetFault({}); }
  // The ping path answers 200 (the default) or 503.
  void SetPingHealthy(bool healthy);

  uint64_t requests_seen() const;  // excluding pings
  uint64_t pings_seen() const;
  uint64_t faults_applied() const;
  uint64_t bytes_relayed() const;  // response body bytes sent to clients
  std::vector<SeenRequest> requests() const;
  void ResetCounters();

  // Closes the listener and every connection, ends stalls and joins the threads. Idempotent.
  void Stop();

 private:
  explicit FaultProxy(FaultProxyOptions options);
  absl::Status Listen();
  void AcceptLoop();
  void Serve(int fd);
  // Sleeps up to `d`, returning early on Stop().
  void Stall(absl::Duration d);
  Fault TakeFault(const std::string& method);

  const FaultProxyOptions options_;
  net::HttpClient upstream_client_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  uint16_t port_ = 0;
  std::thread acceptor_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Fault fault_ ABSL_GUARDED_BY(mu_);
  bool ping_healthy_ ABSL_GUARDED_BY(mu_) = true;
  uint64_t requests_seen_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t pings_seen_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t faults_applied_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_relayed_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<SeenRequest> seen_ ABSL_GUARDED_BY(mu_);
  std::vector<int> connection_fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> connection_threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace naiad::testing
