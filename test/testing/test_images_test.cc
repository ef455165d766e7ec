#include "test/testing/test_images.h"

#include <stdlib.h>

#include <filesystem>
#include <thread>

#include "base/file.h"
#include "base/logging.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/testing/registry_fixture.h"
#include "test/testing/test_env.h"

namespace naiad::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

TEST(TestImagesRecipes, KeysDependOnTheRecipe) {
  ASSERT_OK_AND_ASSIGN(ImageRecipe python, TestImages::Recipe("python"));
  ASSERT_OK_AND_ASSIGN(ImageRecipe node, TestImages::Recipe("node"));
  EXPECT_NE(TestImages::RecipeKey(python), TestImages::RecipeKey(node));
  EXPECT_EQ(TestImages::RecipeKey(python), TestImages::RecipeKey(python));
  ImageRecipe changed = python;
  changed.packages.push_back("vim");
  EXPECT_NE(TestImages::RecipeKey(changed), TestImages::RecipeKey(python));
  EXPECT_THAT(TestImages::Recipe("cobol"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("python")));
}

TEST(TestImagesPython, BuildsCachesAndPushes) {
  NAIAD_SKIP_UNLESS_ROOT();
  ASSERT_OK_AND_ASSIGN(TestImage image, TestImages::Get("python"));
  LogInfo("python image", {{"built", image.built},
                           {"build_seconds", image.build_seconds},
                           {"unpacked_bytes", image.unpacked_bytes},
                           {"layer0", image.layers.empty() ? 0 : image.layers[0].size},
                           {"layer1", image.layers.size() < 2 ? 0 : image.layers[1].size}});
  EXPECT_GE(image.layers.size(), 2u);
  EXPECT_TRUE(std::filesystem::exists(image.rootfs_dir + "/usr/bin/python3"));
  EXPECT_GT(image.unpacked_bytes, 300u << 20);
  EXPECT_TRUE(std::filesystem::exists(image.layout_dir + "/index.json"));

  absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(TestImage again, TestImages::Get("python"));
  absl::Duration cached = absl::Now() - start;
  EXPECT_FALSE(again.built);
  EXPECT_EQ(again.manifest_digest, image.manifest_digest);
  EXPECT_LT(cached, absl::Seconds(10));  // reading one JSON file; a rebuild takes minutes
  RecordProperty("cache_hit_ms", StrCat(absl::ToInt64Milliseconds(cached)));

  ASSERT_OK_AND_ASSIGN(auto registry, RegistryFixture::Start());
  ASSERT_OK_AND_ASSIGN(std::string ref, image.PushTo(*registry, "library/python"));
  ASSERT_OK_AND_ASSIGN(std::string inspect, RunCommandOk({"skopeo", "inspect", "--tls-verify=false",
                                                          "docker://" + ref}));
  for (const ImageLayer& layer : image.layers) EXPECT_THAT(inspect, HasSubstr(layer.digest));
  EXPECT_THAT(registry->BytesServed(), IsOkAndHolds(::testing::Gt(0u)));
}

TEST(TestImagesBase, IsOneLayerOfDebootstrap) {
  NAIAD_SKIP_UNLESS_ROOT();
  ASSERT_OK_AND_ASSIGN(TestImage image, TestImages::Get("base"));
  EXPECT_THAT(image.layers, SizeIs(1));
  EXPECT_TRUE(std::filesystem::exists(image.rootfs_dir + "/usr/bin/apt-get"));
  EXPECT_FALSE(std::filesystem::exists(image.rootfs_dir + "/usr/bin/python3"));
}

// The other runtimes: each recipe builds and has its interpreter or compiler.
class TestImagesRuntime : public ::testing::TestWithParam<std::string> {};

std::string RuntimeBinary(const std::string& recipe) {
  if (recipe == "node") return "/usr/bin/node";
  if (recipe == "ruby") return "/usr/bin/ruby";
  return "/usr/bin/go";
}

