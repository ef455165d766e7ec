#include "registry/registry_auth.h"

#include <algorithm>
#include <cctype>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "net/http_types.h"
#include "nlohmann/json.hpp"

namespace naiad::registry {
namespace {

constexpr char kClientId[] = "naiad-registry-client";
constexpr absl::Duration kDefaultTokenTtl = absl::Seconds(600);
constexpr absl::Duration kRefreshBase = absl::Seconds(20);
constexpr absl::Duration kMaxRefreshJitter = absl::Minutes(5);
constexpr absl::Duration kFailedRefreshBackoff = absl::Seconds(5);

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// RFC 3986 unreserved characters stay, everything else is %XX (form and query encoding).
std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

std::string EncodeParams(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) out.push_back('&');
    StrAppend(&out, PercentEncode(name), "=", PercentEncode(value));
  }
  return out;
}

// "https://auth.example.com:8443/token?x" -> "auth.example.com:8443".
std::string UrlHost(std::string_view url) {
  size_t start = url.find("://");
  start = start == std::string_view::npos ? 0 : start + 3;
  size_t end = url.find_first_of("/?#", start);
  return std::string(url.substr(start, end == std::string_view::npos ? url.npos : end - start));
}

absl::Status TokenEndpointError(const net::HttpResponse& response, std::string_view what) {
  absl::Status status = net::HttpStatusToStatus(response.status, what);
  if (status.ok()) status = absl::UnknownError(StrCat(what, ": HTTP ", response.status));
  return Annotate(status, StrCat("token endpoint said: ", response.body.substr(0, 300)));
}

}  // namespace

std::string AuthChallenge::Param(const std::string& name) const {
  auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

absl::StatusOr<AuthChallenge> ParseAuthChallenge(std::string_view header) {
  std::string_view s = header;
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  size_t space = s.find_first_of(" \t");
  std::string scheme = Lower(s.substr(0, space));
  AuthChallenge challenge;
  if (scheme == "basic") {
    challenge.scheme = AuthChallenge::Scheme::kBasic;
  } else if (scheme == "bearer") {
    challenge.scheme = AuthChallenge::Scheme::kBearer;
  } else if (scheme.empty()) {
    return absl::InvalidArgumentError("empty WWW-Authenticate challenge");
  } else {
    return absl::UnimplementedError(
        StrCat("unsupported WWW-Authenticate scheme \"", scheme, "\" in: ", header));
  }
  s = space == std::string_view::npos ? std::string_view() : s.substr(space);
  while (true) {
    while (!s.empty() && (IsSpace(s.front()) || s.front() == ',')) s.remove_prefix(1);
    if (s.empty()) break;
    size_t eq = s.find('=');
    size_t comma = s.find(',');
    if (eq == 0) {
      return absl::InvalidArgumentError(StrCat("malformed WWW-Authenticate parameters: ", header));
    }
    if (eq == std::string_view::npos || comma < eq) {
      // A bare word (e.g. the tail of an unquoted "pull,push"): not a parameter; skip it.
      s = comma == std::string_view::npos ? std::string_view() : s.substr(comma);
      continue;
    }
    std::string_view raw_name = s.substr(0, eq);
    while (!raw_name.empty() && IsSpace(raw_name.back())) raw_name.remove_suffix(1);
    std::string name = Lower(raw_name);
    s.remove_prefix(eq + 1);
    while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
    std::string value;
    if (!s.empty() && s.front() == '"') {
      s.remove_prefix(1);
      bool closed = false;
      while (!s.empty()) {
        char c = s.front();
        s.remove_prefix(1);
        if (c == '\\' && !s.empty()) {
          value.push_back(s.front());
          s.remove_prefix(1);
        } else if (c == '"') {
          closed = true;
          break;
        } else {
          value.push_back(c);
        }
      }
      if (!closed) {
        return absl::InvalidArgumentError(StrCat("unterminated quoted value in: ", header));
      }
    } else {
      size_t end = s.find(',');
      std::string_view token = s.substr(0, end);
      while (!token.empty() && IsSpace(token.back())) token.remove_suffix(1);
      value = std::string(token);
      s = end == std::string_view::npos ? std::string_view() : s.substr(end);
    }
    challenge.params[name] = std::move(value);
  }
  if (challenge.scheme == AuthChallenge::Scheme::kBearer &&
      (challenge.Param("realm").empty() || challenge.Param("service").empty())) {
    return absl::InvalidArgumentError(
        StrCat("Bearer challenge without realm or service: ", header));
  }
  return challenge;
}

absl::StatusOr<TokenResponse> ParseTokenResponse(std::string_view body) {
  nlohmann::json json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(
        StrCat("token response is not a JSON object: ", body.substr(0, 200)));
  }
  TokenResponse response;
  for (const char* key : {"token", "access_token"}) {
    auto it = json.find(key);
    if (it != json.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
      response.token = it->get<std::string>();
      break;
    }
  }
  if (response.token.empty()) {
    return absl::InvalidArgumentError("token response has neither token nor access_token");
  }
  auto expires = json.find("expires_in");
  if (expires != json.end() && expires->is_number() && expires->get<double>() > 0) {
    response.expires_in = absl::Seconds(expires->get<double>());
  } else {
    response.expires_in = kDefaultTokenTtl;
  }
  return response;
}

