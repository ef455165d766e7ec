#include "test/testing/test_images.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_join.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "nlohmann/json.hpp"
#include "test/testing/image_builder.h"
#include "test/testing/registry_fixture.h"
#include "test/testing/test_env.h"

namespace naiad::testing {
namespace {

// Bump when the way images are built changes, so old cache entries are not reused.
constexpr int kRecipeVersion = 2;

std::vector<ImageRecipe> AllRecipes() {
  return {
      {.name = "base", .packages = {}, .cmd = {"/bin/bash"}},
      {.name = "python",
       .packages = {"python3", "python3-pip", "build-essential", "git"},
       .cmd = {"python3"}},
      {.name = "node", .packages = {"nodejs", "npm"}, .cmd = {"node"}},
      {.name = "ruby", .packages = {"ruby"}, .cmd = {"irb"}},
      {.name = "golang", .packages = {"golang-go"}, .cmd = {"/bin/bash"}},
  };
}

std::string ShortHash(std::string_view text) {
  return Digest::Of(DigestAlgorithm::kSha256, text).Hex().substr(0, 16);
}

std::string BaseKey() {
  return ShortHash(StrCat("naiad-test-base v", kRecipeVersion, "\nsuite=", kDebianSuite,
                          "\nvariant=", kDebianVariant, "\nmirror=", kDebianMirror, "\n"));
}

// A temporary directory under <cache>/tmp that records our pid (for stale cleanup) and is
// removed, mounts first, when it goes out of scope.
class BuildDir {
 public:
  static absl::StatusOr<BuildDir> Create(const std::string& cache, std::string_view name) {
    RETURN_IF_ERROR(CreateDirectories(cache + "/tmp"));
    std::string templ = StrCat(cache, "/tmp/", name, "-XXXXXX");
    if (::mkdtemp(templ.data()) == nullptr) return ErrnoError(errno, StrCat("mkdtemp ", templ));
    BuildDir dir(templ);
    RETURN_IF_ERROR(WriteOwnerPid(templ));
    return dir;
  }
  BuildDir(BuildDir&& other) noexcept : path_(std::exchange(other.path_, "")) {}
  ~BuildDir() {
    if (!path_.empty()) RemoveTreeSafely(path_).IgnoreError();
  }
  const std::string& path() const { return path_; }

 private:
  explicit BuildDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Renames the finished `<build>/entry` to `target` (same filesystem, so atomic).
absl::Status Publish(const BuildDir& build, const std::string& target) {
  std::error_code ec;
  std::filesystem::rename(build.path() + "/entry", target, ec);
  if (ec) return ErrnoError(ec.value(), StrCat("rename into ", target));
  return absl::OkStatus();
}

absl::StatusOr<std::string> EnsureBaseRootfs(const std::string& cache) {
  const std::string entry = StrCat(cache, "/base-", BaseKey());
  ASSIGN_OR_RETURN(FileLock lock, FileLock::Acquire(StrCat(cache, "/locks/base.lock")));
  if (std::filesystem::exists(entry)) return entry + "/rootfs";
  LogInfo("test image: debootstrap of the base rootfs (about a minute)", {{"entry", entry}});
  ASSIGN_OR_RETURN(BuildDir build, BuildDir::Create(cache, "base"));
  RETURN_IF_ERROR(CreateDirectories(build.path() + "/entry"));
  RETURN_IF_ERROR(Debootstrap(build.path() + "/entry/rootfs"));
  RETURN_IF_ERROR(Publish(build, entry));
  return entry + "/rootfs";
}

nlohmann::json ToJson(const TestImage& image) {
  nlohmann::json layers = nlohmann::json::array();
  for (const ImageLayer& l : image.layers) {
    layers.push_back({{"digest", l.digest}, {"size", l.size}, {"media_type", l.media_type}});
  }
  return {{"name", image.name},
          {"tag", image.tag},
          {"manifest_digest", image.manifest_digest},
          {"config_digest", image.config_digest},
          {"layers", layers},
          {"unpacked_bytes", image.unpacked_bytes},
          {"build_seconds", image.build_seconds}};
}

absl::StatusOr<TestImage> LoadImageJson(const std::string& entry) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(entry + "/image.json"));
  try {
    nlohmann::json j = nlohmann::json::parse(text);
    TestImage image{.name = j.at("name"),
                    .dir = entry,
                    .layout_dir = entry + "/layout",
                    .tag = j.at("tag"),
                    .rootfs_dir = entry + "/bundle/rootfs",
                    .manifest_digest = j.at("manifest_digest"),
                    .config_digest = j.at("config_digest"),
                    .unpacked_bytes = j.at("unpacked_bytes"),
                    .build_seconds = j.at("build_seconds")};
    for (const auto& l : j.at("layers")) {
      image.layers.push_back({l.at("digest"), l.at("size"), l.at("media_type")});
    }
    return image;
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(StrCat("parsing ", entry, "/image.json: ", e.what()));
  }
}

// Builds the image into `<build>/entry` and writes its image.json there.
absl::Status BuildEntry(const ImageRecipe& recipe, const std::string& base_rootfs,
                        const BuildDir& build) {
  absl::Time start = absl::Now();
  const std::string entry = build.path() + "/entry";
  RETURN_IF_ERROR(CreateDirectories(entry));
  RETURN_IF_ERROR(BuildLayout(recipe, base_rootfs, entry));
  ASSIGN_OR_RETURN(LayoutManifest manifest, ReadLayoutManifest(entry + "/layout", recipe.name));
  TestImage image{.name = recipe.name,
                  .tag = recipe.name,
                  .manifest_digest = manifest.manifest_digest,
                  .config_digest = manifest.config_digest,
                  .layers = manifest.layers};
  ASSIGN_OR_RETURN(image.unpacked_bytes, UnpackedSize(entry + "/bundle/rootfs"));
  image.build_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return WriteFileAtomically(entry + "/image.json", ToJson(image).dump(2));
}

}  // namespace

