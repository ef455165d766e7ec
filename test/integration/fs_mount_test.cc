// `naiad fs` as users run it: the real binary, a real FUSE mount, a real registry, and faults
// injected by a proxy in front of it.
#include "test/testing/fs_mount.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rafs/bootstrap.h"
#include "rafs/builder.h"
#include "rafs/chunk_reader.h"
#include "rafs/entry_source.h"
#include "rafs/tree_snapshot.h"
#include "test/testing/fault_proxy.h"
#include "test/testing/registry_fixture.h"
#include "test/testing/test_env.h"

namespace naiad::testing {
namespace {

using ::testing::Ge;
using ::testing::Gt;
using json = nlohmann::json;

constexpr char kRepo[] = "test/app";

std::string Pattern(size_t size, uint32_t seed) {
  std::string data(size, '\0');
  uint32_t x = 2463534242u ^ (seed * 2654435761u);
  for (char& c : data) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x >> 7);
  }
  return data;
}

// A tree with every kind of entry; files big and small.
void WriteTree(const std::string& root) {
  ASSERT_OK(CreateDirectories(root + "/usr/lib/deep/er/still"));
  ASSERT_OK(CreateDirectories(root + "/etc"));
  ASSERT_OK(CreateDirectories(root + "/data"));
  for (int i = 0; i < 40; ++i) {
    ASSERT_OK(WriteTestFile(StrCat(root, "/usr/lib/file", i), Pattern(100 + i * 997, i), 0644));
  }
  for (int i = 0; i < 6; ++i) {
    ASSERT_OK(WriteTestFile(StrCat(root, "/data/big", i), Pattern((3 << 20) + i * 4099, 100 + i)));
  }
  ASSERT_OK(WriteTestFile(root + "/usr/lib/deep/er/still/leaf", "leaf\n", 0600));
  ASSERT_OK(WriteTestFile(root + "/etc/empty", "", 0644));
  ASSERT_OK(WriteTestFile(root + "/etc/tool", "#!/bin/sh\necho hi\n", 0755));
  ASSERT_EQ(chown((root + "/etc/tool").c_str(), 1234, 5678), 0);
  ASSERT_EQ(link((root + "/etc/tool").c_str(), (root + "/etc/tool-hardlink").c_str()), 0);
  ASSERT_EQ(symlink("../usr/lib/file3", (root + "/etc/link").c_str()), 0);
  ASSERT_EQ(mkfifo((root + "/etc/fifo").c_str(), 0640), 0);
  ASSERT_EQ(mknod((root + "/etc/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(setxattr((root + "/etc/tool").c_str(), "user.naiad", "value", 5, 0), 0);
}

class FsMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NAIAD_SKIP_UNLESS_ROOT();
    ASSERT_OK_AND_ASSIGN(dir_, CreateOwnedTempDir("naiad-fs-test-"));
    src_ = dir_.Join("src");
    WriteTree(src_);
    ASSERT_OK(CreateDirectories(dir_.Join("blobs")));
    ASSERT_OK_AND_ASSIGN(auto source, rafs::DirectorySource::Create(src_));
    ASSERT_OK_AND_ASSIGN(rafs::LayerBuildResult built,
                         rafs::BuildLayer(*source, {.blob_dir = dir_.Join("blobs")}));
    ASSERT_TRUE(built.blob.has_value());
    blob_id_ = built.blob->id;
    boot_path_ = dir_.Join("image.boot");
    ASSERT_OK(WriteFileAtomically(boot_path_, built.bootstrap));
    ASSERT_OK_AND_ASSIGN(want_, rafs::testing::SnapshotDirectory(src_));
  }

  void StartRegistry() {
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFixture::Start());
    ASSERT_OK_AND_ASSIGN(Digest pushed,
                         registry_->PushBlobFile(kRepo, dir_.Join("blobs/" + blob_id_)));
    ASSERT_EQ(pushed.Hex(), blob_id_);
  }

  // A registry-backend config in the seed's shape.
  json RegistryConfig(std::string host, json mirrors = json::array(), bool cache = false) {
    json config = {{"device",
                    {{"backend",
                      {{"type", "registry"},
                       {"config",
                        {{"scheme", "http"},
                         {"host", host},
                         {"repo", kRepo},
                         {"mirrors", mirrors},
                         {"timeout", 3},
                         {"connect_timeout", 3},
                         {"retry_limit", 2}}}}}}},
                   {"mode", "direct"},
                   {"enable_xattr", true}};
    if (cache) {
      config["device"]["cache"] = {{"type", "blobcache"},
                                   {"config", {{"work_dir", dir_.Join("cache")}}}};
    }
    return config;
  }

  std::string ReadMounted(const FsMount& mount, const std::string& path) {
    absl::StatusOr<std::string> data = ReadFileToString(mount.mountpoint() + path);
    EXPECT_OK(data.status()) << mount.Log();
    return data.ok() ? *data : "";
  }

  uint64_t SourceBytes(const json& backend, const std::string& source) {
    for (const json& s : backend["sources"]) {
      if (s["source"] == source) return s["bytes"].get<uint64_t>();
    }
    ADD_FAILURE() << "no source " << source << " in " << backend.dump();
    return 0;
  }

  TempDir dir_;
  std::string src_;
  std::string blob_id_;
  std::string boot_path_;
  rafs::testing::TreeSnapshot want_;
  std::unique_ptr<RegistryFixture> registry_;
};

