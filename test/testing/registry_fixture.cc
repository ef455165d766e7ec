#include "test/testing/registry_fixture.h"

#include <sys/stat.h>

#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "net/http_client.h"
#include "test/testing/net_util.h"
#include "test/testing/test_env.h"

namespace naiad::testing {
namespace {

constexpr char kDirPrefix[] = "naiad-registry-";
constexpr int kStartAttempts = 5;

// An unexpected HTTP answer as a Status that carries the body (the registry's error JSON).
absl::Status UnexpectedResponse(const net::HttpResponse& response, std::string_view what) {
  absl::Status status = net::HttpStatusToStatus(response.status, what);
  if (status.ok()) status = absl::InternalError(StrCat(what, ": HTTP ", response.status));
  return Annotate(status, StrCat("body: ", response.body.substr(0, 500)));
}

absl::StatusOr<Digest> FileSha256(const std::string& path) {
  ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  return Digest::Of(DigestAlgorithm::kSha256, file.data());
}

}  // namespace

RegistryFixture::RegistryFixture(RegistryOptions options, TempDir dir)
    : options_(std::move(options)),
      dir_(std::move(dir)),
      client_(std::make_unique<net::HttpClient>(
          net::HttpClientOptions{.connect_timeout = absl::Seconds(5)})) {
  if (options_.launcher.empty() && !options_.netns_path.empty()) {
    options_.launcher = {"nsenter", StrCat("--net=", options_.netns_path), "--"};
  }
}

RegistryFixture::~RegistryFixture() { Stop().IgnoreError(); }

absl::StatusOr<std::unique_ptr<RegistryFixture>> RegistryFixture::Start(RegistryOptions options) {
  ASSIGN_OR_RETURN(TempDir dir, CreateOwnedTempDir(kDirPrefix));
  std::unique_ptr<RegistryFixture> registry(
      new RegistryFixture(std::move(options), std::move(dir)));
  absl::Status status;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    status = registry->StartOnce();
    // Another process may bind the port between ChoosePort() and the registry's listen().
    if (!absl::IsAlreadyExists(status) || registry->options_.port != 0) break;
    LogInfo("registry port taken, retrying", {{"port", registry->port_}});
  }
  if (!status.ok()) return Annotate(status, "starting docker-registry");
  return registry;
}

absl::StatusOr<uint16_t> RegistryFixture::ChoosePort() const {
  if (options_.port != 0) return options_.port;
  uint16_t port = 0;
  RETURN_IF_ERROR(RunInNetns(options_.netns_path, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(port, PickFreePort(options_.address));
    return absl::OkStatus();
  }));
  return port;
}

absl::Status RegistryFixture::WriteConfig() const {
  std::string config = StrCat(
      "version: 0.1\n"
      "log:\n"
      "  level: info\n"
      "  formatter: text\n"
      "  accesslog:\n"
      "    disabled: false\n"
      "storage:\n"
      "  filesystem:\n"
      "    rootdirectory: ",
      storage_dir(),
      "\n"
      "  delete:\n"
      "    enabled: true\n"
      "  maintenance:\n"
      "    uploadpurging:\n"
      "      enabled: false\n"
      "http:\n"
      "  addr: ",
      options_.address, ":", port_,
      "\n"
      "  secret: naiad-test-registry\n",
      options_.extra_config);
  return WriteFileAtomically(dir_.Join("config.yml"), config);
}

absl::Status RegistryFixture::StartOnce() {
  ASSIGN_OR_RETURN(port_, ChoosePort());
  RETURN_IF_ERROR(WriteConfig());
  RETURN_IF_ERROR(ResetCounters());
  std::vector<std::string> argv = options_.launcher;
  for (const char* arg : {"docker-registry", "serve"}) argv.push_back(arg);
  argv.push_back(dir_.Join("config.yml"));
  ASSIGN_OR_RETURN(Subprocess process, Subprocess::Start(argv, {.output_path = log_path()}));
  RETURN_IF_ERROR(WaitUntilReady(process));
  process_ = std::move(process);
  // The readiness probes are not traffic of the test.
  return ResetCounters();
}

