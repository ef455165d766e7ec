// File: registry/registry_auth.h
//
// Registry authentication for the blob backend: parsing `WWW-Authenticate` challenges and the
// token cache that turns a challenge into an `Authorization` header (Docker registry token
// protocol, as nydusd speaks it).
//
//   RegistryAuth auth({.auth = base64_user_pass}, [&](const net::HttpRequest& r) {
//     return direct_client.Send(r);         // token requests never go through mirrors or proxy
//   });
//   std::optional<std::string> header = auth.CurrentHeader();     // send it if present
//   ... 401 with WWW-Authenticate ...
//   ASSIGN_OR_RETURN(std::string fresh, auth.Authorize(challenge, /*sent=*/header.value_or("")));
//
// Challenges: `Basic realm=...` answers with `Basic <auth>`; `Bearer realm=,service=[,scope=]`
// fetches a token from the realm: a POST form (grant_type=password with the credentials when
// `auth` is set, service, scope, client_id=naiad-registry-client; `Authorization: Basic <auth>`
// if configured) and, when the realm rejects the POST, a GET with the same query parameters,
// remembered per realm host. The token response's `token` (or `access_token`) and `expires_in`
// (default 600 s) are cached; CurrentHeader() refreshes a token lazily once it is within
// 20 s + jitter (up to min(5 min, ttl/10)) of its expiry, keeping the old one if that fails.
// A static `registry_token` is always sent as `Bearer <token>` and never refreshed.
//
// Thread safety: all methods are thread-safe. Only one thread fetches a token at a time; threads
// that need one meanwhile wait for its result instead of fetching their own (no token storms).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/env.h"
#include "net/http_client.h"

namespace naiad::registry {

// A parsed `WWW-Authenticate` header.
struct AuthChallenge {
  enum class Scheme { kBasic, kBearer };
  Scheme scheme = Scheme::kBasic;
  // Parameters with lower-cased names ("realm", "service", "scope", ...).
  std::map<std::string, std::string> params;

  std::string Param(const std::string& name) const;
  friend bool operator==(const AuthChallenge&, const AuthChallenge&) = default;
};

// Parses `Basic realm="x"` or `Bearer realm="https://a/token",service="reg",scope="repo:x:pull"`
// (quoted or token values, any order, scheme name in any case). Bearer requires realm and
// service. InvalidArgument for anything else (Unimplemented for an unknown scheme).
absl::StatusOr<AuthChallenge> ParseAuthChallenge(std::string_view header);

// A token endpoint's answer.
struct TokenResponse {
  std::string token;
  absl::Duration expires_in = absl::Seconds(600);
};

// Parses `{"token": "...", "expires_in": 300}`; `access_token` is used when `token` is absent
// or empty. A missing or non-positive expires_in means 600 s. InvalidArgument if no token.
absl::StatusOr<TokenResponse> ParseTokenResponse(std::string_view body);

struct RegistryAuthOptions {
  std::string auth;            // base64("user:pass"); empty: anonymous
  std::string registry_token;  // a static bearer token; wins over challenges
  Clock* clock = nullptr;      // for token expiry; null: Clock::Real()
  absl::Duration request_timeout = absl::Seconds(10);
};

class RegistryAuth {
 public:
  // Sends one token request (to the realm, directly).
  using Fetcher = std::function<absl::StatusOr<net::HttpResponse>(const net::HttpRequest&)>;

  RegistryAuth(RegistryAuthOptions options, Fetcher fetcher);

  // The Authorization header to send, if any. Refreshes a bearer token that is about to expire
  // (single-flight); a failed refresh keeps the old token until it has really expired.
  std::optional<std::string> CurrentHeader();

  // Answers a 401 challenge. `sent` is the Authorization header of the request that got it ("" if
  // none): when another thread has already replaced it, the replacement is returned without a
  // new fetch. Errors: Unauthenticated when Basic is asked for and no credentials are set;
  // token endpoint failures as their Status (PermissionDenied/Unauthenticated for 401/403).
  absl::StatusOr<std::string> Authorize(const AuthChallenge& challenge, const std::string& sent);

  // Forgets the cached header (e.g. after the registry rejected it).
  void Invalidate(const std::string& header);

  // Token requests made so far (for tests).
  uint64_t token_requests() const;

 private:
  absl::StatusOr<TokenResponse> FetchToken(const AuthChallenge& challenge);
  // Fetches a token for `challenge` as the single fetcher; mu_ is held on entry and exit.
  absl::StatusOr<std::string> FetchAsLeader(const AuthChallenge& challenge)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration RefreshMargin(absl::Duration ttl) const;

  const RegistryAuthOptions options_;
  Clock* const clock_;
  const Fetcher fetcher_;

  mutable absl::Mutex mu_;
  std::string header_ ABSL_GUARDED_BY(mu_);
  // When the cached bearer token must be refreshed / stops being usable; InfiniteFuture for
  // headers that do not expire (Basic, static token).
  absl::Time refresh_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Time expires_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::optional<AuthChallenge> bearer_challenge_ ABSL_GUARDED_BY(mu_);
  bool fetching_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped by every completed fetch
  absl::Status last_fetch_status_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> get_only_hosts_ ABSL_GUARDED_BY(mu_);
  uint64_t token_requests_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace naiad::registry
