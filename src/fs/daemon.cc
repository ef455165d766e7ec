#include "fs/daemon.h"

#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/version.h"
#include "registry/registry_backend.h"
#include "storage/localfs_backend.h"

namespace naiad::fs {
namespace {

absl::StatusOr<std::unique_ptr<storage::BlobBackend>> CreateBackend(const FsConfig& config,
                                                                    const DaemonOptions& options) {
  if (config.backend.localfs.has_value()) {
    ASSIGN_OR_RETURN(auto backend, storage::LocalfsBackend::Create(*config.backend.localfs));
    return std::unique_ptr<storage::BlobBackend>(std::move(backend));
  }
  storage::RegistryBackendConfig registry = *config.backend.registry;
  if (!options.registry_host.empty()) registry.host = options.registry_host;
  if (!options.registry_repo.empty()) registry.repo = options.registry_repo;
  if (!options.registry_scheme.empty()) registry.scheme = options.registry_scheme;
  ASSIGN_OR_RETURN(auto backend, registry::RegistryBackend::Create(registry));
  return std::unique_ptr<storage::BlobBackend>(std::move(backend));
}

net::HttpHeaders ContentType(std::string_view type) {
  net::HttpHeaders headers;
  headers.Add("Content-Type", type).IgnoreError();
  return headers;
}

nlohmann::json SourceJson(const storage::SourceMetrics& source) {
  return {{"source", source.source}, {"requests", source.requests}, {"errors", source.errors},
          {"bytes", source.bytes},   {"bad_data", source.bad_data}, {"healthy", source.healthy}};
}

}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(DaemonOptions options) {
  std::unique_ptr<Daemon> daemon(new Daemon());
  daemon->options_ = std::move(options);
  const DaemonOptions& opts = daemon->options_;
  std::vector<std::string> warnings;
  ASSIGN_OR_RETURN(daemon->config_, LoadFsConfig(opts.config_path, &warnings));
  const FsConfig& config = daemon->config_;
  ASSIGN_OR_RETURN(daemon->boot_, rafs::Bootstrap::Open(opts.bootstrap));
  ASSIGN_OR_RETURN(daemon->backend_, CreateBackend(config, opts));
  const storage::CacheConfig& cache = config.device.cache;
  if (cache.enabled()) {
    ASSIGN_OR_RETURN(daemon->cache_, cache::BlobCache::Open({.work_dir = cache.config.work_dir,
                                                             .compressed = cache.compressed,
                                                             .max_size = cache.config.max_size}));
  }
  ASSIGN_OR_RETURN(daemon->store_,
                   ChunkStore::Create(*daemon->boot_, daemon->backend_.get(), daemon->cache_.get(),
                                      {.validate_cached = config.digest_validate || cache.validate,
                                       .cache_compressed = cache.compressed,
                                       .amplify_io = config.amplify_io}));
  ASSIGN_OR_RETURN(daemon->fuse_,
                   FuseFs::Mount(*daemon->boot_, daemon->store_.get(), &daemon->trace_,
                                 {.mountpoint = opts.mountpoint,
                                  .threads = opts.threads,
                                  .enable_xattr = config.enable_xattr}));
  daemon->state_ = "READY";
  if (!opts.apisock.empty()) RETURN_IF_ERROR(daemon->StartApi());
  daemon->prefetcher_ = std::make_unique<Prefetcher>(daemon->store_.get(), config.fs_prefetch);
  daemon->prefetcher_->Start();
  daemon->state_ = "RUNNING";
  return daemon;
}

absl::Status Daemon::StartApi() {
  net::HttpServerOptions options;
  options.threads = 4;
  options.unix_socket_path = options_.apisock;
  ASSIGN_OR_RETURN(api_, net::HttpServer::Start(options, ApiHandler(this)));
  return absl::OkStatus();
}

Daemon::~Daemon() {
  if (prefetcher_ != nullptr) prefetcher_->Stop();
  if (api_ != nullptr) api_->Shutdown(absl::Seconds(1));
}

absl::Status Daemon::Run() {
  absl::Status status = fuse_->Run();
  state_ = "STOPPED";
  if (prefetcher_ != nullptr) prefetcher_->Stop();
  return status;
}

void Daemon::Exit() {
  if (fuse_ != nullptr) fuse_->Exit();
}

nlohmann::json Daemon::DaemonInfo() const {
  return {
      {"version",
       {{"package_ver", std::string(Version())},
        {"git_commit", ""},
        {"build_time", ""},
        {"profile", "release"},
        {"rustc", ""}}},
      {"id", options_.id},
      {"supervisor", ""},
      {"state", state_.load()},
      {"mountpoint", options_.mountpoint},
      {"bootstrap", options_.bootstrap},
      {"backend_collection",
       {{"/", {{"backend_type", config_.device.backend.type}, {"blobs", boot_->blobs().size()}}}}}};
}

nlohmann::json Daemon::FsMetrics() const {
  const FuseMetrics& m = fuse_->metrics();
  nlohmann::json latency = nlohmann::json::array();
  for (size_t i = 0; i < kLatencyBucketsUs.size(); ++i) {
    latency.push_back(
        {{"le_us", i + 1 == kLatencyBucketsUs.size() ? nlohmann::json("inf")
                                                     : nlohmann::json(kLatencyBucketsUs[i])},
         {"count", m.read_latency[i].load()}});
  }
  return {{"data_read", m.read_bytes.load()},    {"nr_opens", m.opens.load()},
          {"nr_reads", m.reads.load()},          {"nr_lookups", m.lookups.load()},
          {"read_errors", m.read_errors.load()}, {"fop_errors", m.errors.load()},
          {"read_latency_dist", latency}};
}

nlohmann::json Daemon::BackendMetrics() const {
  nlohmann::json sources = nlohmann::json::array();
  uint64_t bytes = 0, requests = 0, errors = 0;
  for (const storage::SourceMetrics& source : backend_->Metrics()) {
    sources.push_back(SourceJson(source));
    bytes += source.bytes;
    requests += source.requests;
    errors += source.errors;
  }
  return {{"backend_type", config_.device.backend.type},
          {"read_count", requests},
          {"read_errors", errors},
          {"read_amount_total", bytes},
          {"sources", sources}};
}

nlohmann::json Daemon::CacheMetrics() const {
  const ChunkStoreMetrics& m = store_->metrics();
  nlohmann::json json = {{"memory_hits", m.memo_hits.load()},
                         {"cache_hits", m.cache_hits.load()},
                         {"cache_misses", m.cache_misses.load()},
                         {"fetched_chunks", m.fetched_chunks.load()},
                         {"fetched_bytes", m.fetched_bytes.load()},
                         {"backend_reads", m.backend_reads.load()},
                         {"prefetch_data_amount", m.prefetched_bytes.load()},
                         {"prefetch_chunks", m.prefetched_chunks.load()},
                         {"bad_fetches", m.bad_fetches.load()},
                         {"corrupt_cached", m.corrupt_cached.load()},
                         {"shared_waits", m.shared_waits.load()},
                         {"underlying_files", nlohmann::json::array()}};
  if (cache_ != nullptr) {
    cache::BlobCacheStats stats = cache_->Stats();
    json["stored_bytes"] = stats.bytes_stored;
    json["stored_chunks"] = stats.chunks_stored;
    json["evicted_chunks"] = stats.evicted_chunks;
    json["evicted_bytes"] = stats.evicted_bytes;
    for (const rafs::BlobInfo& blob : boot_->blobs()) {
      json["underlying_files"].push_back(StrCat(blob.id, ".blob.data"));
    }
  }
  return json;
}

nlohmann::json Daemon::PrefetchMetrics() const {
  PrefetchProgress p = prefetcher_ != nullptr ? prefetcher_->progress() : PrefetchProgress{};
  return {{"enabled", config_.fs_prefetch.enable}, {"finished", p.finished},
          {"listed_files", p.listed_files},        {"total_requests", p.total_requests},
          {"done_requests", p.done_requests},      {"failed_requests", p.failed_requests},
          {"total_bytes", p.total_bytes},          {"done_bytes", p.done_bytes}};
}

nlohmann::json Daemon::FileMetrics() const {
  nlohmann::json files = nlohmann::json::array();
  for (const FileAccess& file : trace_.Files()) {
    files.push_back({{"ino", file.nid},
                     {"path", file.path},
                     {"nr_open", file.opens},
                     {"nr_read", file.reads},
                     {"data_read", file.bytes_read}});
  }
  return files;
}

nlohmann::json Daemon::AccessPattern() const {
  nlohmann::json files = nlohmann::json::array();
  for (const FileAccess& file : trace_.Files()) {
    files.push_back(
        {{"ino", file.nid},
         {"path", file.path},
         {"nr_read", file.reads},
         {"first_access_time_secs", absl::ToInt64Seconds(file.first_access)},
         {"first_access_time_nanos", absl::ToInt64Nanoseconds(file.first_access) % 1000000000}});
  }
  return files;
}

net::HttpHandler ApiHandler(Daemon* daemon) {
  return [daemon](const net::ServerRequest& request, net::ResponseWriter& writer) {
    auto json = [&writer](const nlohmann::json& body) {
      writer.Respond(200, ContentType("application/json"), body.dump()).IgnoreError();
    };
    const std::string& path = request.path;
    if (request.method == "PUT" && path == "/api/v1/daemon/exit") {
      writer.Respond(204, {}, "").IgnoreError();
      daemon->Exit();
      return;
    }
    if (request.method != "GET") {
      writer.Respond(405, {}, "").IgnoreError();
      return;
    }
    if (path == "/api/v1/daemon" || path == "/api/v2/daemon") return json(daemon->DaemonInfo());
    if (path == "/api/v1/metrics") return json(daemon->FsMetrics());
    if (path == "/api/v1/metrics/backend") return json(daemon->BackendMetrics());
    if (path == "/api/v1/metrics/blobcache") return json(daemon->CacheMetrics());
    if (path == "/api/v1/metrics/prefetch") return json(daemon->PrefetchMetrics());
    if (path == "/api/v1/metrics/files") return json(daemon->FileMetrics());
    if (path == "/api/v1/metrics/pattern") return json(daemon->AccessPattern());
    if (path == "/api/v1/metrics/trace") {
      writer.Respond(200, ContentType("text/plain"), daemon->Trace()).IgnoreError();
      return;
    }
    writer
        .Respond(404, ContentType("application/json"),
                 nlohmann::json({{"code", "NotFound"}, {"message", "no such endpoint"}}).dump())
        .IgnoreError();
  };
}

}  // namespace naiad::fs
