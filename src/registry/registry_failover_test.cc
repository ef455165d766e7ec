// Integration tests of RegistryBackend's failure handling: faults injected by a FaultProxy in
// front of a real docker-registry, used as a mirror, as the origin and as a forward proxy.
#include <random>

#include "absl/strings/escaping.h"
#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry/registry_backend.h"
#include "registry/test_token_server.h"
#include "test/testing/fault_proxy.h"
#include "test/testing/registry_fixture.h"

namespace naiad::registry {
namespace {

using ::naiad::testing::Fault;
using ::naiad::testing::FaultKind;
using ::naiad::testing::FaultProxy;
using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::RegistryFixture;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kRepo[] = "library/naiad-failover";

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::string HostPort(const std::string& url) { return url.substr(std::string("http://").size()); }

storage::SourceMetrics MetricsOf(const RegistryBackend& backend, const std::string& source) {
  for (const storage::SourceMetrics& m : backend.Metrics()) {
    if (m.source == source) return m;
  }
  ADD_FAILURE() << "no metrics for " << source;
  return {};
}

// Polls `condition` for up to `timeout`.
template <typename F>
bool Eventually(F condition, absl::Duration timeout = absl::Seconds(10)) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return condition();
}

class RegistryFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFixture::Start());
    data_ = RandomBytes(512 << 10, 11);
    ASSERT_OK_AND_ASSIGN(Digest digest, registry_->PushBlob(kRepo, data_));
    id_ = digest.Hex();
    ASSERT_OK_AND_ASSIGN(mirror_, FaultProxy::Start({.upstream = registry_->url()}));
    config_.scheme = "http";
    config_.host = registry_->host_port();
    config_.repo = kRepo;
    config_.timeout = absl::Seconds(2);
    config_.connect_timeout = absl::Seconds(1);
    config_.retry_limit = 2;
  }

  storage::MirrorConfig MirrorFor(const FaultProxy& proxy) {
    storage::MirrorConfig mirror;
    mirror.host = proxy.url();
    mirror.headers["X-Dragonfly-Registry"] = registry_->url();
    mirror.health_check_interval = absl::Milliseconds(100);
    mirror.failure_limit = 2;
    return mirror;
  }

  absl::StatusOr<std::unique_ptr<RegistryBackend>> Backend() {
    return RegistryBackend::Create(config_, {.backoff_scale = 0.05, .image_pull_auth = ""});
  }

  // Reads [offset, offset+length) and checks the bytes; returns who served them.
  absl::StatusOr<std::string> ReadChecked(RegistryBackend& backend, uint64_t offset,
                                          uint64_t length, storage::BlobRange extra = {}) {
    extra.blob_id = id_;
    extra.offset = offset;
    extra.length = length;
    storage::BlobRead read;
    RETURN_IF_ERROR(backend.Read(extra, &read));
    if (read.data != data_.substr(offset, length)) {
      return absl::DataLossError(StrCat("bytes from ", read.source, " differ"));
    }
    return read.source;
  }

  std::unique_ptr<RegistryFixture> registry_;
  std::unique_ptr<FaultProxy> mirror_;
  std::string data_;
  std::string id_;
  storage::RegistryBackendConfig config_;
};

TEST_F(RegistryFailoverTest, MirrorServesWithHeadersAndNoCredentials) {
  config_.registry_token = "secret-token";  // the registry ignores it; the mirror must not see it
  config_.mirrors.push_back(MirrorFor(*mirror_));
  ASSERT_OK_AND_ASSIGN(auto backend, Backend());
  EXPECT_THAT(ReadChecked(*backend, 100, 5000), IsOkAndHolds(StrCat("mirror:", mirror_->url())));
  EXPECT_THAT(ReadChecked(*backend, 0, 10, {.priority = storage::ReadPriority::kPrefetch}),
              IsOkAndHolds(StrCat("mirror:", mirror_->url())));
  EXPECT_THAT(backend->BlobSize(id_), IsOkAndHolds(data_.size()));
  std::vector<testing::SeenRequest> seen = mirror_->requests();
  ASSERT_EQ(seen.size(), 3u);
  for (const auto& r : seen) {
    EXPECT_FALSE(r.headers.Has("Authorization")) << r.method << " " << r.target;
    EXPECT_EQ(r.headers.Get("X-Dragonfly-Registry"), registry_->url());
  }
  EXPECT_EQ(seen[0].headers.Get("X-Dragonfly-Priority"), "6");
  EXPECT_FALSE(seen[0].headers.Has("X-Dragonfly-Prefetch"));
  EXPECT_EQ(seen[1].headers.Get("X-Dragonfly-Priority"), "3");
  EXPECT_EQ(seen[1].headers.Get("X-Dragonfly-Prefetch"), "true");
  EXPECT_EQ(MetricsOf(*backend, "origin").requests, 0u);
}

