#include "registry/test_token_server.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cctype>
#include <map>
#include <utility>

#include "absl/strings/escaping.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "nlohmann/json.hpp"

namespace naiad::registry {
namespace {

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(s[i + 1]) &&
               std::isxdigit(s[i + 2])) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> ParseForm(std::string_view s) {
  std::map<std::string, std::string> out;
  while (!s.empty()) {
    size_t amp = s.find('&');
    std::string_view pair = s.substr(0, amp);
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos) {
      out[PercentDecode(pair.substr(0, eq))] = PercentDecode(pair.substr(eq + 1));
    }
    s = amp == std::string_view::npos ? std::string_view() : s.substr(amp + 1);
  }
  return out;
}

std::string Base64Url(std::string_view data) {
  std::string out;
  absl::WebSafeBase64Escape(ToAbsl(data), &out);
  return out;
}

}  // namespace

struct TestTokenServer::Keys {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  std::string cert_der_base64;
  ~Keys() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

TestTokenServer::TestTokenServer(TestTokenServerOptions options, std::string cert_path)
    : options_(std::move(options)), cert_path_(std::move(cert_path)) {
  reject_post_ = options_.reject_post;
}

TestTokenServer::~TestTokenServer() {
  if (server_) server_->Shutdown(absl::Seconds(1));
}

absl::StatusOr<std::unique_ptr<TestTokenServer>> TestTokenServer::Start(
    TestTokenServerOptions options, const std::string& dir) {
  std::unique_ptr<TestTokenServer> server(
      new TestTokenServer(std::move(options), StrCat(dir, "/token-cert.pem")));
  auto keys = std::make_unique<Keys>();
  keys->key = EVP_RSA_gen(2048);
  if (keys->key == nullptr) return absl::InternalError("EVP_RSA_gen failed");
  keys->cert = X509_new();
  X509* cert = keys->cert;
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 7 * 24 * 3600);
  X509_set_pubkey(cert, keys->key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("naiad-test-token-issuer"), -1,
                             -1, 0);
  X509_set_issuer_name(cert, name);
  if (X509_sign(cert, keys->key, EVP_sha256()) == 0) return absl::InternalError("X509_sign");
  unsigned char* der = nullptr;
  int der_len = i2d_X509(cert, &der);
  if (der_len <= 0) return absl::InternalError("i2d_X509");
  keys->cert_der_base64 =
      absl::Base64Escape(absl::string_view(reinterpret_cast<char*>(der), der_len));
  OPENSSL_free(der);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* pem_data = nullptr;
  long pem_len = BIO_get_mem_data(bio, &pem_data);
  std::string pem(pem_data, static_cast<size_t>(pem_len));
  BIO_free(bio);
  RETURN_IF_ERROR(WriteFileAtomically(server->cert_path_, pem));
  server->keys_ = std::move(keys);

  TestTokenServer* self = server.get();
  ASSIGN_OR_RETURN(server->server_, net::HttpServer::Start({.port = 0, .threads = 4},
                                                           [self](const net::ServerRequest& request,
                                                                  net::ResponseWriter& writer) {
                                                             self->Handle(request, writer);
                                                           }));
  return server;
}

std::string TestTokenServer::realm() const { return StrCat(server_->url(), "/token"); }

std::string TestTokenServer::RegistryAuthConfig() const {
  return StrCat("auth:\n  token:\n    realm: ", realm(), "\n    service: ", options_.service,
                "\n    issuer: ", options_.issuer, "\n    rootcertbundle: ", cert_path_, "\n");
}

