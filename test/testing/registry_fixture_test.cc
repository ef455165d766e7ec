#include "test/testing/registry_fixture.h"

#include <random>

#include "base/digest.h"
#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/http_client.h"
#include "test/testing/netns_cluster.h"
#include "test/testing/test_env.h"

namespace naiad::testing {
namespace {

using ::testing::HasSubstr;
using Traffic = RegistryFixture::Traffic;

constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data(size, '\0');
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t v = rng();
    std::memcpy(&data[i], &v, 8);
  }
  return data;
}

class RegistryFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NAIAD_SKIP_UNLESS_ROOT();
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFixture::Start());
  }

  std::unique_ptr<RegistryFixture> registry_;
  net::HttpClient client_;
};

TEST_F(RegistryFixtureTest, AnswersV2) {
  ASSERT_OK_AND_ASSIGN(net::HttpResponse r, client_.Get(registry_->url() + "/v2/"));
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.headers.Get("Docker-Distribution-Api-Version"),
              ::testing::Optional(std::string("registry/2.0")));
  EXPECT_THAT(registry_->url(), HasSubstr("http://127.0.0.1:"));
}

TEST_F(RegistryFixtureTest, LargeBlobRoundTripsAndRangeReadsAreCounted) {
  const std::string data = RandomBytes(64 << 20, 1);
  ASSERT_OK_AND_ASSIGN(TempDir dir, CreateOwnedTempDir("naiad-registry-test-"));
  ASSERT_OK(WriteFileAtomically(dir.Join("blob"), data));
  ASSERT_OK_AND_ASSIGN(Digest digest, registry_->PushBlobFile("test/big", dir.Join("blob")));
  EXPECT_EQ(digest, Digest::Of(DigestAlgorithm::kSha256, data));

  ASSERT_OK(registry_->ResetCounters());
  ASSERT_OK_AND_ASSIGN(net::HttpResponse whole,
                       client_.Get(registry_->BlobUrl("test/big", digest)));
  ASSERT_EQ(whole.status, 200);
  EXPECT_EQ(Digest::Of(DigestAlgorithm::kSha256, whole.body), digest);
  EXPECT_THAT(registry_->BytesServed(), IsOkAndHolds(data.size()));
  EXPECT_THAT(registry_->BytesServed(Traffic::kBlobGets), IsOkAndHolds(data.size()));

  ASSERT_OK(registry_->ResetCounters());
  constexpr uint64_t kOffset = 10'000'000, kLength = 1'048'577;
  ASSERT_OK_AND_ASSIGN(net::HttpResponse part,
                       client_.Send({.url = registry_->BlobUrl("test/big", digest),
                                     .range = net::ByteRange{kOffset, kLength}}));
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.body, data.substr(kOffset, kLength));
  EXPECT_THAT(
      part.headers.Get("Content-Range"),
      ::testing::Optional(StrCat("bytes ", kOffset, "-", kOffset + kLength - 1, "/", data.size())));
  EXPECT_THAT(registry_->BytesServed(Traffic::kBlobGets), IsOkAndHolds(kLength));
  EXPECT_THAT(registry_->RequestCount(), IsOkAndHolds(1u));
}

TEST_F(RegistryFixtureTest, PushBlobFromMemory) {
  ASSERT_OK_AND_ASSIGN(Digest digest, registry_->PushBlob("test/small", "hello"));
  ASSERT_OK_AND_ASSIGN(net::HttpResponse r, client_.Get(registry_->BlobUrl("test/small", digest)));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello");
}

TEST_F(RegistryFixtureTest, ManifestPushAndGetByTag) {
  ASSERT_OK_AND_ASSIGN(Digest config, registry_->PushBlob("test/app", "{}"));
  ASSERT_OK_AND_ASSIGN(Digest layer, registry_->PushBlob("test/app", "layer bytes"));
  std::string manifest =
      StrCat(R"({"schemaVersion":2,"mediaType":")", kOciManifest, R"(","config":{"mediaType":)",
             R"("application/vnd.oci.image.config.v1+json","digest":")", config.ToString(),
             R"(","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar",)",
             R"("digest":")", layer.ToString(), R"(","size":11}]})");
  ASSERT_OK_AND_ASSIGN(Digest digest,
                       registry_->PushManifest("test/app", "v1", manifest, kOciManifest));
  EXPECT_EQ(digest, Digest::Of(DigestAlgorithm::kSha256, manifest));

  net::HttpHeaders accept;
  ASSERT_OK(accept.Set("Accept", kOciManifest));
  ASSERT_OK_AND_ASSIGN(net::HttpResponse r,
                       client_.Get(registry_->ManifestUrl("test/app", "v1"), accept));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, manifest);
  EXPECT_THAT(r.headers.Get("Docker-Content-Digest"), ::testing::Optional(digest.ToString()));
}

TEST_F(RegistryFixtureTest, StopsOnDestruction) {
  std::string url = registry_->url() + "/v2/";
  registry_.reset();
  auto r = client_.Get(url);
  EXPECT_FALSE(r.ok() && r->status == 200);
}

TEST(RegistryFixtureStandalone, TwoRegistriesGetDistinctPorts) {
  NAIAD_SKIP_UNLESS_ROOT();
  ASSERT_OK_AND_ASSIGN(auto a, RegistryFixture::Start());
  ASSERT_OK_AND_ASSIGN(auto b, RegistryFixture::Start());
  EXPECT_NE(a->port(), b->port());
}

TEST(RegistryFixtureStandalone, ReportsAPortInUseWhenItWasGiven) {
  NAIAD_SKIP_UNLESS_ROOT();
  ASSERT_OK_AND_ASSIGN(auto a, RegistryFixture::Start());
  EXPECT_THAT(RegistryFixture::Start({.port = a->port(), .startup_timeout = absl::Seconds(10)}),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("in use")));
}

TEST(RegistryFixtureStandalone, RunsInsideANetworkNamespace) {
  NAIAD_SKIP_UNLESS_ROOT();
  ASSERT_OK_AND_ASSIGN(auto cluster, NetnsCluster::Create(2));
  ASSERT_OK_AND_ASSIGN(auto registry,
                       RegistryFixture::Start(
                           {.address = cluster->Address(0), .netns_path = cluster->NetnsPath(0)}));
  ASSERT_OK_AND_ASSIGN(Digest digest, registry->PushBlob("test/ns", "inside"));
  // Reachable from another host of the cluster, and counted.
  ASSERT_OK(registry->ResetCounters());
  ASSERT_OK_AND_ASSIGN(
      std::string body,
      cluster->ExecOk(1, {"curl", "-sS", "--fail", registry->BlobUrl("test/ns", digest)}));
  EXPECT_EQ(body, "inside");
  EXPECT_THAT(registry->BytesServed(Traffic::kBlobGets), IsOkAndHolds(6u));
}

}  // namespace
}  // namespace naiad::testing