TEST_F(RegistryFailoverTest, AuthThroughControlsCredentialsAtTheMirror) {
  // A token-protected registry behind the mirror.
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("naiad-token-"));
  ASSERT_OK_AND_ASSIGN(auto tokens,
                       TestTokenServer::Start({.username = "u", .password = "p"}, dir.path()));
  ASSERT_OK_AND_ASSIGN(std::string push, tokens->MintToken(kRepo, {"pull", "push"}));
  ASSERT_OK_AND_ASSIGN(auto registry,
                       RegistryFixture::Start({.extra_config = tokens->RegistryAuthConfig(),
                                               .authorization = StrCat("Bearer ", push)}));
  ASSERT_OK(registry->PushBlob(kRepo, data_).status());
  ASSERT_OK_AND_ASSIGN(auto mirror, FaultProxy::Start({.upstream = registry->url()}));
  config_.host = registry->host_port();
  config_.auth = absl::Base64Escape("u:p");
  config_.mirrors.push_back(MirrorFor(*mirror));

  // auth_through=false: the mirror gets a 401 it cannot answer; the origin serves, and no
  // request the mirror saw (nor any token request: those go to the realm) carried credentials.
  {
    ASSERT_OK_AND_ASSIGN(auto backend, Backend());
    EXPECT_THAT(ReadChecked(*backend, 0, 1000), IsOkAndHolds("origin"));
    EXPECT_THAT(ReadChecked(*backend, 1000, 1000), IsOkAndHolds("origin"));
    EXPECT_GE(mirror->requests_seen(), 2u);
    for (const auto& r : mirror->requests()) {
      EXPECT_FALSE(r.headers.Has("Authorization")) << r.target;
      EXPECT_THAT(r.target, HasSubstr("/v2/"));  // never a token request
    }
    EXPECT_TRUE(MetricsOf(*backend, StrCat("mirror:", mirror->url())).healthy);
  }
  // auth_through=true: the mirror carries our token and serves.
  mirror->ResetCounters();
  config_.mirrors[0].auth_through = true;
  ASSERT_OK_AND_ASSIGN(auto backend, Backend());
  EXPECT_THAT(ReadChecked(*backend, 0, 1000), IsOkAndHolds(StrCat("mirror:", mirror->url())));
  bool saw_bearer = false;
  for (const auto& r : mirror->requests()) {
    saw_bearer = saw_bearer || r.headers.Get("Authorization").value_or("").starts_with("Bearer ");
  }
  EXPECT_TRUE(saw_bearer);
}

TEST_F(RegistryFailoverTest, TransientFaultsWithinRetryLimitSucceed) {
  config_.mirrors.push_back(MirrorFor(*mirror_));
  config_.mirrors[0].failure_limit = 10;
  ASSERT_OK_AND_ASSIGN(auto backend, Backend());
  std::string mirror_name = StrCat("mirror:", mirror_->url());
  uint64_t applied = 0;
  for (FaultKind kind :
       {FaultKind::kStatus, FaultKind::kResetBeforeResponse, FaultKind::kResetMidBody}) {
    mirror_->SetFault({.kind = kind, .count = 2});  // retry_limit is 2: the third attempt works
    EXPECT_THAT(ReadChecked(*backend, 4096, 100000), IsOkAndHolds(mirror_name))
        << static_cast<int>(kind);
    applied += 2;
    EXPECT_EQ(mirror_->faults_applied(), applied);
  }
  EXPECT_EQ(MetricsOf(*backend, "origin").requests, 0u);
  EXPECT_EQ(MetricsOf(*backend, mirror_name).errors, 6u);
}

