// File: registry/registry_backend.h
//
// The registry blob backend of `naiad fs`: ranged reads of
// `{scheme}://{host}/v2/{repo}/blobs/sha256:{id}` through mirrors, an HTTP forward proxy or the
// origin registry, as nydusd's "registry" backend does (reference: nydus.md §3.3-3.4).
//
//   ASSIGN_OR_RETURN(auto backend, RegistryBackend::Create(config));
//   ASSIGN_OR_RETURN(uint64_t size, backend->BlobSize(blob_id));          // HEAD
//   storage::BlobRead read;
//   RETURN_IF_ERROR(backend->Read({.blob_id = blob_id, .offset = 0, .length = 4096}, &read));
//
// Source order for every request: the healthy mirrors in config order, then the proxy (if
// configured and healthy; with fallback=false an unhealthy proxy is an error), then the origin.
// Each source gets 1 + retry_limit attempts (prefetch: at most 2) with jittered exponential
// backoff, for transport errors, 5xx and 429; a 4xx is final for that source. Mirrors count
// consecutive failures (transport errors, 5xx, bad data) and are skipped once `failure_limit` is
// reached until their ping URL answers < 500 again (registry/mirror_set.h). Mirrors only see our
// Authorization header with auth_through; token requests always go straight to the realm.
//
// Redirects (3xx + Location) are followed by hand, rewritten by blob_url_scheme /
// blob_redirected_host, and cached per source and blob; the redirect target never gets the
// registry's Authorization header. A 401/403 from a cached target drops it and goes through the
// registry once more.
//
// Errors: NotFound (404) names the blob and repo; PermissionDenied when the registry still refuses
// after authenticating; Unauthenticated when it wants credentials we do not have; DataLoss when a
// response does not hold exactly the range asked for; Unavailable / DeadlineExceeded when every
// source failed at the transport level (the last error is kept); Cancelled via BlobRange::cancel.
//
// Thread safety: BlobSize(), Read(), ReportBadData() and Metrics() may be called concurrently.
// The destructor stops the health-check thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/env.h"
#include "net/http_client.h"
#include "registry/mirror_set.h"
#include "registry/registry_auth.h"
#include "storage/backend.h"
#include "storage/config.h"

namespace naiad::registry {

struct RegistryBackendOptions {
  // Token expiry and retry backoff sleeps; null means Clock::Real().
  Clock* clock = nullptr;
  // Multiplies every retry backoff (tests use a small value to run fast; 0 disables sleeping).
  double backoff_scale = 1.0;
  // Overrides the environment's IMAGE_PULL_AUTH (tests); nullopt reads the environment.
  std::optional<std::string> image_pull_auth;
};

class RegistryBackend : public storage::BlobBackend {
 public:
  // InvalidArgument naming "device.backend.config.host" / ".repo" when they are empty, or a
  // mirror/proxy URL that is not http(s)://.
  static absl::StatusOr<std::unique_ptr<RegistryBackend>> Create(
      const storage::RegistryBackendConfig& config, RegistryBackendOptions options = {});
  ~RegistryBackend() override;

  absl::StatusOr<uint64_t> BlobSize(const std::string& blob_id) override;
  absl::Status Read(const storage::BlobRange& range, storage::BlobRead* out) override;
  void ReportBadData(const std::string& source) override;
  std::vector<storage::SourceMetrics> Metrics() const override;

  // The blob URL at the origin, for messages and tests.
  std::string BlobUrl(const std::string& blob_id) const;
  // Token requests made so far (tests).
  uint64_t token_requests() const { return auth_->token_requests(); }

 private:
  struct Source;
  struct Request;

  RegistryBackend(storage::RegistryBackendConfig config, RegistryBackendOptions options);
  absl::Status Init();

  // Runs `request` against the sources in order (see the file comment).
  absl::Status Run(Request& request);
  // All attempts at one source.
  absl::Status TryWithRetries(Source& source, Request& request);
  // One attempt at one source: auth round trips and a redirect included.
  absl::Status TryOnce(Source& source, Request& request);
  absl::StatusOr<net::HttpResponse> SendCounted(Source& source, net::HttpRequest& http,
                                                Request& request, bool* body_done);
  absl::Status CheckResponse(net::HttpResponse& response, const std::string& url, Request& request,
                             bool body_done);
  std::string SourceUrl(const Source& source, const std::string& blob_id) const;
  std::string OriginScheme() const;
  std::optional<std::string> CachedRedirect(const Source& source, const std::string& blob_id);
  void CacheRedirect(const Source& source, const std::string& blob_id, const std::string& url);
  void DropRedirect(const Source& source, const std::string& blob_id);
  std::string RewriteLocation(const std::string& base_url, const std::string& location) const;
  Source* FindSource(const std::string& name);
  absl::Duration Backoff(int attempt) const;
  void SleepCancellable(absl::Duration d, const net::CancellationToken* cancel);

  const storage::RegistryBackendConfig config_;
  const RegistryBackendOptions options_;
  Clock* const clock_;
  std::unique_ptr<net::HttpClient> direct_client_;
  std::unique_ptr<net::HttpClient> proxy_client_;  // null without a proxy
  std::unique_ptr<RegistryAuth> auth_;
  // origin first, then mirrors in config order, then the proxy.
  std::vector<std::unique_ptr<Source>> sources_;
  std::unique_ptr<MirrorSet> health_;  // indices: mirrors 0..n-1, then the proxy
  // scheme "": set once https failed and http worked (skip_verify only).
  std::atomic<bool> origin_http_fallback_{false};

  absl::Mutex redirect_mu_;
  std::map<std::string, std::string> redirects_ ABSL_GUARDED_BY(redirect_mu_);
};

}  // namespace naiad::registry
