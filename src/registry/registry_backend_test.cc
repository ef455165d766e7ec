// Integration tests of RegistryBackend against a real docker-registry: ranged reads, errors,
// htpasswd and token authentication, redirects.
#include "registry/registry_backend.h"

#include <atomic>
#include <random>
#include <thread>

#include "absl/strings/escaping.h"
#include "base/file.h"
#include "base/simulated_clock.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/http_server.h"
#include "registry/test_token_server.h"
#include "test/testing/fault_proxy.h"
#include "test/testing/registry_fixture.h"

namespace naiad::registry {
namespace {

using ::naiad::testing::FaultKind;
using ::naiad::testing::FaultProxy;
using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::RegistryFixture;
using ::naiad::testing::RegistryOptions;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kRepo[] = "library/naiad-blob";

std::string RandomBytes(size_t n, uint64_t seed = 7) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

storage::RegistryBackendConfig ConfigFor(const RegistryFixture& registry) {
  storage::RegistryBackendConfig config;
  config.scheme = "http";
  config.host = registry.host_port();
  config.repo = kRepo;
  config.timeout = absl::Seconds(5);
  config.connect_timeout = absl::Seconds(2);
  return config;
}

// Fast retries for tests, and no IMAGE_PULL_AUTH from the environment.
RegistryBackendOptions TestOptions() { return {.backoff_scale = 0.05, .image_pull_auth = ""}; }

std::string Base64(std::string_view s) { return absl::Base64Escape(ToAbsl(s)); }

absl::StatusOr<std::string> ReadRange(RegistryBackend& backend, const std::string& id,
                                      uint64_t offset, uint64_t length) {
  storage::BlobRead read;
  RETURN_IF_ERROR(backend.Read({.blob_id = id, .offset = offset, .length = length}, &read));
  return read.data;
}

TEST(RegistryBackendTest, CreateRequiresHostAndRepo) {
  storage::RegistryBackendConfig config;
  config.repo = "a/b";
  EXPECT_THAT(
      RegistryBackend::Create(config).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("device.backend.config.host")));
  config.host = "localhost:5000";
  config.repo = "";
  EXPECT_THAT(
      RegistryBackend::Create(config).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("device.backend.config.repo")));
  config.repo = "a/b";
  config.mirrors.push_back({.host = "mirror:5000"});
  EXPECT_THAT(RegistryBackend::Create(config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mirrors[0].host")));
}

class RegistryBackendReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFixture::Start());
    data_ = RandomBytes(1 << 20);
    ASSERT_OK_AND_ASSIGN(Digest digest, registry_->PushBlob(kRepo, data_));
    id_ = digest.Hex();
  }

  std::unique_ptr<RegistryFixture> registry_;
  std::string data_;
  std::string id_;
};

TEST_F(RegistryBackendReadTest, SizeAndRangedReadsAreExact) {
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(ConfigFor(*registry_), TestOptions()));
  EXPECT_THAT(backend->BlobSize(id_), IsOkAndHolds(data_.size()));
  const uint64_t size = data_.size();
  struct Case {
    uint64_t offset, length;
  };
  for (Case c : std::vector<Case>{{0, 1},
                                  {0, 4096},
                                  {1, 4095},
                                  {12345, 100000},
                                  {size - 4096, 4096},
                                  {size - 1, 1},
                                  {0, size}}) {
    storage::BlobRead read;
    ASSERT_OK(backend->Read({.blob_id = id_, .offset = c.offset, .length = c.length}, &read));
    EXPECT_EQ(read.source, "origin");
    ASSERT_EQ(read.data.size(), c.length);
    EXPECT_TRUE(read.data == data_.substr(c.offset, c.length))
        << "bytes differ at offset " << c.offset;
  }
  std::vector<storage::SourceMetrics> metrics = backend->Metrics();
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(metrics[0].source, "origin");
  EXPECT_EQ(metrics[0].requests, 8u);  // one HEAD, seven GETs
  EXPECT_EQ(metrics[0].errors, 0u);
  EXPECT_EQ(metrics[0].bytes, 4096u + 4095 + 100000 + 4096 + 1 + 1 + size + 0);
}

TEST_F(RegistryBackendReadTest, MissingBlobIsNotFound) {
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(ConfigFor(*registry_), TestOptions()));
  std::string missing(64, 'a');
  EXPECT_THAT(backend->BlobSize(missing),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("sha256:" + missing)));
  storage::BlobRead read;
  EXPECT_THAT(backend->Read({.blob_id = missing, .offset = 0, .length = 10}, &read),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(kRepo)));
  // Past the end: the registry answers 416.
  EXPECT_THAT(backend->Read({.blob_id = id_, .offset = data_.size(), .length = 10}, &read),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("416")));
}