TEST_F(RegistryFailoverTest, OriginFaultsBeyondRetryLimitFailFast) {
  // The origin itself is behind the fault proxy.
  config_.host = HostPort(mirror_->url());
  ASSERT_OK_AND_ASSIGN(auto backend, Backend());
  mirror_->SetFault({.kind = FaultKind::kStatus, .status = 503});
  absl::Time start = absl::Now();
  EXPECT_THAT(ReadChecked(*backend, 0, 10),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("503")));
  EXPECT_EQ(mirror_->requests_seen(), 3u);  // 1 + retry_limit
  mirror_->ResetCounters();
  mirror_->SetFault({.kind = FaultKind::kResetBeforeResponse});
  EXPECT_THAT(ReadChecked(*backend, 0, 10),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("")));
  EXPECT_EQ(mirror_->requests_seen(), 3u);
  // Prefetch gives up after one retry.
  mirror_->ResetCounters();
  EXPECT_THAT(ReadChecked(*backend, 0, 10, {.priority = storage::ReadPriority::kPrefetch}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("")));
  EXPECT_EQ(mirror_->requests_seen(), 2u);
  // 404 is an answer, not retried.
  mirror_->ClearFault();
  mirror_->ResetCounters();
  storage::BlobRead read;
  EXPECT_THAT(backend->Read({.blob_id = std::string(64, 'f'), .offset = 0, .length = 1}, &read),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("")));
  EXPECT_EQ(mirror_->requests_seen(), 1u);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  mirror_->ClearFault();
  EXPECT_THAT(ReadChecked(*backend, 0, 10), IsOkAndHolds("origin"));
}

TEST_F(RegistryFailoverTest, StallIsDeadlineExceededWithinTimeout) {
  config_.host = HostPort(mirror_->url());
  config_.retry_limit = 0;
  config_.timeout = absl::Seconds(1);
  ASSERT_OK_AND_ASSIGN(auto backend, Backend());
  for (FaultKind kind : {FaultKind::kStallBeforeResponse, FaultKind::kStallMidBody}) {
    mirror_->SetFault({.kind = kind, .stall = absl::Seconds(20)});
    absl::Time start = absl::Now();
    EXPECT_THAT(ReadChecked(*backend, 0, 200000),
                StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("")));
    EXPECT_LT(absl::Now() - start, absl::Seconds(4)) << static_cast<int>(kind);
  }
}

TEST_F(RegistryFailoverTest, MirrorDownUsesOriginAndComesBackAfterPing) {
  config_.mirrors.push_back(MirrorFor(*mirror_));
  ASSERT_OK_AND_ASSIGN(auto backend, Backend());
  std::string mirror_name = StrCat("mirror:", mirror_->url());
  EXPECT_THAT(ReadChecked(*backend, 0, 1000), IsOkAndHolds(mirror_name));

  mirror_->SetFault({.kind = FaultKind::kResetBeforeResponse});
  mirror_->SetPingHealthy(false);
  // failure_limit 2: the second failed attempt marks it down, the origin serves.
  EXPECT_THAT(ReadChecked(*backend, 0, 1000), IsOkAndHolds("origin"));
  EXPECT_FALSE(MetricsOf(*backend, mirror_name).healthy);
  uint64_t seen = mirror_->requests_seen();
  EXPECT_THAT(ReadChecked(*backend, 1000, 1000), IsOkAndHolds("origin"));
  EXPECT_EQ(mirror_->requests_seen(), seen);  // skipped while down
  // The checker keeps pinging; a failing ping keeps it down.
  EXPECT_TRUE(Eventually([&] { return mirror_->pings_seen() >= 2; }));
  EXPECT_FALSE(MetricsOf(*backend, mirror_name).healthy);

  mirror_->ClearFault();
  mirror_->SetPingHealthy(true);
  EXPECT_TRUE(Eventually([&] { return MetricsOf(*backend, mirror_name).healthy; }));
  EXPECT_THAT(ReadChecked(*backend, 2000, 1000), IsOkAndHolds(mirror_name));
  storage::SourceMetrics origin = MetricsOf(*backend, "origin");
  storage::SourceMetrics mirror = MetricsOf(*backend, mirror_name);
  EXPECT_EQ(origin.requests, 2u);
  EXPECT_EQ(origin.bytes, 2000u);
  EXPECT_EQ(mirror.requests, 4u);  // ok, 2 failed, ok
  EXPECT_EQ(mirror.errors, 2u);
  EXPECT_EQ(mirror.bytes, 2000u);
}

