#include "registry/registry_backend.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <random>
#include <utility>

#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::registry {
namespace {

constexpr absl::Duration kBackoffBase = absl::Milliseconds(100);
constexpr absl::Duration kBackoffCap = absl::Seconds(2);
constexpr absl::Duration kDefaultLowSpeedTime = absl::Seconds(30);
constexpr size_t kErrorBodyLimit = 4096;

std::string TrimTrailingSlashes(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

// "https://a.b:5000/x/y?z" -> {"https", "a.b:5000", "/x/y?z"}.
struct UrlParts {
  std::string scheme;
  std::string authority;
  std::string rest;
};
UrlParts SplitUrl(std::string_view url) {
  UrlParts parts;
  size_t sep = url.find("://");
  if (sep == std::string_view::npos) {
    parts.rest = std::string(url);
    return parts;
  }
  parts.scheme = std::string(url.substr(0, sep));
  size_t start = sep + 3;
  size_t end = url.find_first_of("/?#", start);
  parts.authority = std::string(url.substr(start, end == url.npos ? url.npos : end - start));
  if (end != url.npos) parts.rest = std::string(url.substr(end));
  return parts;
}

std::optional<uint64_t> ParseUint(std::string_view s) {
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// Failures that say something about the source's health (as opposed to "not found" or "not
// allowed", which are answers).
bool IsSourceFailure(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
         absl::IsDataLoss(status) || absl::IsUnknown(status);
}

bool IsRetryableFailure(const absl::Status& status) {
  return net::IsRetryable(status) || absl::IsDataLoss(status) || absl::IsUnknown(status);
}

// The body of one response: for a successful ranged GET exactly the range (a 200 answer is
// sliced), otherwise the first bytes of the body for error messages.
struct BodyCollector {
  std::optional<net::ByteRange> range;
  bool is_get = true;
  int status = 0;
  bool sliced = false;    // a 200 answer to a ranged request
  uint64_t position = 0;  // body bytes seen
  bool complete = false;  // a sliced answer delivered the whole range; the rest was dropped
  std::string data;
  std::atomic<uint64_t>* bytes_counter = nullptr;

  absl::Status OnHeaders(const net::HttpResponse& response) {
    status = response.status;
    sliced = range.has_value() && status == 200;
    return absl::OkStatus();
  }

  absl::Status OnBody(std::string_view piece) {
    bytes_counter->fetch_add(piece.size(), std::memory_order_relaxed);
    uint64_t start = position;
    position += piece.size();
    if (status < 200 || status >= 300 || !is_get) {
      if (data.size() < kErrorBodyLimit) {
        data.append(piece.substr(0, kErrorBodyLimit - data.size()));
      }
      return absl::OkStatus();
    }
    if (!range) {
      data.append(piece);
      return absl::OkStatus();
    }
    if (!sliced) {
      if (data.size() + piece.size() > range->length) {
        return absl::DataLossError(
            StrCat("server sent more than the ", range->length, " bytes of the requested range"));
      }
      data.append(piece);
      return absl::OkStatus();
    }
    // 200 to a ranged request: keep [offset, end) of the whole body.
    uint64_t lo = std::max(start, range->offset);
    uint64_t hi = std::min(position, range->end());
    if (lo < hi) data.append(piece.substr(lo - start, hi - lo));
    if (data.size() == range->length) {
      complete = true;
      return absl::CancelledError("range complete");  // stops the transfer; not an error
    }
    return absl::OkStatus();
  }
};

}  // namespace

struct RegistryBackend::Source {
  enum class Kind { kOrigin, kMirror, kProxy };
  Kind kind = Kind::kOrigin;
  std::string name;
  const storage::MirrorConfig* mirror = nullptr;
  std::string base;  // mirror: scheme://authority[/prefix] without a trailing slash
  int health_index = -1;
  net::HttpClient* client = nullptr;
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> bad_data{0};
};

struct RegistryBackend::Request {
  std::string method;
  std::string blob_id;
  std::optional<net::ByteRange> range;
  storage::ReadPriority priority = storage::ReadPriority::kOnDemand;
  const std::vector<std::string>* exclude = nullptr;
  const net::CancellationToken* cancel = nullptr;
  // Results.
  std::string data;
  uint64_t size = 0;
  std::string served_by;
};

RegistryBackend::RegistryBackend(storage::RegistryBackendConfig config,
                                 RegistryBackendOptions options)
    : config_(std::move(config)),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : Clock::Real()) {}

RegistryBackend::~RegistryBackend() {
  health_.reset();  // joins the checker thread before the clients it uses go away
}

absl::StatusOr<std::unique_ptr<RegistryBackend>> RegistryBackend::Create(
    const storage::RegistryBackendConfig& config, RegistryBackendOptions options) {
  if (config.host.empty()) {
    return absl::InvalidArgumentError(
        "device.backend.config.host: required for the registry backend");
  }
  if (config.repo.empty()) {
    return absl::InvalidArgumentError(
        "device.backend.config.repo: required for the registry backend");
  }
  for (size_t i = 0; i < config.mirrors.size(); ++i) {
    const std::string& host = config.mirrors[i].host;
    if (!host.starts_with("http://") && !host.starts_with("https://")) {
      return absl::InvalidArgumentError(StrCat("device.backend.config.mirrors[", i, "].host: \"",
                                               host, "\" must start with http:// or https://"));
    }
  }
  const std::string& proxy = config.proxy.url;
  if (!proxy.empty() && !proxy.starts_with("http://") && !proxy.starts_with("https://")) {
    return absl::InvalidArgumentError(StrCat("device.backend.config.proxy.url: \"", proxy,
                                             "\" must start with http:// or https://"));
  }
  std::unique_ptr<RegistryBackend> backend(new RegistryBackend(config, std::move(options)));
  RETURN_IF_ERROR(backend->Init());
  return backend;
}

absl::Status RegistryBackend::Init() {
  net::HttpClientOptions client_options{
      .connect_timeout = config_.connect_timeout,
      .timeout = config_.timeout,
      // A stalled server fails after this long without a byte, also when timeout is 0.
      .low_speed_time = config_.timeout > absl::ZeroDuration()
                            ? std::max(absl::Seconds(1), config_.timeout)
                            : kDefaultLowSpeedTime,
      .low_speed_bytes_per_second = 1,
      .verify_tls = !config_.skip_verify,
      .ca_files = config_.ca_cert_files,
  };
  direct_client_ = std::make_unique<net::HttpClient>(client_options);
  if (!config_.proxy.url.empty()) {
    client_options.proxy = config_.proxy.url;
    proxy_client_ = std::make_unique<net::HttpClient>(client_options);
  }

  std::string auth = config_.auth;
  if (options_.image_pull_auth) {
    if (!options_.image_pull_auth->empty()) auth = *options_.image_pull_auth;
  } else if (const char* env = std::getenv("IMAGE_PULL_AUTH"); env != nullptr && *env != '\0') {
    auth = env;
  }
  net::HttpClient* token_client = direct_client_.get();
  auth_ = std::make_unique<RegistryAuth>(
      RegistryAuthOptions{.auth = auth,
                          .registry_token = config_.registry_token,
                          .clock = clock_,
                          .request_timeout = config_.timeout > absl::ZeroDuration()
                                                 ? config_.timeout
                                                 : absl::Seconds(30)},
      [token_client](const net::HttpRequest& request) { return token_client->Send(request); });

  std::vector<HealthCheckedSource> checked;
  auto origin = std::make_unique<Source>();
  origin->kind = Source::Kind::kOrigin;
  origin->name = "origin";
  origin->client = direct_client_.get();
  sources_.push_back(std::move(origin));
  for (const storage::MirrorConfig& mirror : config_.mirrors) {
    auto source = std::make_unique<Source>();
    source->kind = Source::Kind::kMirror;
    source->mirror = &mirror;
    source->base = TrimTrailingSlashes(mirror.host);
    source->name = StrCat("mirror:", source->base);
    source->client = direct_client_.get();
    source->health_index = static_cast<int>(checked.size());
    checked.push_back(
        {.name = source->name,
         .ping_url = mirror.ping_url.empty() ? StrCat(source->base, "/v2") : mirror.ping_url,
         .interval = mirror.health_check_interval,
         .failure_limit = mirror.failure_limit,
         .pause_after_idle = mirror.health_check_pause_elapsed});
    sources_.push_back(std::move(source));
  }
  if (proxy_client_) {
    auto source = std::make_unique<Source>();
    source->kind = Source::Kind::kProxy;
    source->name = "proxy";
    source->client = proxy_client_.get();
    source->health_index = static_cast<int>(checked.size());
    // Like nydusd: only the health checker decides whether the proxy is up; failed requests fall
    // back to the origin (with fallback) without changing that view.
    checked.push_back({.name = "proxy",
                       .ping_url = config_.proxy.ping_url,
                       .interval = config_.proxy.check_interval,
                       .failure_limit = INT_MAX,
                       .pause_after_idle = config_.proxy.check_pause_elapsed,
                       .ping_when_healthy = true});
    sources_.push_back(std::move(source));
  }
  health_ = std::make_unique<MirrorSet>(std::move(checked), direct_client_.get());
  return absl::OkStatus();
}

std::string RegistryBackend::OriginScheme() const {
  if (!config_.scheme.empty()) return config_.scheme;
  return origin_http_fallback_.load() ? "http" : "https";
}

std::string RegistryBackend::BlobUrl(const std::string& blob_id) const {
  return StrCat(OriginScheme(), "://", config_.host, "/v2/", config_.repo,
                "/blobs/sha256:", blob_id);
}

std::string RegistryBackend::SourceUrl(const Source& source, const std::string& blob_id) const {
  switch (source.kind) {
    case Source::Kind::kMirror:
      return StrCat(source.base, "/v2/", config_.repo, "/blobs/sha256:", blob_id);
    case Source::Kind::kProxy: {
      std::string url = BlobUrl(blob_id);
      if (config_.proxy.use_http && url.starts_with("https://")) url.erase(4, 1);
      return url;
    }
    case Source::Kind::kOrigin:
      break;
  }
  return BlobUrl(blob_id);
}

absl::StatusOr<uint64_t> RegistryBackend::BlobSize(const std::string& blob_id) {
  Request request{.method = "HEAD", .blob_id = blob_id};
  RETURN_IF_ERROR(Run(request));
  return request.size;
}

absl::Status RegistryBackend::Read(const storage::BlobRange& range, storage::BlobRead* out) {
  if (range.length == 0) {
    out->data.clear();
    out->source = "origin";
    return absl::OkStatus();
  }
  Request request{.method = "GET",
                  .blob_id = range.blob_id,
                  .range = net::ByteRange{range.offset, range.length},
                  .priority = range.priority,
                  .exclude = &range.exclude_sources,
                  .cancel = range.cancel};
  RETURN_IF_ERROR(Run(request));
  out->data = std::move(request.data);
  out->source = std::move(request.served_by);
  return absl::OkStatus();
}

absl::Status RegistryBackend::Run(Request& request) {
  auto excluded = [&](const std::string& name) {
    return request.exclude != nullptr && std::find(request.exclude->begin(), request.exclude->end(),
                                                   name) != request.exclude->end();
  };
  absl::Status last_error;
  for (auto& source : sources_) {
    if (source->kind != Source::Kind::kMirror || excluded(source->name)) continue;
    if (!health_->UseIfHealthy(source->health_index)) continue;
    absl::Status status = TryWithRetries(*source, request);
    if (status.ok() || absl::IsCancelled(status)) return status;
    LogDebug("registry mirror failed, trying the next source",
             {{"mirror", source->name}, {"error", status.ToString()}});
    last_error = status;
  }
  if (proxy_client_) {
    Source& proxy = *sources_.back();
    if (excluded(proxy.name)) {
      if (!config_.proxy.fallback) {
        return absl::UnavailableError(StrCat("no source left for blob sha256:", request.blob_id,
                                             ": the proxy ", config_.proxy.url,
                                             " is excluded and fallback is off"));
      }
    } else if (!health_->UseIfHealthy(proxy.health_index)) {
      if (!config_.proxy.fallback) {
        return absl::UnavailableError(StrCat("proxy ", config_.proxy.url,
                                             " is unhealthy and proxy.fallback is false; not "
                                             "reading blob sha256:",
                                             request.blob_id));
      }
    } else {
      absl::Status status = TryWithRetries(proxy, request);
      if (status.ok() || absl::IsCancelled(status)) return status;
      if (!config_.proxy.fallback) {
        return Annotate(status, StrCat("via proxy ", config_.proxy.url));
      }
      LogDebug("registry proxy failed, going direct", {{"error", status.ToString()}});
      last_error = status;
    }
  }
  if (!excluded("origin")) return TryWithRetries(*sources_.front(), request);
  if (last_error.ok()) {
    return absl::UnavailableError(StrCat("no usable source for blob sha256:", request.blob_id,
                                         " (all excluded or unhealthy)"));
  }
  return last_error;
}

absl::Duration RegistryBackend::Backoff(int attempt) const {
  absl::Duration d = std::min(kBackoffCap, kBackoffBase * (1 << std::min(attempt, 10)));
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return d * jitter(rng) * options_.backoff_scale;
}

void RegistryBackend::SleepCancellable(absl::Duration d, const net::CancellationToken* cancel) {
  if (d <= absl::ZeroDuration()) return;
  if (options_.clock != nullptr) {
    clock_->SleepFor(d);
    return;
  }
  absl::Time until = absl::Now() + d;
  while (absl::Now() < until) {
    if (cancel != nullptr && cancel->cancelled()) return;
    absl::SleepFor(std::min(absl::Milliseconds(10), until - absl::Now()));
  }
}

absl::Status RegistryBackend::TryWithRetries(Source& source, Request& request) {
  int retries = config_.retry_limit;
  if (request.priority == storage::ReadPriority::kPrefetch) retries = std::min(retries, 1);
  absl::Status status;
  for (int attempt = 0; attempt <= retries; ++attempt) {
    if (request.cancel != nullptr && request.cancel->cancelled()) {
      return absl::CancelledError(StrCat("reading blob sha256:", request.blob_id, ": cancelled"));
    }
    status = TryOnce(source, request);
    if (status.ok()) {
      if (source.health_index >= 0) health_->RecordSuccess(source.health_index);
      request.served_by = source.name;
      return status;
    }
    if (absl::IsCancelled(status)) return status;
    if (source.health_index >= 0 && IsSourceFailure(status) &&
        health_->RecordFailure(source.health_index)) {
      return status;  // the source just went down; do not keep hammering it
    }
    if (!IsRetryableFailure(status) || attempt == retries) break;
    LogDebug("registry request failed, retrying",
             {{"source", source.name}, {"attempt", attempt + 1}, {"error", status.ToString()}});
    SleepCancellable(Backoff(attempt), request.cancel);
  }
  return status;
}

std::optional<std::string> RegistryBackend::CachedRedirect(const Source& source,
                                                           const std::string& blob_id) {
  absl::MutexLock lock(&redirect_mu_);
  auto it = redirects_.find(StrCat(source.name, " ", blob_id));
  if (it == redirects_.end()) return std::nullopt;
  return it->second;
}

void RegistryBackend::CacheRedirect(const Source& source, const std::string& blob_id,
                                    const std::string& url) {
  absl::MutexLock lock(&redirect_mu_);
  redirects_[StrCat(source.name, " ", blob_id)] = url;
}

void RegistryBackend::DropRedirect(const Source& source, const std::string& blob_id) {
  absl::MutexLock lock(&redirect_mu_);
  redirects_.erase(StrCat(source.name, " ", blob_id));
}

std::string RegistryBackend::RewriteLocation(const std::string& base_url,
                                             const std::string& location) const {
  UrlParts base = SplitUrl(base_url);
  UrlParts target;
  if (location.find("://") != std::string::npos) {
    target = SplitUrl(location);
  } else if (location.starts_with("//")) {
    target = SplitUrl(StrCat(base.scheme, ":", location));
  } else {
    target = base;
    if (location.starts_with("/")) {
      target.rest = location;
    } else {
      std::string path = base.rest.substr(0, base.rest.find('?'));
      target.rest = StrCat(path.substr(0, path.rfind('/') + 1), location);
    }
  }
  if (!config_.blob_url_scheme.empty()) target.scheme = config_.blob_url_scheme;
  if (!config_.blob_redirected_host.empty()) target.authority = config_.blob_redirected_host;
  return StrCat(target.scheme, "://", target.authority, target.rest);
}

absl::StatusOr<net::HttpResponse> RegistryBackend::SendCounted(Source& source,
                                                               net::HttpRequest& http,
                                                               Request& request, bool* body_done) {
  auto collector = std::make_shared<BodyCollector>();
  collector->range = request.range;
  collector->is_get = request.method == "GET";
  collector->bytes_counter = &source.bytes;
  http.method = request.method;
  http.range = request.range;
  http.follow_redirects = false;
  http.cancel = request.cancel;
  net::HttpResponse captured;  // status and headers, for a transfer stopped once complete
  http.on_headers = [collector, &captured](const net::HttpResponse& r) {
    captured.status = r.status;
    captured.headers = r.headers;
    captured.effective_url = r.effective_url;
    return collector->OnHeaders(r);
  };
  http.body_sink = [collector](std::string_view piece) { return collector->OnBody(piece); };
  source.requests.fetch_add(1, std::memory_order_relaxed);
  absl::StatusOr<net::HttpResponse> response = source.client->Send(http);
  *body_done = collector->complete;
  if (!response.ok()) {
    if (collector->complete) {
      captured.body = std::move(collector->data);
      return captured;
    }
    // An error answer whose body was cut short (docker-registry 2.8 announces the blob's length
    // on a 416): the status is what matters.
    if (captured.status >= 400 && !absl::IsCancelled(response.status())) {
      source.errors.fetch_add(1, std::memory_order_relaxed);
      captured.body = std::move(collector->data);
      return captured;
    }
    source.errors.fetch_add(1, std::memory_order_relaxed);
    return response.status();
  }
  if (response->status >= 400 && response->status != 401) {
    source.errors.fetch_add(1, std::memory_order_relaxed);
  }
  response->body = std::move(collector->data);
  return response;
}

absl::Status RegistryBackend::CheckResponse(net::HttpResponse& response, const std::string& url,
                                            Request& request, bool body_done) {
  const std::string what = StrCat(request.method, " ", url);
  int status = response.status;
  if (status >= 200 && status < 300) {
    if (request.method == "HEAD") {
      std::optional<std::string> length = response.headers.Get("Content-Length");
      std::optional<uint64_t> size = length ? ParseUint(*length) : std::nullopt;
      if (!size) {
        return absl::DataLossError(StrCat(what, ": answer without a valid Content-Length"));
      }
      request.size = *size;
      return absl::OkStatus();
    }
    const net::ByteRange& range = *request.range;
    if (status == 206) {
      std::optional<std::string> header = response.headers.Get("Content-Range");
      if (header) {
        absl::StatusOr<net::ContentRange> content_range = net::ParseContentRange(*header);
        if (!content_range.ok() || content_range->range != range) {
          return absl::DataLossError(StrCat(what, ": asked for ", range.ToRangeHeader(),
                                            ", got Content-Range \"", *header, "\""));
        }
      }
    } else if (status == 200 && !body_done) {
      return absl::DataLossError(StrCat(what, ": the blob ended before the requested range ",
                                        range.ToRangeHeader(), " (", response.body.size(), " of ",
                                        range.length, " bytes)"));
    }
    if (response.body.size() != range.length) {
      return absl::DataLossError(StrCat(what, ": got ", response.body.size(), " bytes for ",
                                        range.ToRangeHeader(), " (", range.length, " expected)"));
    }
    request.data = std::move(response.body);
    return absl::OkStatus();
  }
  if (status == 404) {
    return absl::NotFoundError(StrCat("blob sha256:", request.blob_id, " not found in ",
                                      config_.repo, " (", what, ": HTTP 404)"));
  }
  absl::Status error = net::HttpStatusToStatus(status, what);
  if (error.ok()) error = absl::UnknownError(StrCat(what, ": unexpected HTTP ", status));
  if (!response.body.empty()) {
    error = Annotate(error, StrCat("server said: ", response.body.substr(0, 300)));
  }
  return error;
}

absl::Status RegistryBackend::TryOnce(Source& source, Request& request) {
  const bool is_mirror = source.kind == Source::Kind::kMirror;
  bool body_done = false;

  // A cached redirect goes straight to blob storage, without our credentials.
  if (std::optional<std::string> cached = CachedRedirect(source, request.blob_id)) {
    net::HttpRequest http{.url = *cached};
    absl::StatusOr<net::HttpResponse> response = SendCounted(source, http, request, &body_done);
    if (!response.ok()) {
      DropRedirect(source, request.blob_id);
      return response.status();
    }
    if (response->status == 401 || response->status == 403 || IsRedirect(response->status)) {
      // Expired signature (or moved again): ask the registry for a fresh location, once.
      DropRedirect(source, request.blob_id);
    } else {
      return CheckResponse(*response, *cached, request, body_done);
    }
  }

  std::string url = SourceUrl(source, request.blob_id);
  net::HttpHeaders headers;
  if (is_mirror) {
    for (const auto& [name, value] : source.mirror->headers) {
      RETURN_IF_ERROR(headers.Set(name, value));
    }
  }
  if (source.kind != Source::Kind::kOrigin) {
    bool prefetch = request.priority == storage::ReadPriority::kPrefetch;
    RETURN_IF_ERROR(headers.Set("X-Dragonfly-Priority", prefetch ? "3" : "6"));
    if (prefetch) RETURN_IF_ERROR(headers.Set("X-Dragonfly-Prefetch", "true"));
  }
  const bool send_auth = !is_mirror || source.mirror->auth_through;
  std::string sent_auth;
  if (send_auth) {
    if (std::optional<std::string> header = auth_->CurrentHeader()) {
      sent_auth = *header;
      RETURN_IF_ERROR(headers.Set("Authorization", sent_auth));
    }
  }

  auto send = [&]() -> absl::StatusOr<net::HttpResponse> {
    net::HttpRequest http{.url = url, .headers = headers};
    absl::StatusOr<net::HttpResponse> response = SendCounted(source, http, request, &body_done);
    // scheme "": https first, plain http when TLS or the connection fails (skip_verify only).
    if (!response.ok() && source.kind == Source::Kind::kOrigin && config_.scheme.empty() &&
        config_.skip_verify && url.starts_with("https://") &&
        (absl::IsUnavailable(response.status()) || absl::IsUnauthenticated(response.status()))) {
      LogInfo("registry https failed, falling back to http",
              {{"host", config_.host}, {"error", response.status().ToString()}});
      origin_http_fallback_ = true;
      url = SourceUrl(source, request.blob_id);
      http.url = url;
      response = SendCounted(source, http, request, &body_done);
    }
    return response;
  };

  ASSIGN_OR_RETURN(net::HttpResponse response, send());
  if (response.status == 401) {
    if (!send_auth) {
      return absl::UnauthenticatedError(StrCat(source.name, " wants credentials for ", url,
                                               " and auth_through is off; not sending ours"));
    }
    if (!sent_auth.empty()) {
      // Our header was refused (e.g. an expired token answered with `Basic realm=...`): ask
      // again without it for the challenge that applies now.
      headers.Remove("Authorization");
      ASSIGN_OR_RETURN(response, send());
    }
    if (response.status == 401) {
      std::optional<std::string> www = response.headers.Get("WWW-Authenticate");
      if (!www) {
        return absl::UnauthenticatedError(
            StrCat(request.method, " ", url, ": HTTP 401 without a WWW-Authenticate challenge"));
      }
      ASSIGN_OR_RETURN(AuthChallenge challenge, ParseAuthChallenge(*www));
      absl::StatusOr<std::string> authorization = auth_->Authorize(challenge, sent_auth);
      if (!authorization.ok()) {
        return Annotate(authorization.status(), StrCat("authenticating to ", config_.host));
      }
      RETURN_IF_ERROR(headers.Set("Authorization", *authorization));
      ASSIGN_OR_RETURN(response, send());
      if (response.status == 401 || response.status == 403) {
        return absl::PermissionDeniedError(
            StrCat(request.method, " ", url, ": HTTP ", response.status,
                   " after authenticating; the credentials do not allow pulling ", config_.repo));
      }
    }
  }

  if (IsRedirect(response.status)) {
    std::optional<std::string> location = response.headers.Get("Location");
    if (!location || location->empty()) {
      return absl::UnknownError(
          StrCat(request.method, " ", url, ": HTTP ", response.status, " without a Location"));
    }
    std::string target = RewriteLocation(url, *location);
    CacheRedirect(source, request.blob_id, target);
    net::HttpRequest http{.url = target};
    ASSIGN_OR_RETURN(net::HttpResponse redirected, SendCounted(source, http, request, &body_done));
    if (redirected.status == 401 || redirected.status == 403 || IsRedirect(redirected.status)) {
      DropRedirect(source, request.blob_id);
    }
    return CheckResponse(redirected, target, request, body_done);
  }
  return CheckResponse(response, url, request, body_done);
}

RegistryBackend::Source* RegistryBackend::FindSource(const std::string& name) {
  for (auto& source : sources_) {
    if (source->name == name) return source.get();
  }
  return nullptr;
}

void RegistryBackend::ReportBadData(const std::string& source_name) {
  Source* source = FindSource(source_name);
  if (source == nullptr) return;
  source->bad_data.fetch_add(1, std::memory_order_relaxed);
  LogWarn("registry source served bad data", {{"source", source_name}});
  if (source->kind == Source::Kind::kMirror) health_->RecordFailure(source->health_index);
  // Bad bytes may sit behind a cached redirect: get a fresh location next time.
  absl::MutexLock lock(&redirect_mu_);
  std::string prefix = StrCat(source_name, " ");
  for (auto it = redirects_.lower_bound(prefix);
       it != redirects_.end() && it->first.starts_with(prefix);) {
    it = redirects_.erase(it);
  }
}

std::vector<storage::SourceMetrics> RegistryBackend::Metrics() const {
  std::vector<storage::SourceMetrics> metrics;
  for (const auto& source : sources_) {
    metrics.push_back({
        .source = source->name,
        .requests = source->requests.load(std::memory_order_relaxed),
        .errors = source->errors.load(std::memory_order_relaxed),
        .bytes = source->bytes.load(std::memory_order_relaxed),
        .bad_data = source->bad_data.load(std::memory_order_relaxed),
        .healthy = source->health_index < 0 || health_->Healthy(source->health_index),
    });
  }
  return metrics;
}

}  // namespace naiad::registry