RegistryAuth::RegistryAuth(RegistryAuthOptions options, Fetcher fetcher)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : Clock::Real()),
      fetcher_(std::move(fetcher)) {
  // With only `auth`, nothing is sent until a 401 says which scheme the registry wants.
  if (!options_.registry_token.empty()) header_ = StrCat("Bearer ", options_.registry_token);
}

absl::Duration RegistryAuth::RefreshMargin(absl::Duration ttl) const {
  absl::Duration max_jitter = std::min(kMaxRefreshJitter, ttl / 10);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  absl::Duration margin = kRefreshBase + max_jitter * unit(rng);
  // Short-lived tokens: refresh halfway rather than never using them.
  return std::min(margin, ttl / 2);
}

std::optional<std::string> RegistryAuth::CurrentHeader() {
  absl::MutexLock lock(&mu_);
  if (header_.empty()) return std::nullopt;
  absl::Time now = clock_->Now();
  if (now < refresh_at_ || !bearer_challenge_) return header_;
  if (fetching_) {
    if (now < expires_at_) return header_;  // the refresh in flight will replace it
    mu_.Await(absl::Condition(
        +[](bool* fetching) { return !*fetching; }, &fetching_));
    if (header_.empty()) return std::nullopt;
    return header_;
  }
  AuthChallenge challenge = *bearer_challenge_;
  absl::StatusOr<std::string> fresh = FetchAsLeader(challenge);
  if (fresh.ok()) return *fresh;
  now = clock_->Now();
  LogWarn("registry token refresh failed", {{"error", fresh.status().ToString()}});
  if (now < expires_at_) {
    refresh_at_ = std::min(expires_at_, now + kFailedRefreshBackoff);
    return header_;
  }
  header_.clear();
  return std::nullopt;
}

absl::StatusOr<std::string> RegistryAuth::Authorize(const AuthChallenge& challenge,
                                                    const std::string& sent) {
  absl::MutexLock lock(&mu_);
  // Someone replaced the header the registry rejected: use theirs.
  if (!header_.empty() && header_ != sent && clock_->Now() < expires_at_) return header_;
  if (challenge.scheme == AuthChallenge::Scheme::kBasic) {
    if (options_.auth.empty()) {
      return absl::UnauthenticatedError(
          "the registry asks for Basic authentication and no credentials are configured "
          "(device.backend.config.auth or IMAGE_PULL_AUTH)");
    }
    std::string basic = StrCat("Basic ", options_.auth);
    if (sent == basic) {
      return absl::PermissionDeniedError("the registry rejected the configured credentials");
    }
    header_ = basic;
    refresh_at_ = expires_at_ = absl::InfiniteFuture();
    bearer_challenge_.reset();
    return header_;
  }
  if (fetching_) {
    uint64_t generation = generation_;
    mu_.Await(absl::Condition(
        +[](bool* fetching) { return !*fetching; }, &fetching_));
    if (generation_ != generation) {
      if (!last_fetch_status_.ok()) return last_fetch_status_;
      if (!header_.empty() && header_ != sent) return header_;
    }
  }
  return FetchAsLeader(challenge);
}