TEST_F(FsMountTest, UpstreamFixtureMountsWithLocalfs) {
  if (!std::filesystem::exists(NydusFixturePath(""))) GTEST_SKIP() << "no ../shared/fixtures";
  std::string boot_path = NydusFixturePath("bootstrap/rafs-v6-2.2.boot");
  ASSERT_OK_AND_ASSIGN(auto boot, rafs::Bootstrap::Open(boot_path));
  ASSERT_OK_AND_ASSIGN(
      auto reader, rafs::LocalChunkReader::Open(*boot, {.blob_dir = NydusFixturePath("blobs")}));
  ASSERT_OK_AND_ASSIGN(rafs::testing::TreeSnapshot want,
                       rafs::testing::SnapshotImage(*boot, *reader));
  ASSERT_OK_AND_ASSIGN(
      auto mount,
      FsMount::Start({.config = {{"device",
                                  {{"backend",
                                    {{"type", "localfs"},
                                     {"config", {{"dir", NydusFixturePath("blobs")}}}}}}}},
                      .bootstrap = boot_path}));
  ASSERT_OK_AND_ASSIGN(
      rafs::testing::TreeSnapshot got,
      rafs::testing::SnapshotDirectory(mount->mountpoint(), {.include_xattrs = false}));
  EXPECT_EQ(rafs::testing::DiffSnapshots(want, got), "");
  EXPECT_GT(ReadMounted(*mount, "/lib.rs").size(), 0u);
  EXPECT_GT(ReadMounted(*mount, "/sync_io.rs").size(), 0u);
  EXPECT_OK(mount->Stop());
}