std::vector<std::string> TestImages::RecipeNames() {
  std::vector<std::string> names;
  for (const ImageRecipe& r : AllRecipes()) names.push_back(r.name);
  return names;
}

absl::StatusOr<ImageRecipe> TestImages::Recipe(std::string_view name) {
  for (ImageRecipe& r : AllRecipes()) {
    if (r.name == name) return std::move(r);
  }
  return absl::NotFoundError(StrCat("no test image recipe named '", name,
                                    "'; known: ", absl::StrJoin(RecipeNames(), ", ")));
}

std::string TestImages::RecipeKey(const ImageRecipe& recipe) {
  return ShortHash(StrCat("base=", BaseKey(), "\nname=", recipe.name,
                          "\npackages=", absl::StrJoin(recipe.packages, " "),
                          "\ncmd=", absl::StrJoin(recipe.cmd, " "), "\n"));
}

std::string TestImages::CacheDir() {
  const char* dir = std::getenv("NAIAD_TEST_CACHE");
  return (dir != nullptr && *dir != '\0') ? dir : "/var/cache/naiad-test";
}

absl::StatusOr<TestImage> TestImages::Get(std::string_view name) {
  ASSIGN_OR_RETURN(ImageRecipe recipe, Recipe(name));
  return Get(recipe);
}

absl::StatusOr<TestImage> TestImages::Get(const ImageRecipe& recipe) {
  if (recipe.name.empty() ||
      recipe.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos) {
    return absl::InvalidArgumentError(StrCat("bad recipe name '", recipe.name, "'"));
  }
  const std::string cache = CacheDir();
  RETURN_IF_ERROR(CreateDirectories(cache + "/locks"));
  RETURN_IF_ERROR(CreateDirectories(cache + "/tmp"));
  RemoveStaleOwnedDirs(cache + "/tmp", "");
  const std::string entry = StrCat(cache, "/image-", recipe.name, "-", RecipeKey(recipe));
  ASSIGN_OR_RETURN(FileLock lock,
                   FileLock::Acquire(StrCat(cache, "/locks/image-", recipe.name, ".lock")));
  bool built = false;
  if (!std::filesystem::exists(entry)) {
    ASSIGN_OR_RETURN(std::string base_rootfs, EnsureBaseRootfs(cache));
    LogInfo("test image: building (minutes the first time)", {{"recipe", recipe.name}});
    ASSIGN_OR_RETURN(BuildDir build, BuildDir::Create(cache, recipe.name));
    RETURN_IF_ERROR(Annotate(BuildEntry(recipe, base_rootfs, build),
                             StrCat("building test image ", recipe.name)));
    RETURN_IF_ERROR(Publish(build, entry));
    built = true;
  }
  ASSIGN_OR_RETURN(TestImage image, LoadImageJson(entry));
  image.built = built;
  LogInfo("test image ready", {{"recipe", recipe.name},
                               {"built", built},
                               {"layers", image.layers.size()},
                               {"unpacked_bytes", image.unpacked_bytes}});
  return image;
}

absl::StatusOr<std::string> TestImage::PushTo(RegistryFixture& registry,
                                              std::string_view repo) const {
  std::string repo_tag = StrCat(repo, ":", tag);
  RETURN_IF_ERROR(registry.PushOciLayout(layout_dir, tag, repo_tag));
  return StrCat(registry.host_port(), "/", repo_tag);
}

}  // namespace naiad::testing
