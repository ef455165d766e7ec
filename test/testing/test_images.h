// File: test/testing/test_images.h
//
// Realistic OCI images for tests: a Debian bookworm minbase rootfs (debootstrap) plus a language
// runtime from Debian's archive, like the official python/node/ruby/golang images. Building one
// takes minutes, so results are cached across runs under /var/cache/naiad-test (or
// $NAIAD_TEST_CACHE), keyed by a hash of the recipe.
//
//   ASSIGN_OR_RETURN(TestImage image, TestImages::Get("python"));
//   // image.layout_dir is an OCI layout holding tag image.tag; image.rootfs_dir is the same
//   // image unpacked, for comparing trees with what a lazy mount shows.
//   ASSIGN_OR_RETURN(std::string ref, image.PushTo(*registry, "library/python"));
//
// Recipes: "base" (minbase only, one layer), "python" (python3, python3-pip, build-essential,
// git), "node" (nodejs, npm), "ruby" (ruby), "golang" (golang-go). Every runtime image has two
// layers: layer 1 is the shared base rootfs, layer 2 what apt-get installed.
//
// Cache layout (all under CacheDir()):
//   base-<key>/rootfs/            debootstrap output, shared by every recipe
//   image-<name>-<key>/layout/    the OCI layout (tag = recipe name)
//   image-<name>-<key>/bundle/    `umoci unpack` of it; bundle/rootfs is rootfs_dir
//   image-<name>-<key>/image.json what Get() returns, so a cache hit reads one small file
//   tmp/<...>/                    builds in progress; each records its owner's pid
//   locks/<entry>.lock            flock()ed while an entry is checked or built
// An entry is built in tmp/ and renamed into place only once complete, so a cache entry is never
// partial. Concurrent Get()s of one recipe (threads or processes) build it once: the others wait
// on the lock and then find it. A build that fails takes its mounts down and removes its
// directory; one that crashed is removed by the next Get() once its owner's pid is dead.
//
// Get() needs root (debootstrap, chroot, mount) and network access to deb.debian.org.
// Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace naiad::testing {

class RegistryFixture;

struct ImageRecipe {
  std::string name;
  // Installed with apt-get --no-install-recommends on top of the base; empty for "base".
  std::vector<std::string> packages;
  // The image config's Cmd.
  std::vector<std::string> cmd;
};

struct ImageLayer {
  std::string digest;  // "sha256:<hex>"
  uint64_t size = 0;   // compressed, as stored in the registry
  std::string media_type;
};

struct TestImage {
  std::string name;        // the recipe
  std::string dir;         // the cache entry
  std::string layout_dir;  // OCI image layout
  std::string tag;         // the tag inside layout_dir
  std::string rootfs_dir;  // the image's filesystem, unpacked
  std::string manifest_digest;
  std::string config_digest;
  std::vector<ImageLayer> layers;  // bottom first
  uint64_t unpacked_bytes = 0;     // regular files (hard links once) plus symlink targets
  bool built = false;              // whether this Get() built it (false: cache hit)
  double build_seconds = 0;        // how long the build took when it was built

  // Copies the image to `registry` as <repo>:<tag> with skopeo; returns "<host:port>/<repo>:<tag>".
  absl::StatusOr<std::string> PushTo(RegistryFixture& registry, std::string_view repo) const;
};

class TestImages {
 public:
  // Builds the named recipe's image unless the cache has it, and describes it.
  static absl::StatusOr<TestImage> Get(std::string_view recipe);
  // The same for a recipe of the caller's (its name must be a plain word: it names files).
  static absl::StatusOr<TestImage> Get(const ImageRecipe& recipe);

  static absl::StatusOr<ImageRecipe> Recipe(std::string_view name);
  static std::vector<std::string> RecipeNames();
  // The hex hash that names a recipe's cache entry: suite, variant, mirror, packages, cmd and the
  // recipe format version all change it.
  static std::string RecipeKey(const ImageRecipe& recipe);
  // $NAIAD_TEST_CACHE, or /var/cache/naiad-test.
  static std::string CacheDir();
};

}  // namespace naiad::testing