TEST_F(FsMountTest, RegistryImageMatchesItsSourceTree) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto mount, FsMount::Start({.config = RegistryConfig(registry_->host_port()),
                                                   .bootstrap = boot_path_}));
  ASSERT_OK_AND_ASSIGN(rafs::testing::TreeSnapshot got,
                       rafs::testing::SnapshotDirectory(mount->mountpoint()));
  EXPECT_EQ(rafs::testing::DiffSnapshots(want_, got), "") << mount->Log();

  struct stat a {
  }, b{};
  ASSERT_EQ(stat((mount->mountpoint() + "/etc/tool").c_str(), &a), 0);
  ASSERT_EQ(stat((mount->mountpoint() + "/etc/tool-hardlink").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 2u);
  EXPECT_EQ(open((mount->mountpoint() + "/etc/empty").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);

  ASSERT_OK_AND_ASSIGN(json info, mount->Api("/api/v1/daemon"));
  EXPECT_EQ(info["state"], "RUNNING");
  ASSERT_OK_AND_ASSIGN(json backend, mount->Api("/api/v1/metrics/backend"));
  uint64_t blob_size = std::filesystem::file_size(dir_.Join("blobs/" + blob_id_));
  EXPECT_THAT(SourceBytes(backend, "origin"), Gt(0u));
  // Reading everything once fetches each byte about once.
  EXPECT_LE(SourceBytes(backend, "origin"), 2 * blob_size) << backend.dump();
  ASSERT_OK_AND_ASSIGN(json metrics, mount->Api("/api/v1/metrics"));
  EXPECT_GT(metrics["data_read"].get<uint64_t>(), 0u);
  ASSERT_OK_AND_ASSIGN(std::string trace, mount->ApiText("/api/v1/metrics/trace"));
  EXPECT_THAT(trace, ::testing::HasSubstr("/data/big0\n"));
  EXPECT_OK(mount->Stop());
}

TEST_F(FsMountTest, TransientFaultsAreRetriedPersistentOnesAreEio) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto proxy, FaultProxy::Start({.upstream = registry_->url()}));
  std::string host = proxy->url().substr(strlen("http://"));
  ASSERT_OK_AND_ASSIGN(auto mount,
                       FsMount::Start({.config = RegistryConfig(host), .bootstrap = boot_path_}));
  proxy->SetFault({.kind = FaultKind::kStatus, .status = 500, .count = 2, .method = "GET"});
  EXPECT_EQ(ReadMounted(*mount, "/data/big0"), Pattern(3 << 20, 100));
  proxy->SetFault({.kind = FaultKind::kResetBeforeResponse, .count = 2, .method = "GET"});
  EXPECT_EQ(ReadMounted(*mount, "/data/big1"), Pattern((3 << 20) + 4099, 101));
  proxy->SetFault({.kind = FaultKind::kResetMidBody, .count = 1, .method = "GET"});
  EXPECT_EQ(ReadMounted(*mount, "/data/big2"), Pattern((3 << 20) + 2 * 4099, 102));

  proxy->SetFault({.kind = FaultKind::kStatus, .status = 500, .method = "GET"});
  absl::Time start = absl::Now();
  absl::StatusOr<std::string> failed = ReadFileToString(mount->mountpoint() + "/data/big3");
  EXPECT_FALSE(failed.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));

  proxy->SetFault(
      {.kind = FaultKind::kStallBeforeResponse, .stall = absl::Seconds(60), .method = "GET"});
  start = absl::Now();
  failed = ReadFileToString(mount->mountpoint() + "/data/big4");
  EXPECT_FALSE(failed.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(40)) << "a stalled server must not hang reads";

  proxy->ClearFault();
  EXPECT_EQ(ReadMounted(*mount, "/data/big3"), Pattern((3 << 20) + 3 * 4099, 103));
  EXPECT_OK(mount->Stop());
}

TEST_F(FsMountTest, MirrorFailsOverToOriginAndBack) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto mirror, FaultProxy::Start({.upstream = registry_->url()}));
  json mirrors = json::array({{{"host", mirror->url()},
                               {"headers", {{"X-Dragonfly-Registry", registry_->url()}}},
                               {"ping_url", mirror->url() + "/v2"},
                               {"health_check_interval", 1},
                               {"failure_limit", 1}}});
  ASSERT_OK_AND_ASSIGN(auto mount,
                       FsMount::Start({.config = RegistryConfig(registry_->host_port(), mirrors),
                                       .bootstrap = boot_path_}));
  const std::string mirror_source = "mirror:" + mirror->url();
  EXPECT_EQ(ReadMounted(*mount, "/data/big0"), Pattern(3 << 20, 100));
  ASSERT_OK_AND_ASSIGN(json backend, mount->Api("/api/v1/metrics/backend"));
  uint64_t mirror_bytes = SourceBytes(backend, mirror_source);
  EXPECT_GT(mirror_bytes, 0u);
  EXPECT_EQ(SourceBytes(backend, "origin"), 0u);
  for (const SeenRequest& request : mirror->requests()) {
    EXPECT_EQ(request.headers.Get("X-Dragonfly-Registry"), registry_->url());
  }

  // The mirror goes down: reads go to the origin.
  mirror->SetPingHealthy(false);
  mirror->SetFault({.kind = FaultKind::kResetBeforeResponse});
  EXPECT_EQ(ReadMounted(*mount, "/data/big1"), Pattern((3 << 20) + 4099, 101));
  ASSERT_OK_AND_ASSIGN(backend, mount->Api("/api/v1/metrics/backend"));
  uint64_t origin_bytes = SourceBytes(backend, "origin");
  EXPECT_GT(origin_bytes, 0u);

  // It comes back: once its ping answers, reads go to it again.
  mirror->ClearFault();
  mirror->SetPingHealthy(true);
  absl::SleepFor(absl::Seconds(3));
  EXPECT_EQ(ReadMounted(*mount, "/data/big2"), Pattern((3 << 20) + 2 * 4099, 102));
  ASSERT_OK_AND_ASSIGN(backend, mount->Api("/api/v1/metrics/backend"));
  EXPECT_GT(SourceBytes(backend, mirror_source), mirror_bytes) << backend.dump();
  EXPECT_EQ(SourceBytes(backend, "origin"), origin_bytes) << backend.dump();
  EXPECT_OK(mount->Stop());
}

