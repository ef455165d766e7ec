#include "registry/registry_auth.h"

#include <atomic>
#include <thread>
#include <vector>

#include "base/simulated_clock.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::registry {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ParseAuthChallengeTest, Bearer) {
  ASSERT_OK_AND_ASSIGN(
      AuthChallenge c,
      ParseAuthChallenge(
          R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/python:pull")"));
  EXPECT_EQ(c.scheme, AuthChallenge::Scheme::kBearer);
  EXPECT_EQ(c.Param("realm"), "https://auth.docker.io/token");
  EXPECT_EQ(c.Param("service"), "registry.docker.io");
  EXPECT_EQ(c.Param("scope"), "repository:library/python:pull");
}

TEST(ParseAuthChallengeTest, CaseSpacingTokensAndEscapes) {
  ASSERT_OK_AND_ASSIGN(AuthChallenge c,
                       ParseAuthChallenge(R"(  bearer  Service = reg , REALM="http://a/t\"x" ,)"
                                          R"(scope=repo:a:pull,push)"));
  EXPECT_EQ(c.scheme, AuthChallenge::Scheme::kBearer);
  EXPECT_EQ(c.Param("service"), "reg");
  EXPECT_EQ(c.Param("realm"), "http://a/t\"x");
  // An unquoted value ends at the next comma.
  EXPECT_EQ(c.Param("scope"), "repo:a:pull");
}

TEST(ParseAuthChallengeTest, Basic) {
  ASSERT_OK_AND_ASSIGN(AuthChallenge c, ParseAuthChallenge(R"(Basic realm="harbor")"));
  EXPECT_EQ(c.scheme, AuthChallenge::Scheme::kBasic);
  EXPECT_EQ(c.Param("realm"), "harbor");
  ASSERT_OK_AND_ASSIGN(c, ParseAuthChallenge("Basic"));
  EXPECT_TRUE(c.params.empty());
}

TEST(ParseAuthChallengeTest, Errors) {
  EXPECT_THAT(ParseAuthChallenge(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("")));
  EXPECT_THAT(ParseAuthChallenge(R"(Negotiate abc)"),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("Negotiate")));
  EXPECT_THAT(ParseAuthChallenge(R"(Bearer realm="x")"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("service")));
  EXPECT_THAT(ParseAuthChallenge(R"(Bearer realm="x,service=y)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unterminated")));
  EXPECT_THAT(ParseAuthChallenge(R"(Bearer realm)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without realm")));
  EXPECT_THAT(ParseAuthChallenge(R"(Bearer =x)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed")));
}

