// `naiad peer` as a registry mirror: blobs through the piece store (fetched from the registry
// once), ranges, direct relay of everything else, bad input, restarts, and `naiad fs` reading an
// image through it with the seed's mirror settings.
#include <filesystem>
#include <random>
#include <thread>

#include "base/digest.h"
#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/http_client.h"
#include "peer/peer.h"
#include "rafs/builder.h"
#include "rafs/entry_source.h"
#include "rafs/tree_snapshot.h"
#include "test/testing/fs_mount.h"
#include "test/testing/registry_fixture.h"
#include "test/testing/test_env.h"

namespace naiad::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

constexpr char kRepo[] = "test/peer";

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937_64 random(seed);
  std::string data(size, '\0');
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t v = random();
    std::memcpy(data.data() + i, &v, 8);
  }
  return data;
}

class PeerProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NAIAD_SKIP_UNLESS_ROOT();
    ASSERT_OK_AND_ASSIGN(dir_, CreateOwnedTempDir("naiad-peer-test-"));
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFixture::Start());
    blob_ = RandomBytes((5 << 20) + 12345, 7);
    ASSERT_OK_AND_ASSIGN(digest_, registry_->PushBlob(kRepo, blob_));
    StartPeer();
  }

  void StartPeer(bool prefetch = true) {
    std::string yaml = R"(
proxy:
  defaultFilter: 'Expires&Signature&ns'
  security:
    insecure: true
  tcpListen:
    listen: 127.0.0.1
    port: 0
  registryMirror:
    dynamic: true
    url: https://index.docker.io
  proxies:
  - regx: blobs/sha256.*
health:
  tcpListen:
    listen: 127.0.0.1
    port: 0
download:
  prefetch: true
)";
    if (!prefetch) yaml.replace(yaml.find("prefetch: true"), 14, "prefetch: false");
    ASSERT_OK_AND_ASSIGN(peer::PeerConfig config, peer::ParsePeerConfig(yaml));
    config.data_dir = dir_.Join("peer");
    ASSERT_OK_AND_ASSIGN(peer_, peer::Peer::Start(config));
  }

  std::string ProxyUrl() const { return StrCat("http://127.0.0.1:", peer_->proxy_port()); }
  std::string BlobPath() const { return StrCat("/v2/", kRepo, "/blobs/", digest_.ToString()); }

  absl::StatusOr<net::HttpResponse> Get(const std::string& target,
                                        std::optional<net::ByteRange> range = std::nullopt,
                                        bool mirror_header = true) {
    net::HttpRequest request{.url = ProxyUrl() + target, .range = range};
    if (mirror_header) {
      RETURN_IF_ERROR(request.headers.Add("X-Dragonfly-Registry", registry_->url()));
    }
    return client_.Send(request);
  }

  uint64_t RegistryBlobBytes() {
    absl::StatusOr<uint64_t> bytes = registry_->BytesServed(RegistryFixture::Traffic::kBlobGets);
    EXPECT_OK(bytes.status());
    return bytes.ok() ? *bytes : 0;
  }

  TempDir dir_;
  std::unique_ptr<RegistryFixture> registry_;
  std::string blob_;
  Digest digest_;
  std::unique_ptr<peer::Peer> peer_;
  net::HttpClient client_;
};

TEST_F(PeerProxyTest, BlobComesFromTheRegistryOnce) {
  ASSERT_OK(registry_->ResetCounters());
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(net::HttpResponse response, Get(BlobPath()));
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(Digest::Of(DigestAlgorithm::kSha256, response.body), digest_);
    EXPECT_THAT(response.headers.Get("X-Dragonfly-Task-ID"), ::testing::Optional(digest_.Hex()));
  }
  EXPECT_LE(RegistryBlobBytes(), blob_.size());
  EXPECT_GE(RegistryBlobBytes(), blob_.size());
  EXPECT_THAT(peer_->MetricsText(), HasSubstr("naiad_peer_task_hits_total 2"));
}

TEST_F(PeerProxyTest, RangesFromSeveralClientsGet206AndTheRightBytes) {
  ASSERT_OK(registry_->ResetCounters());
  std::vector<std::thread> clients;
  std::atomic<int> good{0};
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 random(c);
      net::HttpClient client;
      for (int i = 0; i < 6; ++i) {
        uint64_t length = 1 << 20;
        uint64_t offset = random() % (blob_.size() - length);
        net::HttpRequest request{.url = ProxyUrl() + BlobPath(),
                                 .range = net::ByteRange{offset, length}};
        request.headers.Add("X-Dragonfly-Registry", registry_->url()).IgnoreError();
        absl::StatusOr<net::HttpResponse> response = client.Send(request);
        if (response.ok() && response->status == 206 &&
            response->body == blob_.substr(offset, length) &&
            response->headers.Get("Content-Range") ==
                net::ByteRange{offset, length}.ToContentRange(blob_.size())) {
          ++good;
        }
      }
    });
  }
  for (std::thread& client : clients) client.join();
  EXPECT_EQ(good.load(), 24);
  EXPECT_LE(RegistryBlobBytes(), blob_.size());
}