TEST_F(FsMountTest, CorruptBytesFromAMirrorNeverReachReaders) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto mirror, FaultProxy::Start({.upstream = registry_->url()}));
  json mirrors = json::array({{{"host", mirror->url()}, {"failure_limit", 100}}});
  ASSERT_OK_AND_ASSIGN(auto mount,
                       FsMount::Start({.config = RegistryConfig(registry_->host_port(), mirrors),
                                       .bootstrap = boot_path_}));
  mirror->SetFault({.kind = FaultKind::kCorruptBody, .count = 3, .method = "GET"});
  ASSERT_OK_AND_ASSIGN(rafs::testing::TreeSnapshot got,
                       rafs::testing::SnapshotDirectory(mount->mountpoint()));
  EXPECT_EQ(rafs::testing::DiffSnapshots(want_, got), "");
  EXPECT_EQ(mirror->faults_applied(), 3u);
  ASSERT_OK_AND_ASSIGN(json cache, mount->Api("/api/v1/metrics/blobcache"));
  EXPECT_THAT(cache["bad_fetches"].get<uint64_t>(), Ge(3u)) << cache.dump();
  EXPECT_OK(mount->Stop());
}

TEST_F(FsMountTest, CorruptCachedChunkIsFetchedAgain) {
  StartRegistry();
  json config = RegistryConfig(registry_->host_port(), json::array(), /*cache=*/true);
  config["digest_validate"] = true;
  {
    ASSERT_OK_AND_ASSIGN(auto mount, FsMount::Start({.config = config, .bootstrap = boot_path_}));
    EXPECT_EQ(ReadMounted(*mount, "/data/big0"), Pattern(3 << 20, 100));
    EXPECT_OK(mount->Stop());
  }
  // Flip bytes in the middle of the cached data of /data/big0's first chunk.
  ASSERT_OK_AND_ASSIGN(auto boot, rafs::Bootstrap::Open(boot_path_));
  ASSERT_OK_AND_ASSIGN(uint64_t nid, boot->Resolve("/data/big0"));
  ASSERT_OK_AND_ASSIGN(auto chunks, boot->FileChunks(nid));
  ASSERT_OK_AND_ASSIGN(UniqueFd fd,
                       UniqueFd::Open(dir_.Join("cache/" + blob_id_ + ".blob.data"), O_RDWR));
  ASSERT_OK(PwriteFull(fd.get(), "corrupt!", chunks[0].uncompressed_offset + 1000));
  ASSERT_OK(registry_->ResetCounters());
  ASSERT_OK_AND_ASSIGN(auto mount, FsMount::Start({.config = config, .bootstrap = boot_path_}));
  EXPECT_EQ(ReadMounted(*mount, "/data/big0"), Pattern(3 << 20, 100));
  ASSERT_OK_AND_ASSIGN(json cache, mount->Api("/api/v1/metrics/blobcache"));
  EXPECT_EQ(cache["corrupt_cached"], 1) << cache.dump();
  EXPECT_EQ(cache["fetched_chunks"], 1) << cache.dump();
  EXPECT_OK(mount->Stop());
}

