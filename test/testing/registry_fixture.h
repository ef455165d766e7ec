// File: test/testing/registry_fixture.h
//
// A real OCI registry (docker-registry 2.8, "distribution") for tests: started on a free port
// with its storage in a temporary directory, and stopped and removed when the fixture is
// destroyed. Deletes are enabled.
//
//   ASSERT_OK_AND_ASSIGN(auto registry, RegistryFixture::Start());
//   ASSERT_OK_AND_ASSIGN(Digest blob, registry->PushBlob("library/app", data));
//   ASSERT_OK_AND_ASSIGN(Digest manifest, registry->PushManifest("library/app", "v1", json,
//                                            "application/vnd.oci.image.manifest.v1+json"));
//   ASSERT_OK(registry->ResetCounters());
//   ... let the code under test pull from registry->url() ...
//   EXPECT_THAT(registry->BytesServed(RegistryFixture::Traffic::kBlobGets),
//               IsOkAndHolds(Le(data.size())));
//
// Inside a network namespace: set `netns_path` (e.g. NetnsCluster::NetnsPath(i)) and `address`
// (that host's address). The registry is then started through `nsenter --net=<path>` (or through
// any `launcher` prefix given) and the fixture's own HTTP calls and skopeo run inside the
// namespace too.
//
// Counting: BytesServed() and RequestCount() parse the registry's access log (see
// registry_access_log.h), counting from the last ResetCounters(). Counts are exact once the
// client has read the responses completely.
//
// Stale state: the registry is a child with PR_SET_PDEATHSIG, so it dies with the test; storage
// directories ("$TMPDIR/naiad-registry-*") of dead test processes are removed by the next Start().
//
// Thread-safe after Start(). Start it from a thread that outlives the fixture (the test's main
// thread): the registry is killed when the thread that started it exits.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/subprocess.h"
#include "net/http_types.h"
#include "test/testing/registry_access_log.h"

namespace naiad::net {
class HttpClient;
}

namespace naiad::testing {

struct RegistryOptions {
  // The address to listen on; a host's address when running inside a namespace.
  std::string address = "127.0.0.1";
  // 0 picks a free port (and retries if another process takes it first).
  uint16_t port = 0;
  // Run inside this network namespace (the registry, the fixture's HTTP calls and skopeo).
  std::string netns_path;
  // A prefix for the registry's command line; defaults to `nsenter --net=<netns_path>` when
  // netns_path is set.
  std::vector<std::string> launcher;
  absl::Duration startup_timeout = absl::Seconds(30);
  // YAML appended to the registry's config.yml at top level, e.g. an access controller:
  // "auth:\n  htpasswd:\n    realm: naiad\n    path: /tmp/x/htpasswd\n". With one, the readiness
  // probe also accepts 401.
  std::string extra_config;
  // An Authorization header value sent with the fixture's own requests (readiness probe, pushes),
  // for registries started with an `auth:` section: "Basic dXNlcjpwYXNz" or "Bearer <jwt>".
  std::string authorization;
};

class RegistryFixture {
 public:
  static absl::StatusOr<std::unique_ptr<RegistryFixture>> Start(RegistryOptions options = {});
  ~RegistryFixture();
  RegistryFixture(const RegistryFixture&) = delete;
  RegistryFixture& operator=(const RegistryFixture&) = delete;

  // "http://<address>:<port>"
  std::string url() const;
  // "<address>:<port>", as image references and skopeo want it.
  std::string host_port() const;
  uint16_t port() const { return port_; }
  std::string storage_dir() const { return dir_.Join("storage"); }
  std::string log_path() const { return dir_.Join("registry.log"); }
  // The last `bytes` of the registry's log, for error messages.
  std::string LogTail(size_t bytes = 4000) const;

  // "<url>/v2/<repo>/blobs/<digest>"
  std::string BlobUrl(std::string_view repo, const Digest& digest) const;
  // "<url>/v2/<repo>/manifests/<reference>"
  std::string ManifestUrl(std::string_view repo, std::string_view reference) const;

  // Monolithic upload (POST, then PUT to the returned Location with ?digest=). Returns the
  // sha256 digest.
  absl::StatusOr<Digest> PushBlob(std::string_view repo, std::string_view data);
  // Same, streaming the body from a file.
  absl::StatusOr<Digest> PushBlobFile(std::string_view repo, const std::string& path);
  // PUTs a manifest under a tag or digest reference; returns its digest (checked against what
  // the registry reports).
  absl::StatusOr<Digest> PushManifest(std::string_view repo, std::string_view reference,
                                      std::string_view json, std::string_view media_type);
  // skopeo copy oci:<layout_dir>:<tag> docker://<host:port>/<repo_and_tag>.
  absl::Status PushOciLayout(const std::string& layout_dir, std::string_view tag,
                             std::string_view repo_and_tag);

  enum class Traffic { kAll, kBlobGets };
  // Response body bytes the registry sent since the last ResetCounters().
  absl::StatusOr<uint64_t> BytesServed(Traffic traffic = Traffic::kAll) const;
  // Requests answered since the last ResetCounters().
  absl::StatusOr<uint64_t> RequestCount(Traffic traffic = Traffic::kAll) const;
  // The requests themselves.
  absl::StatusOr<std::vector<AccessLogEntry>> Requests() const;
  // Starts counting from now.
  absl::Status ResetCounters();

  // Stops the registry (SIGTERM, then SIGKILL). The destructor calls it.
  absl::Status Stop();

 private:
  RegistryFixture(RegistryOptions options, TempDir dir);

  absl::Status StartOnce();
  absl::Status WaitUntilReady(Subprocess& process);
  absl::Status WriteConfig() const;
  absl::StatusOr<uint16_t> ChoosePort() const;
  absl::StatusOr<std::string> ReadLogSinceReset() const;
  // The fixture's own request headers (see RegistryOptions::authorization).
  net::HttpHeaders OwnHeaders() const;
  absl::StatusOr<Digest> Upload(std::string_view repo, const Digest& digest, std::string_view data,
                                const std::string& file);

  RegistryOptions options_;
  TempDir dir_;
  uint16_t port_ = 0;
  std::atomic<uint64_t> log_offset_{0};
  Subprocess process_;
  std::unique_ptr<net::HttpClient> client_;
};

}  // namespace naiad::testing
