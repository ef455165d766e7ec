// File: fs/daemon.h
//
// `naiad fs` assembled: config → bootstrap → backend (localfs or registry) → blob cache →
// ChunkStore → FUSE mount → API socket → prefetch. The FUSE mount is up before prefetch starts,
// so the image is usable at once.
//
//   ASSIGN_OR_RETURN(auto daemon, Daemon::Start({.config_path = "nydusd-config.json",
//                                                 .bootstrap = "image.boot",
//                                                 .mountpoint = "/mnt/img"}));
//   RETURN_IF_ERROR(daemon->Run());   // until SIGTERM / Exit() / PUT /api/v1/daemon/exit
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/blob_cache.h"
#include "fs/access_trace.h"
#include "fs/chunk_store.h"
#include "fs/config.h"
#include "fs/fuse_fs.h"
#include "fs/prefetcher.h"
#include "net/http_server.h"
#include "nlohmann/json.hpp"
#include "rafs/bootstrap.h"
#include "storage/backend.h"

namespace naiad::fs {

struct DaemonOptions {
  std::string config_path;
  std::string bootstrap;
  std::string mountpoint;
  std::string apisock;  // empty: no API
  std::string id;
  int threads = 4;
  // Naiad: fill in the registry backend's host/repo when the config leaves them out (the
  // snapshotter does this per image; a user running the seed's config by hand needs it too).
  std::string registry_host;
  std::string registry_repo;
  std::string registry_scheme;
};

class Daemon {
 public:
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(DaemonOptions options);
  ~Daemon();

  // Serves FUSE until Exit(), SIGTERM (handled by the command) or an external unmount.
  absl::Status Run();
  void Exit();

  // The API's documents.
  nlohmann::json DaemonInfo() const;
  nlohmann::json FsMetrics() const;
  nlohmann::json BackendMetrics() const;
  nlohmann::json CacheMetrics() const;
  nlohmann::json PrefetchMetrics() const;
  nlohmann::json FileMetrics() const;
  nlohmann::json AccessPattern() const;
  std::string Trace() const { return trace_.TraceText(); }

 private:
  Daemon() = default;
  absl::Status StartApi();

  DaemonOptions options_;
  FsConfig config_;
  std::unique_ptr<rafs::Bootstrap> boot_;
  std::unique_ptr<storage::BlobBackend> backend_;
  std::unique_ptr<cache::BlobCache> cache_;
  std::unique_ptr<ChunkStore> store_;
  AccessTrace trace_;
  std::unique_ptr<FuseFs> fuse_;
  std::unique_ptr<Prefetcher> prefetcher_;
  std::unique_ptr<net::HttpServer> api_;
  std::atomic<const char*> state_{"INIT"};
};

// The API's request handler (GET /api/v1/daemon, /api/v1/metrics[/backend|/blobcache|/files|
// /pattern|/prefetch|/trace], PUT /api/v1/daemon/exit); see docs/design/fs.md.
net::HttpHandler ApiHandler(Daemon* daemon);

}  // namespace naiad::fs