TEST_F(FsMountTest, KillDuringPrefetchLosesNothingAndReusesTheCache) {
  StartRegistry();
  json config = RegistryConfig(registry_->host_port(), json::array(), /*cache=*/true);
  config["digest_validate"] = true;
  config["fs_prefetch"] = {{"enable", true},
                           {"threads_count", 2},
                           {"merging_size", 262144},
                           {"bandwidth_rate", 4 << 20},
                           {"prefetch_all", true}};
  uint64_t first_bytes = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto mount, FsMount::Start({.config = config, .bootstrap = boot_path_}));
    absl::SleepFor(absl::Seconds(2));
    ASSERT_OK_AND_ASSIGN(json prefetch, mount->Api("/api/v1/metrics/prefetch"));
    EXPECT_FALSE(prefetch["finished"].get<bool>()) << "prefetch should still be running";
    ASSERT_OK_AND_ASSIGN(json backend, mount->Api("/api/v1/metrics/backend"));
    first_bytes = SourceBytes(backend, "origin");
    mount->Kill();
  }
  EXPECT_GT(first_bytes, 0u);
  config["fs_prefetch"]["enable"] = false;
  ASSERT_OK_AND_ASSIGN(auto mount, FsMount::Start({.config = config, .bootstrap = boot_path_}));
  ASSERT_OK_AND_ASSIGN(rafs::testing::TreeSnapshot got,
                       rafs::testing::SnapshotDirectory(mount->mountpoint()));
  EXPECT_EQ(rafs::testing::DiffSnapshots(want_, got), "");
  ASSERT_OK_AND_ASSIGN(json cache, mount->Api("/api/v1/metrics/blobcache"));
  EXPECT_EQ(cache["corrupt_cached"], 0) << cache.dump();
  EXPECT_GT(cache["cache_hits"].get<uint64_t>(), 0u) << cache.dump();
  ASSERT_OK_AND_ASSIGN(json backend, mount->Api("/api/v1/metrics/backend"));
  uint64_t blob_size = std::filesystem::file_size(dir_.Join("blobs/" + blob_id_));
  EXPECT_LT(SourceBytes(backend, "origin"), blob_size) << "cached chunks must be reused";
  EXPECT_OK(mount->Stop());
}

TEST_F(FsMountTest, CompressedAndCappedCachesServeCorrectBytes) {
  StartRegistry();
  uint64_t blob_size = std::filesystem::file_size(dir_.Join("blobs/" + blob_id_));
  for (bool compressed : {true, false}) {
    SCOPED_TRACE(compressed ? "compressed cache" : "cache capped at 4 MiB");
    ASSERT_OK(RemoveAll(dir_.Join("cache")));
    json config = RegistryConfig(registry_->host_port(), json::array(), /*cache=*/true);
    config["digest_validate"] = true;
    config["device"]["cache"]["compressed"] = compressed;
    if (!compressed) config["device"]["cache"]["config"]["max_size"] = 4 << 20;
    for (int round = 0; round < 2; ++round) {
      ASSERT_OK_AND_ASSIGN(auto mount, FsMount::Start({.config = config, .bootstrap = boot_path_}));
      ASSERT_OK_AND_ASSIGN(rafs::testing::TreeSnapshot got,
                           rafs::testing::SnapshotDirectory(mount->mountpoint()));
      EXPECT_EQ(rafs::testing::DiffSnapshots(want_, got), "");
      ASSERT_OK_AND_ASSIGN(json backend, mount->Api("/api/v1/metrics/backend"));
      ASSERT_OK_AND_ASSIGN(json cache, mount->Api("/api/v1/metrics/blobcache"));
      if (compressed && round == 1) {
        EXPECT_EQ(SourceBytes(backend, "origin"), 0u) << "a full compressed cache is reused";
      }
      if (!compressed) {
        EXPECT_LE(cache["stored_bytes"].get<uint64_t>(), 4u << 20) << cache.dump();
        EXPECT_GT(cache["evicted_bytes"].get<uint64_t>(), 0u) << cache.dump();
      }
      EXPECT_EQ(cache["corrupt_cached"], 0) << cache.dump();
      EXPECT_LE(SourceBytes(backend, "origin"), 2 * blob_size);
      EXPECT_OK(mount->Stop());
    }
  }
}

TEST_F(FsMountTest, SigtermUnmountsEvenWithAnOpenFile) {
  StartRegistry();
  ASSERT_OK_AND_ASSIGN(auto mount, FsMount::Start({.config = RegistryConfig(registry_->host_port()),
                                                   .bootstrap = boot_path_}));
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, UniqueFd::Open(mount->mountpoint() + "/etc/tool", O_RDONLY));
  EXPECT_OK(mount->Stop());
  EXPECT_FALSE(IsMounted(mount->mountpoint()));
}

TEST_F(FsMountTest, BadConfigIsRejectedWithTheKeyPath) {
  json config = {{"device", {{"backend", {{"type", "registry"}, {"config", {{"timeout", "x"}}}}}}}};
  absl::StatusOr<std::unique_ptr<FsMount>> mount =
      FsMount::Start({.config = config, .bootstrap = boot_path_});
  ASSERT_FALSE(mount.ok());
  EXPECT_THAT(mount.status().message(), ::testing::HasSubstr("device.backend.config.timeout"));
}

}  // namespace
}  // namespace naiad::testing
