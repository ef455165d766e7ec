#include "peer/proxy.h"

#include <algorithm>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "base/logging.h"
#include "base/strings.h"
#include "piece/piece_store.h"

namespace naiad::peer {
namespace {

// Pieces ahead of a streaming reader that are fetched first when the whole task is wanted.
constexpr uint32_t kReadAheadPieces = 8;

// X-Dragonfly-Priority 0..6, 6 the most urgent; naiad fs sends 3 for prefetch, 6 on demand.
bool IsLowPriority(const std::optional<std::string>& priority) {
  int value = 0;
  return priority.has_value() && absl::SimpleAtoi(ToAbsl(*priority), &value) && value <= 3;
}

// Hop-by-hop and framing headers, which the proxy never copies between its two sides.
bool IsHopByHop(std::string_view name) {
  for (std::string_view hop :
       {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate",
        "te", "trailer", "transfer-encoding", "upgrade", "content-length", "host"}) {
    if (absl::EqualsIgnoreCase(ToAbsl(name), ToAbsl(hop))) return true;
  }
  return false;
}

net::HttpHeaders CopyHeaders(const net::HttpHeaders& from) {
  net::HttpHeaders to;
  for (const auto& [name, value] : from.entries()) {
    if (!IsHopByHop(name)) to.Add(name, value).IgnoreError();
  }
  return to;
}

std::string WithoutQuery(const std::string& url) { return url.substr(0, url.find_first_of("?#")); }

// The host[:port] of an http(s) URL.
std::string HostOf(const std::string& url) {
  size_t start = url.find("://");
  if (start == std::string::npos) return "";
  start += 3;
  return url.substr(start, url.find_first_of("/?#", start) - start);
}

bool IsHttpUrl(std::string_view url) {
  return absl::StartsWith(ToAbsl(url), "http://") || absl::StartsWith(ToAbsl(url), "https://");
}

void Reject(net::ResponseWriter& writer, int status, std::string_view message) {
  net::HttpHeaders headers;
  headers.Add("Content-Type", "text/plain").IgnoreError();
  headers.Add("X-Dragonfly-Error-Type", "proxy").IgnoreError();
  writer.Respond(status, headers, StrCat(message, "\n")).IgnoreError();
}

}  // namespace

Proxy::Proxy(const PeerConfig& config, Downloads* downloads, PeerMetrics* metrics)
    : config_(config),
      filtered_params_(config.FilteredParams()),
      downloads_(downloads),
      metrics_(metrics),
      client_({.connect_timeout = absl::Seconds(10),
               .verify_tls = !config.proxy.security.insecure,
               .ca_files = config.proxy.registry_mirror.certs}) {
  // Patterns were validated when the config loaded.
  for (const ProxyRule& rule : config.proxy.proxies)
    rules_.push_back({std::regex(rule.regx), rule});
  for (const WhiteListEntry& entry : config.proxy.white_list) {
    if (!entry.regx.empty()) white_list_.emplace_back(entry.regx);
  }
}

const Proxy::Rule* Proxy::MatchRule(const std::string& url) const {
  std::string bare = WithoutQuery(url);
  for (const Rule& rule : rules_) {
    if (std::regex_search(bare, rule.regex)) return &rule;
  }
  return nullptr;
}

bool Proxy::HostAllowed(const std::string& url) const {
  std::string host = HostOf(url);
  for (const WhiteListEntry& entry : config_.proxy.white_list) {
    if (!entry.host.empty() && (host == entry.host || HostOf("x://" + host) == entry.host)) {
      return true;
    }
  }
  for (const std::regex& regex : white_list_) {
    if (std::regex_search(host, regex)) return true;
  }
  return MatchRule(url) != nullptr;
}

absl::StatusOr<Proxy::Route> Proxy::Resolve(const net::ServerRequest& request) const {
  if (request.method == "CONNECT") {
    return absl::UnimplementedError("CONNECT (HTTPS tunnelling) is not enabled on this proxy");
  }
  Route route;
  bool mirror = absl::StartsWith(ToAbsl(request.target), "/");
  if (mirror) {
    std::string base = config_.proxy.registry_mirror.url;
    if (auto registry = request.headers.Get("X-Dragonfly-Registry");
        registry.has_value() && config_.proxy.registry_mirror.dynamic) {
      if (!IsHttpUrl(*registry)) {
        return absl::InvalidArgumentError(
            StrCat("X-Dragonfly-Registry \"", *registry, "\" is not an http(s) URL"));
      }
      base = *registry;
    }
    while (!base.empty() && base.back() == '/') base.pop_back();
    route.url = base + request.target;
  } else if (IsHttpUrl(request.target)) {
    if (!HostAllowed(request.target)) {
      return absl::PermissionDeniedError(
          StrCat("host ", HostOf(request.target), " is not named by this proxy's configuration"));
    }
    route.url = request.target;
  } else {
    return absl::InvalidArgumentError("request target is neither a path nor an http(s) URL");
  }
  const Rule* rule = MatchRule(route.url);
  if (rule != nullptr && rule->config.use_https && absl::StartsWith(ToAbsl(route.url), "http://")) {
    route.url = "https://" + route.url.substr(strlen("http://"));
  }
  bool blob = mirror && piece::BlobDigestOfUrl(route.url).has_value();
  bool forced = request.headers.Get("X-Dragonfly-Use-P2P") == "true";
  route.swarm = request.method == "GET" && !config_.proxy.registry_mirror.direct &&
                ((rule != nullptr && !rule->config.direct) || blob || forced);
  return route;
}

void Proxy::Handle(const net::ServerRequest& request, net::ResponseWriter& writer) {
  absl::StatusOr<Route> route = Resolve(request);
  if (!route.ok()) {
    ++metrics_->rejected_requests;
    Reject(writer,
           absl::IsUnimplemented(route.status()) ? 405 : net::StatusToHttpStatus(route.status()),
           ToStd(route.status().message()));
    return;
  }
  if (route->swarm) {
    ++metrics_->p2p_requests;
    ServeFromSwarm(request, route->url, filtered_params_, writer);
  } else {
    ++metrics_->direct_requests;
    Relay(request, route->url, writer);
  }
}

void Proxy::HandleLocal(const net::ServerRequest& request, net::ResponseWriter& writer) {
  constexpr std::string_view kTasks = "/v1/tasks/";
  constexpr std::string_view kTraffic = "/traffic";
  if (request.method == "GET" && request.path == "/v1/download") {
    std::optional<std::string> url = request.headers.Get("X-Naiad-Url");
    if (!url.has_value() || !IsHttpUrl(*url)) {
      Reject(writer, 400, "X-Naiad-Url must carry an http(s) URL");
      return;
    }
    std::vector<std::string> filtered = filtered_params_;
    if (auto filter = request.headers.Get("X-Dragonfly-Filter")) {
      for (absl::string_view part : absl::StrSplit(ToAbsl(*filter), '&')) {
        if (!part.empty()) filtered.emplace_back(part);
      }
    }
    ++metrics_->p2p_requests;
    ServeFromSwarm(request, *url, filtered, writer);
  } else if (request.method == "GET" && absl::StartsWith(ToAbsl(request.path), ToAbsl(kTasks)) &&
             absl::EndsWith(ToAbsl(request.path), ToAbsl(kTraffic))) {
    std::string id =
        request.path.substr(kTasks.size(), request.path.size() - kTasks.size() - kTraffic.size());
    if (!piece::IsValidTaskId(id)) {
      Reject(writer, 400, "a task id is 64 lowercase hex digits");
      return;
    }
    TaskTraffic traffic = downloads_->Traffic(id);
    net::HttpHeaders headers;
    headers.Add("Content-Type", "application/json").IgnoreError();
    writer
        .Respond(200, headers,
                 StrCat("{\"task_id\":\"", id, "\",\"origin_bytes\":", traffic.origin_bytes,
                        ",\"peer_bytes\":", traffic.peer_bytes, "}"))
        .IgnoreError();
  } else {
    Reject(writer, 404, "no such endpoint");
  }
}

void Proxy::ServeFromSwarm(const net::ServerRequest& request, const std::string& url,
                           const std::vector<std::string>& filtered, net::ResponseWriter& writer) {
  std::string task_id = piece::TaskIdForUrl(url, filtered);
  OriginError origin_error;
  absl::StatusOr<std::shared_ptr<piece::Task>> opened =
      downloads_->Open(task_id, {.url = url, .headers = request.headers}, &origin_error);
  if (!opened.ok()) {
    if (absl::IsFailedPrecondition(opened.status()) && origin_error.status != 0) {
      net::HttpHeaders headers;
      headers.Add("X-Dragonfly-Error-Type", "backend").IgnoreError();
      writer.Respond(origin_error.status, headers, origin_error.body).IgnoreError();
      return;
    }
    LogWarn("task open failed", {{"url", url}, {"error", opened.status()}});
    Reject(writer, 502, ToStd(opened.status().message()));
    return;
  }
  std::shared_ptr<piece::Task> task = std::move(*opened);
  const piece::TaskMeta& meta = task->meta();
  bool complete = task->complete();
  if (complete) ++metrics_->task_hits;

  net::ByteRange range{0, meta.content_length};
  std::optional<std::string> range_header = request.headers.Get("Range");
  if (range_header.has_value()) {
    absl::StatusOr<net::ByteRange> parsed =
        net::ParseRangeHeader(*range_header, meta.content_length);
    if (!parsed.ok()) {
      net::HttpHeaders headers;
      headers.Add("Content-Range", StrCat("bytes */", meta.content_length)).IgnoreError();
      writer
          .Respond(absl::IsOutOfRange(parsed.status()) ? 416 : 400, headers,
                   ToStd(parsed.status().message()))
          .IgnoreError();
      return;
    }
    range = *parsed;
  }
  net::HttpHeaders headers;
  headers.Add("Accept-Ranges", "bytes").IgnoreError();
  headers.Add("X-Dragonfly-Task-ID", task_id).IgnoreError();
  if (!meta.content_type.empty()) headers.Add("Content-Type", meta.content_type).IgnoreError();
  if (!meta.digest.empty()) headers.Add("Docker-Content-Digest", meta.digest).IgnoreError();
  if (complete) headers.Add("X-Dragonfly-Task-Download-Finished", "true").IgnoreError();
  int status = range_header.has_value() ? 206 : 200;
  if (status == 206) {
    headers.Add("Content-Range", range.ToContentRange(meta.content_length)).IgnoreError();
  }
  if (range.length == 0) {
    writer.Respond(status, headers, "").IgnoreError();
    return;
  }
  uint32_t first = static_cast<uint32_t>(range.offset / meta.piece_size);
  uint32_t last = static_cast<uint32_t>((range.end() - 1) / meta.piece_size);
  bool prefetch =
      config_.download.prefetch || request.headers.Get("X-Dragonfly-Prefetch") == "true";
  bool whole = !range_header.has_value() || prefetch;
  // A range is urgent, all of it: a lazy reader waits on it. A whole-task GET is not: in the
  // swarm its pieces come in the order that suits the swarm (rarest first; peers that all
  // wanted the next piece in order would all queue at the one peer that has it), and the
  // response catches up as they arrive.
  bool urgent = range_header.has_value();
  uint32_t window = urgent ? last - first : kReadAheadPieces;
  // A reader, as opposed to a prefetcher: naiad fs (and nydusd) mark prefetch reads with a low
  // X-Dragonfly-Priority; those must not hold back the task's background prefetch.
  const bool reader = urgent && !IsLowPriority(request.headers.Get("X-Dragonfly-Priority"));
  const piece::ByteSpan bytes{range.offset, range.end()};
  auto want = [&](uint32_t from) {
    downloads_->Want(task, from, from + std::min(window, last - from), whole, urgent, reader,
                     bytes);
  };
  want(first);
  // The range's bytes in piece n: at the range's ends, the reader waits for those only.
  auto share = [&](uint32_t n) {
    return piece::ByteSpan{std::max(range.offset, meta.PieceOffset(n)),
                           std::min(range.end(), meta.PieceOffset(n) + meta.PieceLength(n))};
  };

  const absl::Duration wait = config_.download.piece_timeout * 3;
  // Wait for the first piece before answering, so that a failing origin still gets an error
  // status rather than a truncated body.
  if (!task->WaitForRange(share(first), absl::Now() + wait)) {
    absl::Status failure = task->failure();
    if (IsOriginRefusal(failure)) {
      // The origin refused us this content (the task may have been opened from what the swarm
      // knows, without asking it): its own answer goes to the client, a 401's challenge included.
      ++metrics_->direct_requests;
      Relay(request, url, writer);
      return;
    }
    Reject(writer, failure.ok() ? 504 : 502,
           failure.ok() ? "timed out waiting for data" : ToStd(failure.message()));
    return;
  }
  if (!writer.Begin(status, headers, range.length).ok()) return;
  std::string buffer;
  uint64_t offset = range.offset;
  for (uint32_t n = first; n <= last; ++n) {
    if (n != first) want(n);
    if (!task->WaitForRange(share(n), absl::Now() + wait)) {
      LogWarn("piece did not arrive; closing the response", {{"task", task_id}, {"piece", n}});
      return;  // the connection is closed: the client sees a truncated body, never a wrong one
    }
    uint64_t end = share(n).end;
    buffer.resize(end - offset);
    if (!task->ReadRange(offset, std::span<char>(buffer)).ok()) return;
    if (!writer.Write(buffer).ok()) return;
    metrics_->served_bytes += buffer.size();
    offset = end;
  }
  writer.End().IgnoreError();
}

void Proxy::Relay(const net::ServerRequest& request, const std::string& url,
                  net::ResponseWriter& writer) {
  net::HttpRequest upstream{.method = request.method,
                            .url = url,
                            .headers = CopyHeaders(request.headers),
                            .body = request.body,
                            .follow_redirects = false};
  bool head = request.method == "HEAD";
  upstream.on_headers = [&writer, head](const net::HttpResponse& response) {
    std::optional<uint64_t> length;
    if (auto value = response.headers.Get("Content-Length")) {
      uint64_t parsed = 0;
      if (absl::SimpleAtoi(ToAbsl(*value), &parsed)) length = parsed;
    }
    if (head && !length.has_value()) length = 0;
    return writer.Begin(response.status, CopyHeaders(response.headers), length);
  };
  upstream.body_sink = [this, &writer](std::string_view data) {
    metrics_->served_bytes += data.size();
    return writer.Write(data);
  };
  absl::StatusOr<net::HttpResponse> response = client_.Send(upstream);
  if (!response.ok()) {
    if (!writer.started()) Reject(writer, 502, ToStd(response.status().message()));
    return;  // started: the connection is closed (truncated body)
  }
  writer.End().IgnoreError();
}

}  // namespace naiad::peer