TEST_F(RegistryFailoverTest, UnreachableMirrorFallsBackToOrigin) {
  auto dead = std::move(mirror_);
  std::string dead_url = dead->url();
  storage::MirrorConfig mirror = MirrorFor(*dead);
  dead.reset();  // nothing listens there now
  config_.mirrors.push_back(mirror);
  ASSERT_OK_AND_ASSIGN(auto backend, Backend());
  EXPECT_THAT(ReadChecked(*backend, 0, 1000), IsOkAndHolds("origin"));
  EXPECT_FALSE(MetricsOf(*backend, StrCat("mirror:", dead_url)).healthy);
}

TEST_F(RegistryFailoverTest, CorruptBytesReportedAndReadElsewhere) {
  config_.mirrors.push_back(MirrorFor(*mirror_));
  ASSERT_OK_AND_ASSIGN(auto backend, Backend());
  std::string mirror_name = StrCat("mirror:", mirror_->url());
  mirror_->SetFault({.kind = FaultKind::kCorruptBody, .method = "GET"});
  storage::BlobRead read;
  ASSERT_OK(backend->Read({.blob_id = id_, .offset = 0, .length = 10000}, &read));
  EXPECT_EQ(read.source, mirror_name);
  ASSERT_NE(read.data, data_.substr(0, 10000));  // the caller's digest check would catch this
  backend->ReportBadData(read.source);
  EXPECT_THAT(ReadChecked(*backend, 0, 10000, {.exclude_sources = {mirror_name}}),
              IsOkAndHolds("origin"));
  EXPECT_EQ(MetricsOf(*backend, mirror_name).bad_data, 1u);
  // A second bad report reaches failure_limit (2): the mirror is taken out.
  backend->ReportBadData(mirror_name);
  EXPECT_FALSE(MetricsOf(*backend, mirror_name).healthy);
  // Excluding the origin too leaves nothing.
  EXPECT_THAT(ReadChecked(*backend, 0, 10, {.exclude_sources = {mirror_name, "origin"}}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no usable source")));
}

TEST_F(RegistryFailoverTest, ForwardProxyWithHealthCheckAndFallback) {
  // The fault proxy doubles as an HTTP forward proxy (absolute request targets).
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start({}));
  config_.proxy.url = proxy->url();
  config_.proxy.ping_url = StrCat(proxy->url(), "/v2");
  config_.proxy.check_interval = absl::Milliseconds(100);
  ASSERT_OK_AND_ASSIGN(auto backend, Backend());
  EXPECT_THAT(ReadChecked(*backend, 0, 1000, {.priority = storage::ReadPriority::kPrefetch}),
              IsOkAndHolds("proxy"));
  std::vector<testing::SeenRequest> seen = proxy->requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, backend->BlobUrl(id_));  // forward-proxy form keeps the origin
  EXPECT_EQ(seen[0].headers.Get("X-Dragonfly-Priority"), "3");
  EXPECT_EQ(seen[0].headers.Get("X-Dragonfly-Prefetch"), "true");

  // A failing proxy request falls back to the origin.
  proxy->SetFault({.kind = FaultKind::kStatus, .status = 502});
  EXPECT_THAT(ReadChecked(*backend, 0, 1000), IsOkAndHolds("origin"));
  // Unhealthy per its ping: straight to the origin.
  proxy->SetPingHealthy(false);
  EXPECT_TRUE(Eventually([&] { return !MetricsOf(*backend, "proxy").healthy; }));
  proxy->ResetCounters();
  EXPECT_THAT(ReadChecked(*backend, 0, 1000), IsOkAndHolds("origin"));
  EXPECT_EQ(proxy->requests_seen(), 0u);

  // Without fallback an unhealthy proxy is an error naming it.
  config_.proxy.fallback = false;
  ASSERT_OK_AND_ASSIGN(auto strict, Backend());
  EXPECT_TRUE(Eventually([&] { return !MetricsOf(*strict, "proxy").healthy; }));
  EXPECT_THAT(ReadChecked(*strict, 0, 10),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(proxy->url())));
  proxy->ClearFault();
  proxy->SetPingHealthy(true);
  EXPECT_TRUE(Eventually([&] { return MetricsOf(*strict, "proxy").healthy; }));
  EXPECT_THAT(ReadChecked(*strict, 0, 10), IsOkAndHolds("proxy"));
}

}  // namespace
}  // namespace naiad::registry
