// File: registry/test_token_server.h
//
// A Docker registry token service for tests (test-only; library naiad::registry_testing): issues
// RS256 JWTs that docker-registry 2.8's `auth: token` access controller accepts. The signing key
// and a self-signed certificate are generated at Start(); every token carries the certificate in
// its `x5c` header, and the certificate file is the registry's `rootcertbundle`.
//
//   ASSERT_OK_AND_ASSIGN(auto tokens, TestTokenServer::Start({.username = "u", .password = "p"},
//                                                            dir.path()));
//   ASSERT_OK_AND_ASSIGN(std::string push, tokens->MintToken("library/app", {"pull", "push"}));
//   RegistryOptions options{.extra_config = tokens->RegistryAuthConfig(),
//                           .authorization = "Bearer " + push};
//
// The endpoint (`realm()`) answers POST (form: grant_type=password, username, password, service,
// scope, client_id) and GET (query: service, scope; credentials in `Authorization: Basic`).
// Wrong credentials get 401; no credentials get a token without access (so the registry refuses
// it). With `reject_post` a POST gets 405 and clients must fall back to GET.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/http_server.h"

namespace naiad::registry {

struct TestTokenServerOptions {
  std::string issuer = "naiad-test-issuer";
  std::string service = "naiad-test-registry";
  std::string username;  // empty: no credentials needed for pull access
  std::string password;
  absl::Duration expires_in = absl::Seconds(300);
  bool reject_post = false;
  bool access_token_only = false;  // answer {"access_token": ...} instead of {"token": ...}
};

class TestTokenServer {
 public:
  // Writes the certificate to `<dir>/token-cert.pem`.
  static absl::StatusOr<std::unique_ptr<TestTokenServer>> Start(TestTokenServerOptions options,
                                                                const std::string& dir);
  ~TestTokenServer();

  std::string realm() const;
  std::string cert_path() const { return cert_path_; }
  // The `auth:` section for RegistryOptions::extra_config.
  std::string RegistryAuthConfig() const;
  // A token for `repo` with `actions`, as the endpoint would issue it.
  absl::StatusOr<std::string> MintToken(std::string_view repo,
                                        const std::vector<std::string>& actions) const;

  void set_reject_post(bool reject) { reject_post_ = reject; }
  uint64_t post_requests() const { return post_requests_; }
  uint64_t get_requests() const { return get_requests_; }
  uint64_t tokens_issued() const { return tokens_issued_; }

 private:
  struct Keys;
  TestTokenServer(TestTokenServerOptions options, std::string cert_path);
  void Handle(const net::ServerRequest& request, net::ResponseWriter& writer);

  const TestTokenServerOptions options_;
  const std::string cert_path_;
  std::unique_ptr<Keys> keys_;
  std::unique_ptr<net::HttpServer> server_;
  std::atomic<bool> reject_post_{false};
  std::atomic<uint64_t> post_requests_{0};
  std::atomic<uint64_t> get_requests_{0};
  std::atomic<uint64_t> tokens_issued_{0};
};

}  // namespace naiad::registry
