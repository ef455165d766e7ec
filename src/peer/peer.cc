#include "peer/peer.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "base/file.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::peer {
namespace {

net::HttpServerOptions ServerOptions(const TcpListenConfig& listen, int threads) {
  net::HttpServerOptions options;
  options.address = listen.listen;
  options.port = static_cast<uint16_t>(listen.port);
  options.threads = threads;
  return options;
}

// The local address that packets to `target` ("host:port") leave from: what other peers in the
// scheduler's network reach us at. A UDP connect() sends nothing.
absl::StatusOr<std::string> LocalAddressToward(const std::string& target) {
  size_t colon = target.rfind(':');
  std::string host = target.substr(0, colon);
  std::string port = target.substr(colon + 1);
  if (!host.empty() && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(StrCat("scheduler address \"", target, "\": ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> cleanup(found, freeaddrinfo);
  UniqueFd fd(socket(found->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || connect(fd.get(), found->ai_addr, found->ai_addrlen) != 0) {
    return ErrnoError(errno, StrCat("finding the local address toward ", target));
  }
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &length) != 0) {
    return ErrnoError(errno, "getsockname");
  }
  char text[INET6_ADDRSTRLEN] = {};
  const void* address =
      local.ss_family == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(&local)->sin6_addr)
          : &reinterpret_cast<const sockaddr_in*>(&local)->sin_addr;
  inet_ntop(local.ss_family, address, text, sizeof(text));
  return std::string(text);
}

// This node as the scheduler sees it. `scheduler` ("host:port", may be empty) is used to find
// the address to advertise when host.advertiseIP is not set.
absl::StatusOr<schedv1::Host> DescribeHost(const PeerConfig& config, const std::string& scheduler,
                                           uint16_t upload_port) {
  std::string hostname = config.host.hostname;
  if (hostname.empty()) {
    char name[256] = {};
    gethostname(name, sizeof(name) - 1);
    hostname = name;
  }
  std::string ip = config.host.advertise_ip;
  if (ip.empty() && !scheduler.empty()) {
    ASSIGN_OR_RETURN(ip, LocalAddressToward(scheduler));
  }
  if (ip.empty()) ip = "127.0.0.1";
  schedv1::Host host;
  host.set_id(StrCat(ip, "-", hostname, "-", upload_port, config.seed_peer.enable ? "-seed" : ""));
  host.set_hostname(hostname);
  host.set_ip(ip);
  host.set_upload_port(upload_port);
  host.set_proxy_port(static_cast<uint32_t>(config.proxy.tcp_listen.port));
  host.set_type(config.seed_peer.enable ? schedv1::HOST_TYPE_SEED : schedv1::HOST_TYPE_NORMAL);
  host.set_upload_limit(static_cast<uint32_t>(config.upload.concurrent_limit));
  host.set_idc(config.host.idc);
  host.set_location(config.host.location);
  return host;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Peer>> Peer::Start(const PeerConfig& config) {
  RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<Peer> peer(new Peer());
  peer->config_ = config;
  ASSIGN_OR_RETURN(peer->store_,
                   piece::PieceStore::Open({.dir = config.data_dir,
                                            .task_ttl = config.storage.task_expire_time,
                                            .quota_bytes = config.storage.disk_gc_threshold}));
  RETURN_IF_ERROR(peer->StartSwarm());
  peer->proxy_ = std::make_unique<Proxy>(peer->config_, peer->downloads_.get(), &peer->metrics_);
  Proxy* proxy = peer->proxy_.get();
  ASSIGN_OR_RETURN(peer->proxy_server_,
                   net::HttpServer::Start(
                       ServerOptions(config.proxy.tcp_listen, 64),
                       [proxy](const net::ServerRequest& request, net::ResponseWriter& writer) {
                         proxy->Handle(request, writer);
                       }));
  Peer* self = peer.get();
  ASSIGN_OR_RETURN(peer->health_server_,
                   net::HttpServer::Start(
                       ServerOptions(config.health.tcp_listen, 4),
                       [self](const net::ServerRequest& request, net::ResponseWriter& writer) {
                         net::HttpHeaders headers;
                         if (request.path == self->config_.health.path) {
                           writer.Respond(200, headers, "OK").IgnoreError();
                         } else if (request.path == "/metrics") {
                           headers.Add("Content-Type", "text/plain; version=0.0.4").IgnoreError();
                           writer.Respond(200, headers, self->MetricsText()).IgnoreError();
                         } else {
                           writer.Respond(404, headers, "").IgnoreError();
                         }
                       }));
  if (!config.download.unix_socket.empty()) {
    // The local API is a convenience for `naiad get`: a socket another daemon owns (several
    // peers on one machine, in tests) is not a reason to fail.
    RETURN_IF_ERROR(CreateDirectories(
        std::filesystem::path(config.download.unix_socket).parent_path().string()));
    absl::StatusOr<std::unique_ptr<net::HttpServer>> local = net::HttpServer::Start(
        {.unix_socket_path = config.download.unix_socket, .threads = 8},
        [proxy](const net::ServerRequest& request, net::ResponseWriter& writer) {
          proxy->HandleLocal(request, writer);
        });
    if (local.ok()) {
      peer->local_server_ = std::move(*local);
    } else {
      LogWarn("local API socket not served", {{"error", local.status()}});
    }
  }
  peer->gc_thread_ = std::thread([self] { self->CollectGarbageLoop(); });
  if (peer->scheduler_ != nullptr) {
    peer->keepalive_thread_ = std::thread([self] { self->KeepAliveLoop(); });
  }
  LogInfo("peer started", {{"proxy_port", peer->proxy_port()},
                           {"health_port", peer->health_port()},
                           {"upload_port", peer->upload_port()},
                           {"host_id", peer->host_id()},
                           {"seed", config.seed_peer.enable},
                           {"data_dir", config.data_dir}});
  return peer;
}

// The upload service, the scheduler client and the downloads. The upload server starts first:
// the host's id names its port.
absl::Status Peer::StartSwarm() {
  const PeerConfig& config = config_;
  SeedHandler on_seed;
  if (config.seed_peer.enable) {
    on_seed = [this](const SeedRequest& request) {
      piece::TaskMeta meta{.task_id = request.task_id,
                           .url = request.url,
                           .content_length = request.content_length,
                           .piece_size = request.piece_size,
                           .digest = request.digest};
      return downloads_->Seed({.meta = meta, .origin = {request.url, request.headers}});
    };
  }
  ASSIGN_OR_RETURN(upload_, UploadService::Create(store_.get(), config.upload, on_seed));
  UploadService* upload = upload_.get();
  ASSIGN_OR_RETURN(upload_server_,
                   net::HttpServer::Start(
                       ServerOptions(config.upload.tcp_listen, config.upload.concurrent_limit + 8),
                       [upload](const net::ServerRequest& request, net::ResponseWriter& writer) {
                         upload->Handle(request, writer);
                       }));
  DownloadsOptions options{.store = store_.get(), .config = config.download, .metrics = &metrics_};
  if (!config.scheduler.net_addrs.empty()) {
    std::vector<std::string> addresses;
    for (const NetAddr& addr : config.scheduler.net_addrs) addresses.push_back(addr.addr);
    ASSIGN_OR_RETURN(scheduler_,
                     SchedulerClient::Connect(addresses, config.scheduler.schedule_timeout));
    piece_client_ = std::make_unique<PieceClient>();
    ASSIGN_OR_RETURN(host_, DescribeHost(config, addresses.front(), upload_server_->port()));
    options.scheduler = scheduler_.get();
    options.piece_client = piece_client_.get();
    options.host_id = host_.id();
    options.back_to_source = !config.scheduler.disable_auto_back_source;
    options.reannounce = [this] { Announce(); };
    Announce();  // best effort: the keepalive loop retries
  } else {
    ASSIGN_OR_RETURN(host_, DescribeHost(config, "", upload_server_->port()));
  }
  downloads_ = std::make_unique<Downloads>(std::move(options));
  Downloads* downloads = downloads_.get();
  upload->SetWaitHandler([downloads](const std::string& task_id, uint32_t first, uint32_t last) {
    downloads->Urge(task_id, first, last);
  });
  return absl::OkStatus();
}

absl::Duration Peer::Announce() {
  schedv1::Host host = host_;
  host.set_upload_active(static_cast<uint32_t>(upload_->active()));
  absl::StatusOr<absl::Duration> interval = scheduler_->AnnounceHost(host);
  if (!interval.ok()) {
    LogWarn("announcing the host to the scheduler failed", {{"error", interval.status()}});
    return std::min(config_.scheduler.keepalive_interval, absl::Seconds(1));
  }
  return *interval;
}

void Peer::KeepAliveLoop() {
  absl::Duration interval = config_.scheduler.keepalive_interval;
  while (!stop_.WaitForNotificationWithTimeout(interval)) interval = Announce();
  scheduler_->LeaveHost(host_.id());
}

Peer::~Peer() {
  Stop();
  if (gc_thread_.joinable()) gc_thread_.join();
  if (keepalive_thread_.joinable()) keepalive_thread_.join();
  if (upload_ != nullptr) upload_->Stop();
  if (proxy_server_ != nullptr) proxy_server_->Shutdown(absl::Seconds(2));
  if (upload_server_ != nullptr) upload_server_->Shutdown(absl::Seconds(1));
  if (local_server_ != nullptr) local_server_->Shutdown(absl::Seconds(1));
  if (health_server_ != nullptr) health_server_->Shutdown(absl::Seconds(1));
  if (upload_ != nullptr) upload_->SetWaitHandler(nullptr);  // a late waiter must not Urge
  downloads_.reset();
}

void Peer::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
}

void Peer::Wait() { stop_.WaitForNotification(); }

void Peer::CollectGarbageLoop() {
  while (!stop_.WaitForNotificationWithTimeout(config_.gc_interval)) {
    piece::GcResult result = store_->CollectGarbage();
    if (result.tasks_removed > 0) {
      LogInfo("garbage collected",
              {{"tasks", result.tasks_removed}, {"bytes", result.bytes_freed}});
    }
    // The scheduler must stop offering this host as a parent of what it no longer holds.
    if (scheduler_ != nullptr) {
      for (const std::string& task_id : result.removed) scheduler_->LeaveTask(host_.id(), task_id);
    }
  }
}

std::string Peer::MetricsText() const {
  std::string text;
  auto counter = [&text](std::string_view name, std::string_view help, uint64_t value) {
    StrAppend(&text, "# HELP naiad_peer_", name, " ", help, "\n# TYPE naiad_peer_", name,
              " counter\nnaiad_peer_", name, " ", value, "\n");
  };
  counter("origin_bytes_total", "Piece bytes fetched from origins (back to source).",
          metrics_.origin_bytes.load());
  counter("origin_requests_total", "Ranged requests to origins.", metrics_.origin_requests.load());
  counter("origin_failures_total", "Failed origin piece requests.",
          metrics_.origin_failures.load());
  counter("peer_bytes_total", "Piece bytes fetched from other peers.", metrics_.peer_bytes.load());
  counter("peer_pieces_total", "Pieces fetched from other peers.", metrics_.peer_pieces.load());
  counter("peer_failures_total", "Failed piece requests to other peers (busy answers not counted).",
          metrics_.peer_failures.load());
  counter("back_to_source_total", "Tasks that fetched at least one piece from the origin.",
          metrics_.back_to_source.load());
  counter("scheduler_syncs_total", "SyncTask calls to the scheduler.",
          metrics_.scheduler_syncs.load());
  counter("scheduler_errors_total", "Failed scheduler calls.", metrics_.scheduler_errors.load());
  counter("origin_fallbacks_total", "Tasks moved to the origin because the scheduler failed.",
          metrics_.origin_fallbacks.load());
  counter("seed_tasks_total", "Tasks a scheduler asked this seed peer to fetch.",
          metrics_.seed_tasks.load());
  const UploadMetrics& upload = upload_->metrics();
  counter("upload_bytes_total", "Piece bytes served to other peers.", upload.bytes_served.load());
  counter("upload_pieces_total", "Pieces served to other peers.", upload.pieces_served.load());
  counter("upload_rejected_busy_total", "Upload requests refused: over a concurrency limit.",
          upload.rejected_busy.load());
  counter("pieces_stored_total", "Pieces written to the piece store.",
          metrics_.pieces_stored.load());
  counter("tasks_started_total", "Tasks whose download started here.",
          metrics_.tasks_started.load());
  counter("served_bytes_total", "Body bytes sent to proxy clients.", metrics_.served_bytes.load());
  counter("task_hits_total", "Requests answered from complete tasks.", metrics_.task_hits.load());
  counter("p2p_requests_total", "Proxy requests served through the piece store.",
          metrics_.p2p_requests.load());
  counter("direct_requests_total", "Proxy requests relayed to the origin.",
          metrics_.direct_requests.load());
  counter("rejected_requests_total", "Proxy requests refused.", metrics_.rejected_requests.load());
  piece::PieceStoreStats stats = store_->Stats();
  StrAppend(&text, "# HELP naiad_peer_store_bytes Bytes of pieces held.\n",
            "# TYPE naiad_peer_store_bytes gauge\nnaiad_peer_store_bytes ", stats.bytes, "\n",
            "# HELP naiad_peer_store_tasks Tasks held.\n",
            "# TYPE naiad_peer_store_tasks gauge\nnaiad_peer_store_tasks ", stats.tasks, "\n");
  return text;
}

}  // namespace naiad::peer
