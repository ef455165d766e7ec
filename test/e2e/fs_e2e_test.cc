// `naiad fs` on a realistic image: the python test image converted with `naiad image`, its blobs
// in a real registry, mounted lazily through the registry backend; the mount must show the
// rootfs exactly, and a container-style overlayfs on top of it must run python3.
#include <sys/mount.h>

#include <filesystem>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rafs/bootstrap.h"
#include "rafs/tree_snapshot.h"
#include "test/testing/fs_mount.h"
#include "test/testing/rafs_convert.h"
#include "test/testing/registry_fixture.h"
#include "test/testing/test_env.h"
#include "test/testing/test_images.h"

namespace naiad::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

constexpr char kRepo[] = "library/python-naiad";

// The python image and its RAFS conversion, made once for the whole suite.
ConvertedTestImage* shared = nullptr;

class FsE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!RunningAsRoot()) return;
    auto converted = ConvertTestImage("python", "naiad-fs-e2e-");
    ASSERT_OK(converted.status());
    shared = converted->release();
  }
  static void TearDownTestSuite() {
    delete shared;
    shared = nullptr;
  }

  void SetUp() override {
    NAIAD_SKIP_UNLESS_ROOT();
    ASSERT_NE(shared, nullptr);
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFixture::Start());
    for (const std::string& blob : shared->rafs.blob_paths) {
      ASSERT_OK(registry_->PushBlobFile(kRepo, blob).status());
    }
    ASSERT_OK_AND_ASSIGN(work_, CreateOwnedTempDir("naiad-fs-e2e-run-"));
  }

  void TearDown() override {
    for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
  }

  json Config(bool cache) {
    json config = {{"device",
                    {{"backend",
                      {{"type", "registry"},
                       {"config",
                        {{"scheme", "http"},
                         {"host", registry_->host_port()},
                         {"repo", kRepo},
                         {"timeout", 10},
                         {"connect_timeout", 10},
                         {"retry_limit", 2}}}}}}},
                   {"mode", "direct"},
                   {"enable_xattr", true}};
    if (cache) {
      config["device"]["cache"] = {{"type", "blobcache"},
                                   {"config", {{"work_dir", work_.Join("cache")}}}};
    }
    return config;
  }

  std::unique_ptr<RegistryFixture> registry_;
  TempDir work_;
  std::vector<std::string> mounts_;
};

TEST_F(FsE2eTest, PythonImageMountsThroughTheRegistryAndMatchesTheRootfs) {
  ASSERT_OK_AND_ASSIGN(
      auto mount, FsMount::Start({.config = Config(true), .bootstrap = shared->rafs.bootstrap}));
  ASSERT_OK_AND_ASSIGN(rafs::testing::TreeSnapshot want,
                       rafs::testing::SnapshotDirectory(shared->image.rootfs_dir));
  ASSERT_OK_AND_ASSIGN(rafs::testing::TreeSnapshot got,
                       rafs::testing::SnapshotDirectory(mount->mountpoint()));
  EXPECT_EQ(rafs::testing::DiffSnapshots(want, got).substr(0, 20000), "");
  EXPECT_EQ(got.size(), want.size());
  ASSERT_OK_AND_ASSIGN(json backend, mount->Api("/api/v1/metrics/backend"));
  const uint64_t blob_bytes = shared->blob_bytes;
  EXPECT_LE(backend["read_amount_total"].get<uint64_t>(), blob_bytes + blob_bytes / 10)
      << backend.dump();
  EXPECT_OK(mount->Stop());
}

TEST_F(FsE2eTest, ContainerStyleOverlayRunsPython) {
  ASSERT_OK_AND_ASSIGN(
      auto mount, FsMount::Start({.config = Config(true), .bootstrap = shared->rafs.bootstrap}));
  for (const char* sub : {"upper", "work", "merged"}) ASSERT_OK(CreateDirectories(work_.Join(sub)));
  std::string merged = work_.Join("merged");
  std::string options = StrCat("lowerdir=", mount->mountpoint(), ",upperdir=", work_.Join("upper"),
                               ",workdir=", work_.Join("work"));
  ASSERT_EQ(::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()), 0)
      << "overlay on the FUSE mount: " << strerror(errno);
  mounts_.push_back(merged);
  ASSERT_OK_AND_ASSIGN(std::string version,
                       RunCommandOk({"chroot", merged, "/usr/bin/python3", "-V"}));
  EXPECT_THAT(version, HasSubstr("Python 3."));
  ASSERT_OK_AND_ASSIGN(std::string out,
                       RunCommandOk({"chroot", merged, "/usr/bin/python3", "-c",
                                     "import json, sqlite3; print(json.dumps([1]))"}));
  EXPECT_THAT(out, HasSubstr("[1]"));
  // Lazy: starting python read a small part of the image.
  ASSERT_OK_AND_ASSIGN(json backend, mount->Api("/api/v1/metrics/backend"));
  const uint64_t blob_bytes = shared->blob_bytes;
  EXPECT_LT(backend["read_amount_total"].get<uint64_t>(), blob_bytes / 4) << backend.dump();
  ASSERT_OK_AND_ASSIGN(std::string trace, mount->ApiText("/api/v1/metrics/trace"));
  EXPECT_THAT(trace, HasSubstr("python3"));

  // The recorded start-up becomes the next image's prefetch table.
  std::string boot = work_.Join("traced.boot");
  ASSERT_OK(CreateDirectories(work_.Join("traced-blobs")));
  ASSERT_OK(RunCommandOk({BuildPath("apps/naiad/naiad"), "image", "create",
                          shared->image.rootfs_dir, "-t", "dir-rafs", "-B", boot, "-D",
                          work_.Join("traced-blobs"), "--prefetch-policy", "fs"},
                         {.stdin_data = trace})
                .status());
  ASSERT_OK_AND_ASSIGN(auto traced, rafs::Bootstrap::Open(boot));
  std::string first = trace.substr(0, trace.find('\n'));
  ASSERT_OK_AND_ASSIGN(uint64_t first_nid, traced->Resolve(first));
  EXPECT_THAT(traced->prefetch_nids(), ::testing::Contains(first_nid)) << first;
  EXPECT_GT(traced->prefetch_nids().size(), 10u);
  umount2(merged.c_str(), 0);
  mounts_.clear();
  EXPECT_OK(mount->Stop());
}

}  // namespace
}  // namespace naiad::testing