TEST_F(RegistryBackendReadTest, CancelledReadStops) {
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(ConfigFor(*registry_), TestOptions()));
  net::CancellationToken cancel;
  cancel.Cancel();
  storage::BlobRead read;
  EXPECT_THAT(backend->Read({.blob_id = id_, .offset = 0, .length = 10, .cancel = &cancel}, &read),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("")));
}

TEST_F(RegistryBackendReadTest, EmptySchemeFallsBackToHttpWithSkipVerify) {
  storage::RegistryBackendConfig config = ConfigFor(*registry_);
  config.scheme = "";
  // Without skip_verify there is no fallback: https to a plain-http registry fails.
  ASSERT_OK_AND_ASSIGN(auto strict, RegistryBackend::Create(config, TestOptions()));
  EXPECT_THAT(ReadRange(*strict, id_, 0, 10),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("https://")));
  config.skip_verify = true;
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(config, TestOptions()));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadRange(*backend, id_, 0, 10));
  EXPECT_EQ(got, data_.substr(0, 10));
  EXPECT_THAT(backend->BlobUrl(id_), ::testing::StartsWith("http://"));
}

// A server that ignores Range and answers 200 with `body`.
std::unique_ptr<net::HttpServer> FullBodyServer(const std::string& body) {
  return *net::HttpServer::Start({}, [body](const net::ServerRequest&, net::ResponseWriter& w) {
    w.Respond(200, {}, body).IgnoreError();
  });
}

TEST(RegistryBackendSliceTest, FullBodyAnswerToRangedRequestIsSliced) {
  std::string data = RandomBytes(300000);
  auto server = FullBodyServer(data);
  storage::RegistryBackendConfig config;
  config.scheme = "http";
  config.host = StrCat("127.0.0.1:", server->port());
  config.repo = kRepo;
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(config, TestOptions()));
  std::string id(64, 'b');
  ASSERT_OK_AND_ASSIGN(std::string got, ReadRange(*backend, id, 1000, 5000));
  EXPECT_TRUE(got == data.substr(1000, 5000));
  ASSERT_OK_AND_ASSIGN(got, ReadRange(*backend, id, data.size() - 7, 7));
  EXPECT_TRUE(got == data.substr(data.size() - 7));
  // A body that ends inside the range is DataLoss, never a short read.
  EXPECT_THAT(ReadRange(*backend, id, data.size() - 7, 8),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("ended before")));
}

// A 206 whose body is shorter than announced range (a lying server).
TEST(RegistryBackendSliceTest, WrongLengthPartialAnswerIsDataLoss) {
  auto server = *net::HttpServer::Start({}, [](const net::ServerRequest&, net::ResponseWriter& w) {
    net::HttpHeaders headers;
    headers.Set("Content-Range", "bytes 0-9/100").IgnoreError();
    w.Respond(206, headers, "short").IgnoreError();
  });
  storage::RegistryBackendConfig config;
  config.scheme = "http";
  config.host = StrCat("127.0.0.1:", server->port());
  config.repo = kRepo;
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(config, TestOptions()));
  EXPECT_THAT(ReadRange(*backend, std::string(64, 'c'), 0, 10),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("got 5 bytes")));
  EXPECT_THAT(ReadRange(*backend, std::string(64, 'c'), 5, 10),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("Content-Range")));
}

// ---- htpasswd ----