TEST_P(TestImagesRuntime, HasItsRuntime) {
  NAIAD_SKIP_UNLESS_ROOT();
  ASSERT_OK_AND_ASSIGN(TestImage image, TestImages::Get(GetParam()));
  LogInfo("runtime image", {{"recipe", GetParam()},
                            {"build_seconds", image.build_seconds},
                            {"unpacked_bytes", image.unpacked_bytes}});
  EXPECT_THAT(image.layers, SizeIs(2));
  EXPECT_TRUE(std::filesystem::exists(image.rootfs_dir + RuntimeBinary(GetParam())));
}

INSTANTIATE_TEST_SUITE_P(Recipes, TestImagesRuntime, ::testing::Values("node", "ruby", "golang"),
                         [](const auto& info) { return info.param; });

// A private cache under the shared one (same filesystem) whose base rootfs is hard-linked from
// the shared cache, so tests of the cache logic skip the debootstrap. Sets $NAIAD_TEST_CACHE
// while it lives.
class PrivateCache {
 public:
  static absl::StatusOr<PrivateCache> Create() {
    RETURN_IF_ERROR(TestImages::Get("base").status());  // ensures the shared base rootfs
    std::string shared_base;
    for (const auto& e : std::filesystem::directory_iterator(TestImages::CacheDir())) {
      if (e.path().filename().string().starts_with("base-")) shared_base = e.path().string();
    }
    if (shared_base.empty()) return absl::NotFoundError("no base rootfs in the shared cache");
    ASSIGN_OR_RETURN(TempDir dir, TempDir::Create("private-", TestImages::CacheDir() + "/tmp"));
    RETURN_IF_ERROR(WriteOwnerPid(dir.path()));
    std::string copy = dir.Join(std::filesystem::path(shared_base).filename().string());
    RETURN_IF_ERROR(RunCommandOk({"cp", "-al", shared_base, copy}).status());
    ::setenv("NAIAD_TEST_CACHE", dir.path().c_str(), 1);
    return PrivateCache(std::move(dir));
  }
  PrivateCache(PrivateCache&&) = default;
  ~PrivateCache() {
    if (!dir_.path().empty()) ::unsetenv("NAIAD_TEST_CACHE");
  }
  const std::string& path() const { return dir_.path(); }

 private:
  explicit PrivateCache(TempDir dir) : dir_(std::move(dir)) {}
  TempDir dir_;
};

TEST(TestImagesCache, FailedBuildLeavesNoMountOrEntry) {
  NAIAD_SKIP_UNLESS_ROOT();
  ASSERT_OK_AND_ASSIGN(PrivateCache cache, PrivateCache::Create());
  ImageRecipe bad{.name = "broken", .packages = {"naiad-no-such-package"}, .cmd = {"/bin/sh"}};
  EXPECT_THAT(TestImages::Get(bad),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("naiad-no-such-package")));
  ASSERT_OK_AND_ASSIGN(std::string mounts, ReadFileToString("/proc/self/mountinfo"));
  EXPECT_THAT(mounts, Not(HasSubstr(cache.path())));
  EXPECT_TRUE(std::filesystem::is_empty(cache.path() + "/tmp"));
  for (const auto& e : std::filesystem::directory_iterator(cache.path())) {
    EXPECT_FALSE(e.path().filename().string().starts_with("image-")) << e.path();
  }
}

// Two concurrent Get()s of a recipe that is not cached build it once. A private cache seeded with
// hard links to the shared base rootfs keeps this to one umoci build instead of a debootstrap.
TEST(TestImagesCache, ConcurrentGetsBuildOnce) {
  NAIAD_SKIP_UNLESS_ROOT();
  ASSERT_OK_AND_ASSIGN(PrivateCache cache, PrivateCache::Create());
  absl::StatusOr<TestImage> a, b;
  std::thread first([&] { a = TestImages::Get("base"); });
  std::thread second([&] { b = TestImages::Get("base"); });
  first.join();
  second.join();
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_NE(a->built, b->built) << "exactly one of the two must have built the image";
  EXPECT_EQ(a->manifest_digest, b->manifest_digest);
  EXPECT_EQ(a->dir, b->dir);
  EXPECT_TRUE(a->dir.starts_with(cache.path()));
  EXPECT_FALSE(std::filesystem::exists(a->dir + "/owner.pid"));
}

}  // namespace
}  // namespace naiad::testing
