// File: test/testing/image_builder.h
//
// The steps behind TestImages (test_images.h), each one a plain function over directories so the
// caching logic stays separate from the building:
//
//   RETURN_IF_ERROR(Debootstrap("bookworm", "minbase", mirror, tmp + "/rootfs"));
//   RETURN_IF_ERROR(BuildLayout(recipe, base_rootfs, tmp + "/entry"));   // layout/ + bundle/
//   ASSIGN_OR_RETURN(LayoutManifest m, ReadLayoutManifest(entry + "/layout", recipe.name));
//
// Every step that mounts something inside a rootfs takes it down again before returning, also on
// failure. None of them is atomic; callers build in a temporary directory and rename.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/file.h"
#include "test/testing/test_images.h"

namespace naiad::testing {

inline constexpr char kDebianSuite[] = "bookworm";
inline constexpr char kDebianVariant[] = "minbase";
inline constexpr char kDebianMirror[] = "http://deb.debian.org/debian";

// debootstrap --variant=<variant> <suite> <target> <mirror>, then TidyRootfs(). On failure,
// whatever debootstrap left mounted under `target` is unmounted.
absl::Status Debootstrap(const std::string& target);

// Empties /etc/resolv.conf and /etc/hostname (copied from the build machine) and drops apt's
// downloaded packages and package lists, as Debian's official images do.
absl::Status TidyRootfs(const std::string& rootfs);

// Builds `<entry>/layout` (OCI layout, tag = recipe.name) and `<entry>/bundle` (unpacked) from
// the base rootfs plus the recipe's packages.
absl::Status BuildLayout(const ImageRecipe& recipe, const std::string& base_rootfs,
                         const std::string& entry);

// apt-get installs `packages` inside `rootfs` via chroot, then drops apt's caches and lists.
absl::Status InstallPackages(const std::string& rootfs, const std::vector<std::string>& packages);

struct LayoutManifest {
  std::string manifest_digest;
  std::string config_digest;
  std::vector<ImageLayer> layers;
};
// Reads index.json and the manifest that `tag` names in an OCI layout.
absl::StatusOr<LayoutManifest> ReadLayoutManifest(const std::string& layout_dir,
                                                  const std::string& tag);

// Bytes in regular files (each hard-linked inode once) plus symlink target lengths under `dir`.
absl::StatusOr<uint64_t> UnpackedSize(const std::string& dir);

// An exclusive flock() on a lock file, held for the object's lifetime.
class FileLock {
 public:
  static absl::StatusOr<FileLock> Acquire(const std::string& path);

 private:
  explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace naiad::testing