absl::Status RegistryFixture::WaitUntilReady(Subprocess& process) {
  absl::Time deadline = absl::Now() + options_.startup_timeout;
  std::string probe_url = StrCat(url(), "/v2/");
  while (absl::Now() < deadline) {
    std::string log = ReadLogSinceReset().value_or("");
    if (!process.running()) {
      if (log.find("address already in use") != std::string::npos) {
        return absl::AlreadyExistsError(StrCat("port ", port_, " is in use"));
      }
      return absl::FailedPreconditionError(
          StrCat("docker-registry exited during startup; log tail:\n", LogTail()));
    }
    // Only after our process logged a successful listen() can the port be ours: before that, a
    // 200 may come from whoever else holds it.
    if (log.find("listening on ") == std::string::npos) {
      absl::SleepFor(absl::Milliseconds(20));
      continue;
    }
    int http_status = 0;
    RunInNetns(options_.netns_path, [&] {
      auto response =
          client_->Send({.url = probe_url, .headers = OwnHeaders(), .timeout = absl::Seconds(2)});
      if (response.ok()) http_status = response->status;
      // A registry with an access controller answers an unauthenticated probe with 401.
      if (http_status == 401 && !options_.extra_config.empty()) http_status = 200;
      return absl::OkStatus();
    }).IgnoreError();
    if (http_status == 200) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(50));
  }
  process.Stop().IgnoreError();
  return absl::DeadlineExceededError(StrCat("GET ", probe_url, " did not return 200 within ",
                                            absl::FormatDuration(options_.startup_timeout),
                                            "; log tail:\n", LogTail()));
}

absl::Status RegistryFixture::Stop() {
  if (!process_.running()) return absl::OkStatus();
  return process_.Stop(absl::Seconds(5)).status();
}

net::HttpHeaders RegistryFixture::OwnHeaders() const {
  net::HttpHeaders headers;
  if (!options_.authorization.empty()) {
    headers.Set("Authorization", options_.authorization).IgnoreError();
  }
  return headers;
}

std::string RegistryFixture::url() const { return StrCat("http://", host_port()); }

std::string RegistryFixture::host_port() const { return StrCat(options_.address, ":", port_); }

std::string RegistryFixture::BlobUrl(std::string_view repo, const Digest& digest) const {
  return StrCat(url(), "/v2/", repo, "/blobs/", digest.ToString());
}

std::string RegistryFixture::ManifestUrl(std::string_view repo, std::string_view reference) const {
  return StrCat(url(), "/v2/", repo, "/manifests/", reference);
}

std::string RegistryFixture::LogTail(size_t bytes) const {
  absl::StatusOr<std::string> log = ReadFileToString(log_path());
  if (!log.ok()) return StrCat("(no log: ", log.status().ToString(), ")");
  if (log->size() > bytes) return log->substr(log->size() - bytes);
  return *std::move(log);
}

absl::StatusOr<Digest> RegistryFixture::PushBlob(std::string_view repo, std::string_view data) {
  return Upload(repo, Digest::Of(DigestAlgorithm::kSha256, data), data, "");
}

absl::StatusOr<Digest> RegistryFixture::PushBlobFile(std::string_view repo,
                                                     const std::string& path) {
  ASSIGN_OR_RETURN(Digest digest, FileSha256(path));
  return Upload(repo, digest, "", path);
}

absl::StatusOr<Digest> RegistryFixture::Upload(std::string_view repo, const Digest& digest,
                                               std::string_view data, const std::string& file) {
  std::string start_url = StrCat(url(), "/v2/", repo, "/blobs/uploads/");
  absl::Status status = RunInNetns(options_.netns_path, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(net::HttpResponse started,
                     client_->Send({.method = "POST", .url = start_url, .headers = OwnHeaders()}));
    if (started.status != 202) return UnexpectedResponse(started, StrCat("POST ", start_url));
    std::optional<std::string> location = started.headers.Get("Location");
    if (!location) return absl::InternalError(StrCat("POST ", start_url, ": no Location"));
    // distribution answers with an absolute URL that already carries ?_state=...
    std::string put_url = location->starts_with("/") ? StrCat(url(), *location) : *location;
    StrAppend(&put_url, put_url.find('?') == std::string::npos ? "?" : "&",
              "digest=", digest.ToString());
    net::HttpRequest put{.method = "PUT",
                         .url = put_url,
                         .headers = OwnHeaders(),
                         .body = std::string(data),
                         .body_file = file};
    RETURN_IF_ERROR(put.headers.Set("Content-Type", "application/octet-stream"));
    ASSIGN_OR_RETURN(net::HttpResponse done, client_->Send(put));
    if (done.status != 201) return UnexpectedResponse(done, StrCat("PUT blob ", digest.ToString()));
    return absl::OkStatus();
  });
  RETURN_IF_ERROR(status);
  return digest;
}