// download.prefetch: a ranged request fetches the rest of the blob in the background, every piece.
TEST_F(PeerProxyTest, ARangedRequestPrefetchesTheWholeBlob) {
  ASSERT_OK(registry_->ResetCounters());
  ASSERT_OK_AND_ASSIGN(net::HttpResponse response, Get(BlobPath(), net::ByteRange{0, 4096}));
  ASSERT_EQ(response.status, 206);
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (RegistryBlobBytes() < blob_.size() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(RegistryBlobBytes(), blob_.size());
  ASSERT_OK(registry_->ResetCounters());
  ASSERT_OK_AND_ASSIGN(response, Get(BlobPath()));
  EXPECT_EQ(Digest::Of(DigestAlgorithm::kSha256, response.body), digest_);
  EXPECT_EQ(RegistryBlobBytes(), 0u);
}

TEST_F(PeerProxyTest, EverythingElseIsRelayedDirectly) {
  std::string manifest =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
      digest_.ToString() + R"(","size":)" + std::to_string(blob_.size()) + R"(},"layers":[]})";
  ASSERT_OK(
      registry_->PushManifest(kRepo, "v1", manifest, "application/vnd.oci.image.manifest.v1+json")
          .status());
  net::HttpRequest request{.url = ProxyUrl() + StrCat("/v2/", kRepo, "/manifests/v1")};
  ASSERT_OK(request.headers.Add("X-Dragonfly-Registry", registry_->url()));
  ASSERT_OK(request.headers.Add("Accept", "application/vnd.oci.image.manifest.v1+json"));
  ASSERT_OK_AND_ASSIGN(net::HttpResponse response, client_.Send(request));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, manifest);
  EXPECT_THAT(peer_->MetricsText(), HasSubstr("naiad_peer_direct_requests_total 1"));
  ASSERT_OK_AND_ASSIGN(response, Get(StrCat("/v2/", kRepo, "/manifests/missing")));
  EXPECT_EQ(response.status, 404);
}

TEST_F(PeerProxyTest, BadRequestsGetClearErrors) {
  ASSERT_OK_AND_ASSIGN(net::HttpResponse response,
                       Get(BlobPath(), net::ByteRange{blob_.size() + 10, 5}));
  EXPECT_EQ(response.status, 416);
  // A registry that does not have the blob: its 404 is passed on.
  ASSERT_OK_AND_ASSIGN(response,
                       Get(StrCat("/v2/", kRepo, "/blobs/sha256:", std::string(64, 'a'))));
  EXPECT_EQ(response.status, 404);
  // Relaying to a host the config does not name.
  net::HttpClient via_proxy({.proxy = ProxyUrl()});
  ASSERT_OK_AND_ASSIGN(response, via_proxy.Get("http://127.0.0.1:9/secret"));
  EXPECT_EQ(response.status, 403);
  // A mirror header that is not a URL.
  net::HttpRequest bad{.url = ProxyUrl() + BlobPath()};
  ASSERT_OK(bad.headers.Add("X-Dragonfly-Registry", "file:///etc"));
  ASSERT_OK_AND_ASSIGN(response, client_.Send(bad));
  EXPECT_EQ(response.status, 400);
  // CONNECT tunnels are not offered.
  ASSERT_OK_AND_ASSIGN(RunResult tunnel,
                       RunCommand({"curl", "-sS", "-p", "-x", ProxyUrl(), "https://127.0.0.1:1/"},
                                  {.timeout = absl::Seconds(20)}));
  EXPECT_NE(tunnel.exit_code, 0);
  EXPECT_THAT(tunnel.output, HasSubstr("405"));
  // The peer is still healthy after all that.
  net::HttpClient health;
  ASSERT_OK_AND_ASSIGN(
      response, health.Get(StrCat("http://127.0.0.1:", peer_->health_port(), "/server/ping")));
  EXPECT_EQ(response.status, 200);
}

