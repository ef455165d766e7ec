// File: get/daemon_client.h
//
// `naiad get`'s side of the local peer daemon's API, which `naiad peer` serves on the unix socket
// `download.unixSocket` (default /run/naiad/peer.sock; see peer::Proxy::HandleLocal):
//
//   GET /v1/download             X-Naiad-Url: <URL>, X-Dragonfly-Filter: a&b, origin headers
//                                -> the content through the swarm (X-Dragonfly-Task-ID: <id>)
//   GET /v1/tasks/<id>/traffic   -> {"task_id", "origin_bytes", "peer_bytes"} so far
//
//   DaemonClient daemon("/run/naiad/peer.sock");
//   if (!daemon.Connectable().ok()) { ...download directly... }
//   DownloadOptions options{.url = url, .output = out, .on_error = daemon.ErrorHandler(url)};
//   ASSIGN_OR_RETURN(DownloadResult result,
//                    Download(daemon.http(), daemon.DownloadRequest(url, headers, "a&b"),
//                    options));
//   ASSIGN_OR_RETURN(TaskTraffic traffic, daemon.Traffic(task_id));
//
// Traffic counts every byte the daemon fetched for a task since it started, for whichever client;
// SourcesFromTraffic() turns it into where one download's bytes came from. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "get/progress_bar.h"
#include "net/http_client.h"

namespace naiad::get {

inline constexpr char kDefaultDaemonSocket[] = "/run/naiad/peer.sock";

// What the daemon fetched for a task so far.
struct TaskTraffic {
  uint64_t origin_bytes = 0;
  uint64_t peer_bytes = 0;

  friend bool operator==(const TaskTraffic&, const TaskTraffic&) = default;
};

class DaemonClient {
 public:
  explicit DaemonClient(std::string socket_path);

  const std::string& socket_path() const { return socket_path_; }
  // The client whose requests reach the daemon (for Download()).
  net::HttpClient& http() { return http_; }

  // Whether something accepts connections on the socket: OK, or the errno of the failed
  // connect() as a Status (NotFound: no socket there; Unavailable: nothing listens on it;
  // PermissionDenied: not ours to use).
  absl::Status Connectable() const;

  // The request that downloads `url` through the daemon: `headers` go to the origin, `filter`
  // ("a&b", may be empty) names the query parameters left out of the task's identity.
  net::HttpRequest DownloadRequest(const std::string& url, const net::HttpHeaders& headers,
                                   const std::string& filter) const;

  // The error for an error response of a download of `url`: the daemon's own refusal or an
  // origin error it relays (X-Dragonfly-Error-Type: backend), naming the status and the body.
  absl::Status DownloadError(const std::string& url, const net::HttpResponse& response) const;

  absl::StatusOr<TaskTraffic> Traffic(std::string_view task_id);

 private:
  std::string socket_path_;
  net::HttpClient http_;
};

// Where the `received` bytes of one download came from, given the daemon's traffic for its task
// now and when the download began: the growth of the daemon's origin and peer counters, and
// the rest (received - origin - peers, at least 0) from its store.
ByteSources SourcesFromTraffic(uint64_t received, const TaskTraffic& now,
                               const TaskTraffic& baseline);

// Polls a task's traffic on a background thread, at once and then every `interval`, until
// destroyed. Thread-safe.
class TrafficPoller {
 public:
  TrafficPoller(DaemonClient& daemon, std::string task_id,
                absl::Duration interval = absl::Milliseconds(500));
  ~TrafficPoller();
  TrafficPoller(const TrafficPoller&) = delete;
  TrafficPoller& operator=(const TrafficPoller&) = delete;

  // The last answer; nullopt until one came.
  std::optional<TaskTraffic> latest() const;

 private:
  void Loop();

  DaemonClient& daemon_;
  const std::string task_id_;
  const absl::Duration interval_;
  mutable absl::Mutex mu_;
  std::optional<TaskTraffic> latest_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace naiad::get