absl::StatusOr<std::string> RegistryAuth::FetchAsLeader(const AuthChallenge& challenge) {
  fetching_ = true;
  mu_.Unlock();
  absl::StatusOr<TokenResponse> token = FetchToken(challenge);
  mu_.Lock();
  fetching_ = false;
  ++generation_;
  last_fetch_status_ = token.status();
  if (!token.ok()) return token.status();
  absl::Time now = clock_->Now();
  header_ = StrCat("Bearer ", token->token);
  expires_at_ = now + token->expires_in;
  refresh_at_ = expires_at_ - RefreshMargin(token->expires_in);
  bearer_challenge_ = challenge;
  return header_;
}

void RegistryAuth::Invalidate(const std::string& header) {
  absl::MutexLock lock(&mu_);
  if (header_ == header) {
    header_.clear();
    refresh_at_ = expires_at_ = absl::InfiniteFuture();
  }
}

uint64_t RegistryAuth::token_requests() const {
  absl::MutexLock lock(&mu_);
  return token_requests_;
}

absl::StatusOr<TokenResponse> RegistryAuth::FetchToken(const AuthChallenge& challenge) {
  const std::string realm = challenge.Param("realm");
  const std::string host = UrlHost(realm);
  std::vector<std::pair<std::string, std::string>> params;
  params.emplace_back("service", challenge.Param("service"));
  if (std::string scope = challenge.Param("scope"); !scope.empty()) {
    params.emplace_back("scope", scope);
  }
  params.emplace_back("client_id", kClientId);
  net::HttpHeaders auth_headers;
  if (!options_.auth.empty()) {
    RETURN_IF_ERROR(auth_headers.Set("Authorization", StrCat("Basic ", options_.auth)));
  }
  bool get_only;
  {
    absl::MutexLock lock(&mu_);
    get_only = get_only_hosts_.count(host) > 0;
  }
  auto count_request = [&] {
    absl::MutexLock lock(&mu_);
    ++token_requests_;
  };

  if (!get_only) {
    std::vector<std::pair<std::string, std::string>> form = params;
    std::string credentials;
    if (!options_.auth.empty() && absl::Base64Unescape(ToAbsl(options_.auth), &credentials)) {
      size_t colon = credentials.find(':');
      if (colon != std::string::npos) {
        form.insert(form.begin(), {{"grant_type", "password"},
                                   {"username", credentials.substr(0, colon)},
                                   {"password", credentials.substr(colon + 1)}});
      }
    }
    net::HttpRequest post{.method = "POST",
                          .url = realm,
                          .headers = auth_headers,
                          .body = EncodeParams(form),
                          .timeout = options_.request_timeout};
    RETURN_IF_ERROR(post.headers.Set("Content-Type", "application/x-www-form-urlencoded"));
    count_request();
    absl::StatusOr<net::HttpResponse> response = fetcher_(post);
    if (!response.ok()) return Annotate(response.status(), "fetching registry token");
    if (response->status == 200) {
      absl::StatusOr<TokenResponse> token = ParseTokenResponse(response->body);
      if (token.ok()) return token;
    }
    LogDebug("token POST rejected, trying GET", {{"realm", realm}, {"status", response->status}});
  }

  std::string url =
      StrCat(realm, realm.find('?') == std::string::npos ? "?" : "&", EncodeParams(params));
  net::HttpRequest get{.url = url, .headers = auth_headers, .timeout = options_.request_timeout};
  count_request();
  ASSIGN_OR_RETURN(net::HttpResponse response, fetcher_(get));
  if (response.status != 200) return TokenEndpointError(response, StrCat("GET ", realm));
  absl::StatusOr<TokenResponse> token = ParseTokenResponse(response.body);
  if (!token.ok()) return Annotate(token.status(), StrCat("GET ", realm));
  if (!get_only) {
    absl::MutexLock lock(&mu_);
    get_only_hosts_[host] = true;
  }
  return token;
}

}  // namespace naiad::registry
