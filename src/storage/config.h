// File: storage/config.h
//
// The storage part of the nydusd configuration ("device": backend and cache), as users write it
// today (../docs/design/fs.md lists every key). The seed's nydusd-config.json decodes unchanged:
//
//   {"device": {"backend": {"type": "registry", "config": {"mirrors": [...], "scheme": "https",
//                           "timeout": 10, "connect_timeout": 10, "retry_limit": 2}},
//               "cache": {"type": "blobcache", "config": {"work_dir": "/var/lib/nydus/cache/"}}},
//    ...}
//
// `backend.config` is kept raw until `backend.type` says which schema applies; DecodeBackend()
// then decodes it with errors under "device.backend.config".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/config.h"

namespace naiad::storage {

// A registry mirror (historical nydusd `mirrors[]`, kept by Naiad with run-time failover).
struct MirrorConfig {
  std::string host;  // URL with scheme: "http://127.0.0.1:65001"
  std::map<std::string, std::string> headers;
  // Whether registry credentials may be sent to this mirror. False: the mirror never sees an
  // Authorization header of ours.
  bool auth_through = false;
  std::string ping_url;  // default: <host>/v2
  absl::Duration health_check_interval = absl::Seconds(5);
  int failure_limit = 5;  // consecutive transport failures before the mirror is marked down
  absl::Duration health_check_pause_elapsed = absl::Seconds(300);

  template <typename V>
  void Fields(V& v) {
    v("host", host, Required());
    v("headers", headers);
    v("auth_through", auth_through);
    v("ping_url", ping_url);
    v("health_check_interval", health_check_interval, NumberAsSeconds(),
      Range(absl::Milliseconds(10), absl::Hours(24)));
    v("failure_limit", failure_limit, Range(1, 1000000));
    v("health_check_pause_elapsed", health_check_pause_elapsed, NumberAsSeconds());
  }
  absl::Status Validate() const;
};

// An HTTP forward proxy in front of the registry (current nydusd `proxy`).
struct ProxyConfig {
  std::string url;  // empty: no proxy
  std::string ping_url;
  bool fallback = true;  // go direct while the proxy is unhealthy
  absl::Duration check_interval = absl::Seconds(5);
  bool use_http = false;  // send https origins to the proxy as http://
  absl::Duration check_pause_elapsed = absl::Seconds(300);

  template <typename V>
  void Fields(V& v) {
    v("url", url);
    v("ping_url", ping_url);
    v("fallback", fallback);
    v("check_interval", check_interval, NumberAsSeconds(),
      Range(absl::Milliseconds(10), absl::Hours(24)));
    v("use_http", use_http);
    v("check_pause_elapsed", check_pause_elapsed, NumberAsSeconds());
  }
};

struct RegistryBackendConfig {
  std::string scheme = "https";  // "" means https, falling back to http on a TLS error
  std::string host;              // "host:port"; the snapshotter fills it in per image
  std::string repo;              // "library/python"
  std::string auth;              // base64("user:pass"); env IMAGE_PULL_AUTH overrides
  std::string registry_token;    // a static bearer token
  bool skip_verify = false;
  std::vector<std::string> ca_cert_files;
  absl::Duration timeout = absl::Seconds(5);
  absl::Duration connect_timeout = absl::Seconds(5);
  int retry_limit = 0;  // extra attempts after the first, per source
  std::string blob_url_scheme;
  std::string blob_redirected_host;
  std::vector<MirrorConfig> mirrors;
  ProxyConfig proxy;

  template <typename V>
  void Fields(V& v) {
    v("scheme", scheme, OneOf({"", "http", "https"}));
    v("host", host);
    v("repo", repo);
    v("auth", auth, Secret());
    v("registry_token", registry_token, Secret());
    v("skip_verify", skip_verify);
    v("ca_cert_files", ca_cert_files);
    v("timeout", timeout, NumberAsSeconds(), Range(absl::ZeroDuration(), absl::Hours(24)));
    v("connect_timeout", connect_timeout, NumberAsSeconds(),
      Range(absl::ZeroDuration(), absl::Hours(24)));
    v("retry_limit", retry_limit, Range(0, 100));
    v("blob_url_scheme", blob_url_scheme, OneOf({"", "http", "https"}));
    v("blob_redirected_host", blob_redirected_host);
    v("mirrors", mirrors);
    v("proxy", proxy);
  }
};

struct LocalfsBackendConfig {
  std::string dir;        // blobs named by their id
  std::string blob_file;  // or one explicit blob file
  std::vector<std::string> alt_dirs;
  bool readahead = false;  // accepted for compatibility; the kernel's readahead applies
  int readahead_sec = 0;

  template <typename V>
  void Fields(V& v) {
    v("dir", dir);
    v("blob_file", blob_file);
    v("alt_dirs", alt_dirs);
    v("readahead", readahead);
    v("readahead_sec", readahead_sec);
  }
  absl::Status Validate() const;
};

struct BackendConfig {
  std::string type;
  nlohmann::json config;  // decoded by DecodeBackend() once `type` is known

  template <typename V>
  void Fields(V& v) {
    v("type", type, Required(), OneOf({"registry", "localfs"}));
    v("config", config);
  }
};

struct BlobCacheConfig {
  std::string work_dir = ".";
  bool disable_indexed_map = false;  // accepted; Naiad always keeps the persistent chunk map
  // Naiad: cap on the bytes the cache keeps on disk (0 = unlimited); least recently used chunks
  // are evicted beyond it.
  uint64_t max_size = 0;

  template <typename V>
  void Fields(V& v) {
    v("work_dir", work_dir);
    v("disable_indexed_map", disable_indexed_map);
    v("max_size", max_size);
  }
};

struct CacheConfig {
  std::string type;         // "blobcache" (alias "filecache"), or "" / "dummycache": no cache
  bool compressed = false;  // keep chunks compressed, at their compressed offsets
  bool validate = false;    // verify chunk digests when reading from the cache
  BlobCacheConfig config;

  template <typename V>
  void Fields(V& v) {
    v("type", type, OneOf({"", "blobcache", "filecache", "dummycache"}));
    v("compressed", compressed);
    v("validate", validate);
    v("config", config);
  }
  bool enabled() const { return type == "blobcache" || type == "filecache"; }
};

struct DeviceConfig {
  std::string id;
  BackendConfig backend;
  CacheConfig cache;

  template <typename V>
  void Fields(V& v) {
    v("id", id);
    v("backend", backend, Required());
    v("cache", cache);
  }
};

// The decoded backend section: exactly one of the two is set.
struct DecodedBackend {
  std::optional<RegistryBackendConfig> registry;
  std::optional<LocalfsBackendConfig> localfs;
};

// Decodes device.backend.config according to device.backend.type.
absl::StatusOr<DecodedBackend> DecodeBackend(const BackendConfig& backend,
                                             const ConfigOptions& options = {});

}  // namespace naiad::storage