// The origin refusing a range of a task the peer already has (here: the blob was deleted) fails
// the task at once, and the client gets the origin's own answer, not a 502.
TEST_F(PeerProxyTest, AnOriginRefusalReachesTheClientAsTheOriginSaidIt) {
  peer_.reset();
  StartPeer(/*prefetch=*/false);
  ASSERT_OK_AND_ASSIGN(net::HttpResponse first, Get(BlobPath(), net::ByteRange{0, 1000}));
  ASSERT_EQ(first.status, 206);
  ASSERT_OK_AND_ASSIGN(net::HttpResponse deleted,
                       client_.Send({.method = "DELETE", .url = registry_->url() + BlobPath()}));
  ASSERT_EQ(deleted.status, 202) << deleted.body;
  ASSERT_OK_AND_ASSIGN(net::HttpResponse refused, Get(BlobPath(), net::ByteRange{4 << 20, 1000}));
  EXPECT_EQ(refused.status, 404) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("BLOB_UNKNOWN"));
}

TEST_F(PeerProxyTest, ARestartedPeerServesWhatItStored) {
  ASSERT_OK_AND_ASSIGN(net::HttpResponse response, Get(BlobPath()));
  ASSERT_EQ(response.status, 200);
  peer_.reset();
  StartPeer();
  ASSERT_OK(registry_->ResetCounters());
  ASSERT_OK_AND_ASSIGN(response, Get(BlobPath()));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(Digest::Of(DigestAlgorithm::kSha256, response.body), digest_);
  EXPECT_EQ(RegistryBlobBytes(), 0u);
}

// The seed's path on one node: naiad fs -> mirror 127.0.0.1:<peer> with X-Dragonfly-Registry ->
// registry. Two mounts with separate caches read the whole image; the registry serves it once.
TEST_F(PeerProxyTest, NaiadFsThroughThePeerFetchesFromTheRegistryOnce) {
  std::string src = dir_.Join("src");
  ASSERT_OK(CreateDirectories(src));
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK(WriteFileAtomically(StrCat(src, "/file", i), RandomBytes((1 << 20) + i * 777, i)));
  }
  ASSERT_OK(CreateDirectories(dir_.Join("blobs")));
  ASSERT_OK_AND_ASSIGN(auto source, rafs::DirectorySource::Create(src));
  ASSERT_OK_AND_ASSIGN(rafs::LayerBuildResult built,
                       rafs::BuildLayer(*source, {.blob_dir = dir_.Join("blobs")}));
  std::string blob_path = dir_.Join("blobs/" + built.blob->id);
  ASSERT_OK(registry_->PushBlobFile(kRepo, blob_path).status());
  std::string boot = dir_.Join("image.boot");
  ASSERT_OK(WriteFileAtomically(boot, built.bootstrap));
  ASSERT_OK_AND_ASSIGN(rafs::testing::TreeSnapshot want, rafs::testing::SnapshotDirectory(src));
  ASSERT_OK(registry_->ResetCounters());
  for (int node = 0; node < 2; ++node) {
    json config = {
        {"device",
         {{"backend",
           {{"type", "registry"},
            {"config",
             {{"mirrors",
               json::array({{{"host", ProxyUrl()},
                             {"auth_through", false},
                             {"headers", {{"X-Dragonfly-Registry", registry_->url()}}},
                             {"ping_url", StrCat("http://127.0.0.1:", peer_->health_port(),
                                                 "/server/ping")}}})},
              {"scheme", "http"},
              {"host", registry_->host_port()},
              {"repo", kRepo},
              {"skip_verify", false},
              {"timeout", 10},
              {"connect_timeout", 10},
              {"retry_limit", 2}}}}},
          {"cache",
           {{"type", "blobcache"}, {"config", {{"work_dir", dir_.Join(StrCat("cache", node))}}}}}}},
        {"mode", "direct"},
        {"digest_validate", false},
        {"iostats_files", false},
        {"enable_xattr", true}};
    ASSERT_OK_AND_ASSIGN(auto mount, FsMount::Start({.config = config, .bootstrap = boot}));
    ASSERT_OK_AND_ASSIGN(rafs::testing::TreeSnapshot got,
                         rafs::testing::SnapshotDirectory(mount->mountpoint()));
    EXPECT_EQ(rafs::testing::DiffSnapshots(want, got), "");
    ASSERT_OK_AND_ASSIGN(json backend, mount->Api("/api/v1/metrics/backend"));
    for (const json& s : backend["sources"]) {
      if (s["source"] == "origin") {
        EXPECT_EQ(s["bytes"], 0) << backend.dump();
      }
    }
    EXPECT_OK(mount->Stop());
  }
  uint64_t blob_size = std::filesystem::file_size(blob_path);
  EXPECT_LE(RegistryBlobBytes(), blob_size) << "the registry must serve the image once";
}

}  // namespace
}  // namespace naiad::testing