TEST(RegistryBackendAuthTest, HtpasswdBasicAuth) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("naiad-htpasswd-"));
  std::string htpasswd = dir.Join("htpasswd");
  ASSERT_OK(RunCommandOk({"htpasswd", "-Bbc", htpasswd, "alice", "s3cret"}).status());
  std::string basic = Base64("alice:s3cret");
  ASSERT_OK_AND_ASSIGN(
      auto registry,
      RegistryFixture::Start(
          {.extra_config =
               StrCat("auth:\n  htpasswd:\n    realm: naiad-test\n    path: ", htpasswd, "\n"),
           .authorization = StrCat("Basic ", basic)}));
  std::string data = RandomBytes(100000, 3);
  ASSERT_OK_AND_ASSIGN(Digest digest, registry->PushBlob(kRepo, data));

  storage::RegistryBackendConfig config = ConfigFor(*registry);
  config.auth = basic;
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(config, TestOptions()));
  EXPECT_THAT(backend->BlobSize(digest.Hex()), IsOkAndHolds(data.size()));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadRange(*backend, digest.Hex(), 10, 1000));
  EXPECT_TRUE(got == data.substr(10, 1000));

  // IMAGE_PULL_AUTH (here via the option that stands for it) overrides `auth`.
  config.auth = Base64("alice:wrong");
  RegistryBackendOptions options = TestOptions();
  options.image_pull_auth = basic;
  ASSERT_OK_AND_ASSIGN(backend, RegistryBackend::Create(config, options));
  EXPECT_OK(ReadRange(*backend, digest.Hex(), 0, 10).status());

  ASSERT_OK_AND_ASSIGN(backend, RegistryBackend::Create(config, TestOptions()));
  EXPECT_THAT(ReadRange(*backend, digest.Hex(), 0, 10),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("")));

  config.auth = "";
  ASSERT_OK_AND_ASSIGN(backend, RegistryBackend::Create(config, TestOptions()));
  EXPECT_THAT(ReadRange(*backend, digest.Hex(), 0, 10),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("no credentials")));
}

// ---- token auth ----

class RegistryBackendTokenTest : public ::testing::Test {
 protected:
  void StartWith(TestTokenServerOptions token_options) {
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-token-"));
    token_options.username = "bob";
    token_options.password = "hunter2";
    ASSERT_OK_AND_ASSIGN(tokens_, TestTokenServer::Start(token_options, dir_.path()));
    ASSERT_OK_AND_ASSIGN(std::string push, tokens_->MintToken(kRepo, {"pull", "push"}));
    ASSERT_OK_AND_ASSIGN(registry_,
                         RegistryFixture::Start({.extra_config = tokens_->RegistryAuthConfig(),
                                                 .authorization = StrCat("Bearer ", push)}));
    data_ = RandomBytes(200000, 5);
    ASSERT_OK_AND_ASSIGN(Digest digest, registry_->PushBlob(kRepo, data_));
    id_ = digest.Hex();
    config_ = ConfigFor(*registry_);
    config_.auth = Base64("bob:hunter2");
  }

  TempDir dir_;
  std::unique_ptr<TestTokenServer> tokens_;
  std::unique_ptr<RegistryFixture> registry_;
  std::string data_;
  std::string id_;
  storage::RegistryBackendConfig config_;
};

TEST_F(RegistryBackendTokenTest, BearerTokenViaPost) {
  StartWith({});
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(config_, TestOptions()));
  EXPECT_THAT(backend->BlobSize(id_), IsOkAndHolds(data_.size()));
  for (uint64_t offset : {0, 777, 199999}) {
    ASSERT_OK_AND_ASSIGN(std::string got, ReadRange(*backend, id_, offset, 1));
    EXPECT_EQ(got, data_.substr(offset, 1));
  }
  // One token, fetched by POST, serves every request.
  EXPECT_EQ(tokens_->post_requests(), 1u);
  EXPECT_EQ(tokens_->get_requests(), 0u);
  EXPECT_EQ(backend->token_requests(), 1u);
}

TEST_F(RegistryBackendTokenTest, GetFallbackWhenPostIsRejected) {
  StartWith({.reject_post = true, .access_token_only = true});
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(config_, TestOptions()));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadRange(*backend, id_, 100, 100));
  EXPECT_TRUE(got == data_.substr(100, 100));
  EXPECT_EQ(tokens_->post_requests(), 1u);
  EXPECT_EQ(tokens_->get_requests(), 1u);
}

TEST_F(RegistryBackendTokenTest, WrongOrMissingCredentials) {
  StartWith({});
  config_.auth = Base64("bob:wrong");
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(config_, TestOptions()));
  EXPECT_THAT(ReadRange(*backend, id_, 0, 10),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("token")));
  // Anonymous: a token without access, which the registry refuses.
  config_.auth = "";
  ASSERT_OK_AND_ASSIGN(backend, RegistryBackend::Create(config_, TestOptions()));
  EXPECT_THAT(ReadRange(*backend, id_, 0, 10),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("after authenticating")));
}