absl::StatusOr<std::string> TestTokenServer::MintToken(
    std::string_view repo, const std::vector<std::string>& actions) const {
  nlohmann::json header = {{"typ", "JWT"}, {"alg", "RS256"}, {"x5c", {keys_->cert_der_base64}}};
  int64_t now = absl::ToUnixSeconds(absl::Now());
  static std::atomic<uint64_t> next_id{1};
  nlohmann::json access = nlohmann::json::array();
  if (!repo.empty() && !actions.empty()) {
    access.push_back({{"type", "repository"}, {"name", std::string(repo)}, {"actions", actions}});
  }
  nlohmann::json claims = {
      {"iss", options_.issuer},
      {"sub", options_.username.empty() ? "anonymous" : options_.username},
      {"aud", options_.service},
      {"exp", now + absl::ToInt64Seconds(options_.expires_in)},
      {"nbf", now - 10},
      {"iat", now},
      {"jti", StrCat("naiad-", next_id++)},
      {"access", access},
  };
  std::string signing_input = StrCat(Base64Url(header.dump()), ".", Base64Url(claims.dump()));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t sig_len = 0;
  std::string signature;
  bool ok = EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, keys_->key) == 1 &&
            EVP_DigestSign(ctx, nullptr, &sig_len,
                           reinterpret_cast<const unsigned char*>(signing_input.data()),
                           signing_input.size()) == 1;
  if (ok) {
    signature.resize(sig_len);
    ok = EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &sig_len,
                        reinterpret_cast<const unsigned char*>(signing_input.data()),
                        signing_input.size()) == 1;
    signature.resize(sig_len);
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) return absl::InternalError("signing the test token failed");
  return StrCat(signing_input, ".", Base64Url(signature));
}

void TestTokenServer::Handle(const net::ServerRequest& request, net::ResponseWriter& writer) {
  if (request.path != "/token") {
    writer.Respond(404, {}, "not found").IgnoreError();
    return;
  }
  std::map<std::string, std::string> params;
  if (request.method == "POST") {
    ++post_requests_;
    if (reject_post_) {
      writer.Respond(405, {}, "POST not supported").IgnoreError();
      return;
    }
    params = ParseForm(request.body);
  } else if (request.method == "GET") {
    ++get_requests_;
    params = ParseForm(request.query);
  } else {
    writer.Respond(405, {}, "").IgnoreError();
    return;
  }
  std::string user, password;
  bool has_credentials = false;
  if (params.count("username")) {
    user = params["username"];
    password = params["password"];
    has_credentials = true;
  } else if (std::optional<std::string> auth = request.headers.Get("Authorization");
             auth && auth->starts_with("Basic ")) {
    std::string decoded;
    if (absl::Base64Unescape(ToAbsl(std::string_view(*auth).substr(6)), &decoded)) {
      size_t colon = decoded.find(':');
      user = decoded.substr(0, colon);
      password = colon == std::string::npos ? "" : decoded.substr(colon + 1);
      has_credentials = true;
    }
  }
  bool authorized = options_.username.empty();
  if (has_credentials) {
    if (user != options_.username || password != options_.password) {
      writer.Respond(401, {}, R"({"details":"bad credentials"})").IgnoreError();
      return;
    }
    authorized = true;
  }
  if (params["service"] != options_.service) {
    writer.Respond(400, {}, R"({"details":"unknown service"})").IgnoreError();
    return;
  }
  // scope "repository:<name>:<actions,...>"
  std::string repo;
  std::vector<std::string> actions;
  std::string scope = params["scope"];
  if (scope.starts_with("repository:")) {
    size_t last = scope.rfind(':');
    repo = scope.substr(11, last - 11);
    std::string_view list = std::string_view(scope).substr(last + 1);
    while (!list.empty()) {
      size_t comma = list.find(',');
      actions.emplace_back(list.substr(0, comma));
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    }
  }
  if (!authorized) actions.clear();
  absl::StatusOr<std::string> token = MintToken(repo, actions);
  if (!token.ok()) {
    writer.Respond(500, {}, token.status().ToString()).IgnoreError();
    return;
  }
  ++tokens_issued_;
  nlohmann::json body = {{"expires_in", absl::ToInt64Seconds(options_.expires_in)}};
  body[options_.access_token_only ? "access_token" : "token"] = *token;
  net::HttpHeaders headers;
  headers.Set("Content-Type", "application/json").IgnoreError();
  writer.Respond(200, headers, body.dump()).IgnoreError();
}

}  // namespace naiad::registry
