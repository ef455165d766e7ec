#include "peer/peer.h"

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

}  // namespace

absl::StatusOr<std::unique_ptr<Peer>> Peer::Start(const PeerConfig& config) {
  RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<Peer> peer(new Peer());
  peer->config_ = config;
  ASSIGN_OR_RETURN(peer->store_,
                   piece::PieceStore::Open({.dir = config.data_dir,
                                            .task_ttl = config.storage.task_expire_time,
                                            .quota_bytes = config.storage.disk_gc_threshold}));
  peer->downloads_ =
      std::make_unique<Downloads>(peer->store_.get(), config.download, &peer->metrics_);
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
  peer->gc_thread_ = std::thread([self] { self->CollectGarbageLoop(); });
  LogInfo("peer started", {{"proxy_port", peer->proxy_port()},
                           {"health_port", peer->health_port()},
                           {"data_dir", config.data_dir}});
  return peer;
}

Peer::~Peer() {
  Stop();
  if (gc_thread_.joinable()) gc_thread_.join();
  if (proxy_server_ != nullptr) proxy_server_->Shutdown(absl::Seconds(2));
  if (health_server_ != nullptr) health_server_->Shutdown(absl::Seconds(1));
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