TEST_F(RegistryBackendTokenTest, ExpiryTriggersRefresh) {
  StartWith({.expires_in = absl::Seconds(120)});
  SimulatedClock clock(absl::Now());
  clock.SetAutoAdvance(true);
  RegistryBackendOptions options = TestOptions();
  options.clock = &clock;
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(config_, options));
  ASSERT_OK(ReadRange(*backend, id_, 0, 10).status());
  EXPECT_EQ(tokens_->tokens_issued(), 1u);
  clock.Advance(absl::Seconds(60));
  ASSERT_OK(ReadRange(*backend, id_, 0, 10).status());
  EXPECT_EQ(tokens_->tokens_issued(), 1u);
  clock.Advance(absl::Seconds(45));  // 15 s before expiry: inside the refresh margin
  ASSERT_OK(ReadRange(*backend, id_, 0, 10).status());
  EXPECT_EQ(tokens_->tokens_issued(), 2u);
}

TEST_F(RegistryBackendTokenTest, ConcurrentReadsFetchOneToken) {
  StartWith({});
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(config_, TestOptions()));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<std::string> got = ReadRange(*backend, id_, i * 1000, 1000);
      if (got.ok() && *got == data_.substr(i * 1000, 1000)) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 8);
  EXPECT_EQ(tokens_->tokens_issued(), 1u);
}

TEST_F(RegistryBackendTokenTest, RejectedTokenIsReplaced) {
  StartWith({});
  config_.registry_token = "not-a-valid-jwt";
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(config_, TestOptions()));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadRange(*backend, id_, 0, 10));
  EXPECT_EQ(got, data_.substr(0, 10));
  EXPECT_EQ(tokens_->tokens_issued(), 1u);
}

// ---- redirects ----

TEST(RegistryBackendRedirectTest, FollowedCachedAndDroppedOn403) {
  ASSERT_OK_AND_ASSIGN(auto registry, RegistryFixture::Start());
  std::string data = RandomBytes(50000, 9);
  ASSERT_OK_AND_ASSIGN(Digest digest, registry->PushBlob(kRepo, data));
  // Blob storage: the registry behind a fault proxy that records requests.
  ASSERT_OK_AND_ASSIGN(auto storage, FaultProxy::Start({.upstream = registry->url()}));
  std::atomic<int> redirects{0};
  std::atomic<int> authorized{0};
  std::string storage_url = storage->url();
  ASSERT_OK_AND_ASSIGN(
      auto redirector,
      net::HttpServer::Start({}, [&](const net::ServerRequest& r, net::ResponseWriter& w) {
        ++redirects;
        if (r.headers.Get("Authorization") == "Bearer static-token") ++authorized;
        net::HttpHeaders headers;
        // A relative scheme-less host rewrite is exercised via blob_redirected_host below.
        headers.Set("Location", StrCat("http://storage.invalid", r.path, "?signature=abc"))
            .IgnoreError();
        w.Respond(307, headers, "").IgnoreError();
      }));
  storage::RegistryBackendConfig config;
  config.scheme = "http";
  config.host = StrCat("127.0.0.1:", redirector->port());
  config.repo = kRepo;
  config.registry_token = "static-token";
  config.blob_redirected_host = storage_url.substr(std::string("http://").size());
  ASSERT_OK_AND_ASSIGN(auto backend, RegistryBackend::Create(config, TestOptions()));

  ASSERT_OK_AND_ASSIGN(std::string got, ReadRange(*backend, digest.Hex(), 5, 500));
  EXPECT_TRUE(got == data.substr(5, 500));
  EXPECT_EQ(redirects, 1);
  EXPECT_EQ(authorized, 1);
  // Cached: straight to storage.
  ASSERT_OK_AND_ASSIGN(got, ReadRange(*backend, digest.Hex(), 49000, 1000));
  EXPECT_TRUE(got == data.substr(49000, 1000));
  EXPECT_EQ(redirects, 1);
  EXPECT_EQ(storage->requests_seen(), 2u);
  // Expired signature: dropped, and the registry asked again.
  storage->SetFault({.kind = FaultKind::kStatus, .status = 403, .count = 1});
  ASSERT_OK_AND_ASSIGN(got, ReadRange(*backend, digest.Hex(), 0, 100));
  EXPECT_TRUE(got == data.substr(0, 100));
  EXPECT_EQ(redirects, 2);
  EXPECT_EQ(storage->requests_seen(), 4u);
  // Blob storage never saw our credentials, and kept the query string.
  for (const auto& request : storage->requests()) {
    EXPECT_FALSE(request.headers.Has("Authorization")) << request.target;
    EXPECT_THAT(request.target, HasSubstr("?signature=abc"));
  }
}

}  // namespace
}  // namespace naiad::registry
