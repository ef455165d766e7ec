#include "get/daemon_client.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "get/downloader.h"
#include "nlohmann/json.hpp"

namespace naiad::get {
namespace {

// The URL host is only the Host header on a unix socket.
constexpr char kApiBase[] = "http://localhost";
constexpr absl::Duration kTrafficTimeout = absl::Seconds(2);

uint64_t GrowthOf(uint64_t now, uint64_t then) { return now > then ? now - then : 0; }

}  // namespace

DaemonClient::DaemonClient(std::string socket_path)
    : socket_path_(std::move(socket_path)),
      http_({.connect_timeout = absl::Seconds(2), .unix_socket_path = socket_path_}) {}

absl::Status DaemonClient::Connectable() const {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path_.empty() || socket_path_.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        StrCat("unix socket path \"", socket_path_, "\": empty or too long"));
  }
  std::memcpy(address.sun_path, socket_path_.data(), socket_path_.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError(errno, "socket(AF_UNIX)");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return ErrnoError(errno, "connect");
  }
  return absl::OkStatus();
}

net::HttpRequest DaemonClient::DownloadRequest(const std::string& url,
                                               const net::HttpHeaders& headers,
                                               const std::string& filter) const {
  net::HttpRequest request{.url = StrCat(kApiBase, "/v1/download"), .headers = headers};
  // Validated by the caller: a URL and a filter without CR or LF are valid header values.
  request.headers.Set("X-Naiad-Url", url).IgnoreError();
  if (!filter.empty()) request.headers.Set("X-Dragonfly-Filter", filter).IgnoreError();
  // The daemon answers only GET /v1/download; a redirect would come from a confused daemon.
  request.follow_redirects = false;
  return request;
}

absl::Status DaemonClient::DownloadError(const std::string& url,
                                         const net::HttpResponse& response) const {
  absl::StatusCode code = net::HttpStatusToStatus(response.status, "").code();
  std::string excerpt = ErrorBodyExcerpt(response.body);
  std::string detail = excerpt.empty() ? "" : StrCat(": ", excerpt);
  if (response.headers.Get("X-Dragonfly-Error-Type") == "backend") {
    return absl::Status(code,
                        StrCat(url, ": the origin answered HTTP ", response.status,
                               " (relayed by the peer daemon at ", socket_path_, ")", detail));
  }
  return absl::Status(code, StrCat(url, ": the peer daemon at ", socket_path_, " answered HTTP ",
                                   response.status, detail));
}

absl::StatusOr<TaskTraffic> DaemonClient::Traffic(std::string_view task_id) {
  std::string url = StrCat(kApiBase, "/v1/tasks/", task_id, "/traffic");
  net::HttpRequest request{.url = url, .timeout = kTrafficTimeout, .follow_redirects = false};
  absl::StatusOr<net::HttpResponse> response = http_.Send(request);
  if (!response.ok()) {
    return absl::Status(response.status().code(),
                        StrCat("peer daemon at ", socket_path_, ": ", response.status().message()));
  }
  if (response->status != 200) {
    absl::Status status = net::HttpStatusToStatus(response->status, "");
    return absl::Status(status.ok() ? absl::StatusCode::kUnknown : status.code(),
                        StrCat("peer daemon at ", socket_path_, ": GET /v1/tasks/", task_id,
                               "/traffic answered HTTP ", response->status, ": ",
                               ErrorBodyExcerpt(response->body)));
  }
  const nlohmann::json json =
      nlohmann::json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  auto field = [&json](const char* name) -> std::optional<uint64_t> {
    if (!json.is_object() || !json.contains(name) || !json[name].is_number_unsigned()) {
      return std::nullopt;
    }
    return json[name].get<uint64_t>();
  };
  std::optional<uint64_t> origin = field("origin_bytes");
  std::optional<uint64_t> peers = field("peer_bytes");
  if (!origin.has_value() || !peers.has_value()) {
    return absl::DataLossError(StrCat(
        "peer daemon at ", socket_path_, ": traffic of task ", task_id,
        " is not {\"origin_bytes\": N, \"peer_bytes\": N}: ", ErrorBodyExcerpt(response->body)));
  }
  return TaskTraffic{.origin_bytes = *origin, .peer_bytes = *peers};
}

ByteSources SourcesFromTraffic(uint64_t received, const TaskTraffic& now,
                               const TaskTraffic& baseline) {
  ByteSources sources{.origin = GrowthOf(now.origin_bytes, baseline.origin_bytes),
                      .peers = GrowthOf(now.peer_bytes, baseline.peer_bytes)};
  // The daemon may be ahead of us (pieces fetched but not yet sent), so the rest may be < 0.
  uint64_t fetched = sources.origin + sources.peers;
  sources.local = received > fetched ? received - fetched : 0;
  return sources;
}

TrafficPoller::TrafficPoller(DaemonClient& daemon, std::string task_id, absl::Duration interval)
    : daemon_(daemon), task_id_(std::move(task_id)), interval_(interval) {
  thread_ = std::thread([this] { Loop(); });
}

TrafficPoller::~TrafficPoller() {
  stop_.Notify();
  thread_.join();
}

std::optional<TaskTraffic> TrafficPoller::latest() const {
  absl::MutexLock lock(&mu_);
  return latest_;
}

void TrafficPoller::Loop() {
  do {
    // A failed poll keeps the last answer: the progress line is informative only.
    absl::StatusOr<TaskTraffic> traffic = daemon_.Traffic(task_id_);
    if (traffic.ok()) {
      absl::MutexLock lock(&mu_);
      latest_ = *traffic;
    }
  } while (!stop_.WaitForNotificationWithTimeout(interval_));
}

}  // namespace naiad::get