absl::StatusOr<Digest> RegistryFixture::PushManifest(std::string_view repo,
                                                     std::string_view reference,
                                                     std::string_view json,
                                                     std::string_view media_type) {
  Digest digest = Digest::Of(DigestAlgorithm::kSha256, json);
  std::string manifest_url = ManifestUrl(repo, reference);
  RETURN_IF_ERROR(RunInNetns(options_.netns_path, [&]() -> absl::Status {
    net::HttpRequest put{
        .method = "PUT", .url = manifest_url, .headers = OwnHeaders(), .body = std::string(json)};
    RETURN_IF_ERROR(put.headers.Set("Content-Type", media_type));
    ASSIGN_OR_RETURN(net::HttpResponse response, client_->Send(put));
    if (response.status != 201) return UnexpectedResponse(response, StrCat("PUT ", manifest_url));
    std::optional<std::string> reported = response.headers.Get("Docker-Content-Digest");
    if (reported && *reported != digest.ToString()) {
      return absl::DataLossError(StrCat("PUT ", manifest_url, ": registry says ", *reported,
                                        ", we computed ", digest.ToString()));
    }
    return absl::OkStatus();
  }));
  return digest;
}

absl::Status RegistryFixture::PushOciLayout(const std::string& layout_dir, std::string_view tag,
                                            std::string_view repo_and_tag) {
  std::vector<std::string> argv = options_.launcher;
  for (std::string arg :
       {std::string("skopeo"), std::string("copy"), std::string("--dest-tls-verify=false"),
        StrCat("oci:", layout_dir, ":", tag),
        StrCat("docker://", host_port(), "/", repo_and_tag)}) {
    argv.push_back(std::move(arg));
  }
  return RunCommandOk(argv, {.timeout = absl::Minutes(15)}).status();
}

absl::Status RegistryFixture::ResetCounters() {
  struct stat st;
  if (::stat(log_path().c_str(), &st) != 0) {
    log_offset_ = 0;
    return errno == ENOENT ? absl::OkStatus() : ErrnoError(errno, StrCat("stat ", log_path()));
  }
  log_offset_ = static_cast<uint64_t>(st.st_size);
  return absl::OkStatus();
}

absl::StatusOr<std::string> RegistryFixture::ReadLogSinceReset() const {
  ASSIGN_OR_RETURN(std::string log, ReadFileToString(log_path()));
  uint64_t offset = log_offset_.load();
  return offset >= log.size() ? std::string() : log.substr(offset);
}

absl::StatusOr<std::vector<AccessLogEntry>> RegistryFixture::Requests() const {
  ASSIGN_OR_RETURN(std::string log, ReadLogSinceReset());
  return ParseAccessLog(log);
}

absl::StatusOr<uint64_t> RegistryFixture::BytesServed(Traffic traffic) const {
  ASSIGN_OR_RETURN(std::vector<AccessLogEntry> entries, Requests());
  uint64_t total = 0;
  for (const AccessLogEntry& e : entries) {
    if (traffic == Traffic::kAll || e.IsBlobGet()) total += e.bytes;
  }
  return total;
}

absl::StatusOr<uint64_t> RegistryFixture::RequestCount(Traffic traffic) const {
  ASSIGN_OR_RETURN(std::vector<AccessLogEntry> entries, Requests());
  uint64_t count = 0;
  for (const AccessLogEntry& e : entries) {
    if (traffic == Traffic::kAll || e.IsBlobGet()) ++count;
  }
  return count;
}

}  // namespace naiad::testing