TEST(ParseTokenResponseTest, TokenAccessTokenAndExpiry) {
  ASSERT_OK_AND_ASSIGN(TokenResponse t, ParseTokenResponse(R"({"token":"a","expires_in":30})"));
  EXPECT_EQ(t.token, "a");
  EXPECT_EQ(t.expires_in, absl::Seconds(30));
  ASSERT_OK_AND_ASSIGN(t, ParseTokenResponse(R"({"access_token":"b"})"));
  EXPECT_EQ(t.token, "b");
  EXPECT_EQ(t.expires_in, absl::Seconds(600));
  ASSERT_OK_AND_ASSIGN(t, ParseTokenResponse(R"({"token":"","access_token":"c","expires_in":0})"));
  EXPECT_EQ(t.token, "c");
  EXPECT_EQ(t.expires_in, absl::Seconds(600));
  EXPECT_THAT(ParseTokenResponse("{}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("")));
  EXPECT_THAT(ParseTokenResponse("not json"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON")));
}

AuthChallenge BearerChallenge() {
  return *ParseAuthChallenge(
      R"(Bearer realm="http://auth.test/token",service="reg",scope="repository:a/b:pull")");
}

// A fake token endpoint: counts requests and answers with numbered tokens.
struct FakeRealm {
  std::atomic<int> posts{0};
  std::atomic<int> gets{0};
  bool reject_post = false;
  int expires_in = 300;
  absl::Duration delay = absl::ZeroDuration();
  std::vector<net::HttpRequest> seen;
  absl::Mutex mu;

  RegistryAuth::Fetcher Fetcher() {
    return [this](const net::HttpRequest& r) -> absl::StatusOr<net::HttpResponse> {
      {
        absl::MutexLock lock(&mu);
        seen.push_back(r);
      }
      absl::SleepFor(delay);
      int n;
      if (r.method == "POST") {
        n = ++posts;
        if (reject_post) return net::HttpResponse{.status = 405};
      } else {
        n = ++gets;
      }
      return net::HttpResponse{
          .status = 200,
          .body = StrCat(R"({"token":"t)", r.method, n, R"(","expires_in":)", expires_in, "}")};
    };
  }
};

TEST(RegistryAuthTest, BasicChallengeUsesConfiguredAuth) {
  FakeRealm realm;
  RegistryAuth auth({.auth = "dTpw"}, realm.Fetcher());
  EXPECT_EQ(auth.CurrentHeader(), std::nullopt);
  AuthChallenge basic = *ParseAuthChallenge("Basic realm=x");
  EXPECT_THAT(auth.Authorize(basic, ""), IsOkAndHolds(std::string("Basic dTpw")));
  EXPECT_EQ(auth.CurrentHeader(), "Basic dTpw");
  // The registry refused exactly those credentials.
  EXPECT_THAT(auth.Authorize(basic, "Basic dTpw"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("rejected")));
  RegistryAuth anonymous({}, realm.Fetcher());
  EXPECT_THAT(anonymous.Authorize(basic, ""),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("IMAGE_PULL_AUTH")));
}

TEST(RegistryAuthTest, BearerPostsFormWithCredentials) {
  FakeRealm realm;
  RegistryAuth auth({.auth = "dTpw"}, realm.Fetcher());  // base64("u:p")
  EXPECT_THAT(auth.Authorize(BearerChallenge(), ""), IsOkAndHolds(std::string("Bearer tPOST1")));
  ASSERT_EQ(realm.seen.size(), 1u);
  const net::HttpRequest& post = realm.seen[0];
  EXPECT_EQ(post.method, "POST");
  EXPECT_EQ(post.url, "http://auth.test/token");
  EXPECT_THAT(post.body, HasSubstr("grant_type=password"));
  EXPECT_THAT(post.body, HasSubstr("username=u&password=p"));
  EXPECT_THAT(post.body, HasSubstr("service=reg&scope=repository%3Aa%2Fb%3Apull"));
  EXPECT_THAT(post.body, HasSubstr("client_id=naiad-registry-client"));
  EXPECT_EQ(post.headers.Get("Authorization"), "Basic dTpw");
  EXPECT_EQ(auth.CurrentHeader(), "Bearer tPOST1");
}

TEST(RegistryAuthTest, FallsBackToGetAndRemembersIt) {
  FakeRealm realm;
  realm.reject_post = true;
  RegistryAuth auth({}, realm.Fetcher());
  EXPECT_THAT(auth.Authorize(BearerChallenge(), ""), IsOkAndHolds(std::string("Bearer tGET1")));
  EXPECT_EQ(realm.seen.back().url,
            "http://auth.test/token?service=reg&scope=repository%3Aa%2Fb%3Apull&client_id=naiad-"
            "registry-client");
  EXPECT_FALSE(realm.seen.back().headers.Has("Authorization"));
  // The registry refused the token: a fresh fetch goes straight to GET.
  EXPECT_THAT(auth.Authorize(BearerChallenge(), "Bearer tGET1"),
              IsOkAndHolds(std::string("Bearer tGET2")));
  EXPECT_EQ(realm.posts, 1);
  EXPECT_EQ(realm.gets, 2);
}

TEST(RegistryAuthTest, ConcurrentChallengesFetchOneToken) {
  FakeRealm realm;
  realm.delay = absl::Milliseconds(100);
  RegistryAuth auth({}, realm.Fetcher());
  std::vector<std::thread> threads;
  std::vector<std::string> headers(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] { headers[i] = auth.Authorize(BearerChallenge(), "").value(); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(auth.token_requests(), 1u);
  for (const std::string& h : headers) EXPECT_EQ(h, "Bearer tPOST1");
}

TEST(RegistryAuthTest, RefreshesBeforeExpiry) {
  FakeRealm realm;
  realm.expires_in = 300;
  SimulatedClock clock;
  RegistryAuth auth({.clock = &clock}, realm.Fetcher());
  ASSERT_OK(auth.Authorize(BearerChallenge(), "").status());
  clock.Advance(absl::Seconds(200));
  EXPECT_EQ(auth.CurrentHeader(), "Bearer tPOST1");
  EXPECT_EQ(auth.token_requests(), 1u);
  // Within 20 s of expiry (the margin is 20 s + up to 30 s of jitter): refreshed.
  clock.Advance(absl::Seconds(85));
  EXPECT_EQ(auth.CurrentHeader(), "Bearer tPOST2");
  EXPECT_EQ(auth.token_requests(), 2u);
}

TEST(RegistryAuthTest, FailedRefreshKeepsTokenUntilExpiry) {
  FakeRealm realm;
  SimulatedClock clock;
  bool fail = false;
  auto fetcher = realm.Fetcher();
  RegistryAuth auth({.clock = &clock},
                    [&](const net::HttpRequest& r) -> absl::StatusOr<net::HttpResponse> {
                      if (fail) return absl::UnavailableError("realm down");
                      return fetcher(r);
                    });
  ASSERT_OK(auth.Authorize(BearerChallenge(), "").status());
  fail = true;
  clock.Advance(absl::Seconds(290));
  EXPECT_EQ(auth.CurrentHeader(), "Bearer tPOST1");
  clock.Advance(absl::Seconds(20));
  EXPECT_EQ(auth.CurrentHeader(), std::nullopt);
}

TEST(RegistryAuthTest, StaticTokenIsSentFirst) {
  FakeRealm realm;
  RegistryAuth auth({.registry_token = "static"}, realm.Fetcher());
  EXPECT_EQ(auth.CurrentHeader(), "Bearer static");
  // Refused: the challenge flow takes over.
  EXPECT_THAT(auth.Authorize(BearerChallenge(), "Bearer static"),
              IsOkAndHolds(std::string("Bearer tPOST1")));
}

}  // namespace
}  // namespace naiad::registry
