#include "test/testing/image_builder.h"

#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "nlohmann/json.hpp"
#include "test/testing/test_env.h"

namespace naiad::testing {
namespace {

constexpr absl::Duration kStepTimeout = absl::Minutes(30);
constexpr char kPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

absl::Status Run(const std::vector<std::string>& argv) {
  LogInfo("test image step", {{"command", CommandLineForDisplay(argv)}});
  return RunCommandOk(argv, {.timeout = kStepTimeout}).status();
}

// Runs `argv` inside the chroot with a clean environment: ours would leak the test's PATH
// (pyenv shims and the like) into apt's maintainer scripts.
absl::Status Chroot(const std::string& rootfs, const std::vector<std::string>& argv) {
  std::vector<std::string> full = {"chroot",   rootfs,   "/usr/bin/env",
                                   "-i",       kPath,    "HOME=/root",
                                   "LC_ALL=C", "LANG=C", "DEBIAN_FRONTEND=noninteractive"};
  full.insert(full.end(), argv.begin(), argv.end());
  return Run(full);
}

absl::Status MountProc(const std::string& target) {
  if (::mount("proc", target.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    return ErrnoError(errno, StrCat("mount proc on ", target));
  }
  return absl::OkStatus();
}

// Replaces a file for the duration of a scope and puts the original back (or removes the file if
// there was none), so nothing of the build machine ends up in the image.
class ScopedFileOverride {
 public:
  ScopedFileOverride(std::string path, std::string_view content, mode_t mode)
      : path_(std::move(path)) {
    std::error_code ec;
    had_original_ = std::filesystem::exists(std::filesystem::symlink_status(path_, ec));
    if (had_original_) std::filesystem::rename(path_, Saved(), ec);
    status_ = WriteFileAtomically(path_, content, mode);
  }
  ~ScopedFileOverride() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
    if (had_original_) std::filesystem::rename(Saved(), path_, ec);
  }
  const absl::Status& status() const { return status_; }

 private:
  std::string Saved() const { return path_ + ".naiad-saved"; }
  std::string path_;
  bool had_original_ = false;
  absl::Status status_;
};

absl::Status ClearDirectory(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    RETURN_IF_ERROR(RemoveAll(entry.path().string()));
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ReadJson(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(StrCat("parsing ", path, ": ", e.what()));
  }
}

std::string BlobPath(const std::string& layout_dir, const std::string& digest) {
  std::string hex = digest.substr(digest.find(':') + 1);
  return StrCat(layout_dir, "/blobs/sha256/", hex);
}

absl::StatusOr<std::string> FindTagDigest(const nlohmann::json& index, const std::string& tag) {
  for (const auto& m : index.at("manifests")) {
    if (m.value("annotations", nlohmann::json::object())
            .value("org.opencontainers.image.ref.name", "") == tag) {
      return m.at("digest").get<std::string>();
    }
  }
  return absl::NotFoundError(StrCat("tag ", tag, " not in index.json"));
}

absl::StatusOr<LayoutManifest> ParseManifest(const std::string& layout_dir,
                                             const std::string& tag) {
  ASSIGN_OR_RETURN(nlohmann::json index, ReadJson(layout_dir + "/index.json"));
  LayoutManifest result;
  ASSIGN_OR_RETURN(result.manifest_digest, FindTagDigest(index, tag));
  ASSIGN_OR_RETURN(nlohmann::json manifest, ReadJson(BlobPath(layout_dir, result.manifest_digest)));
  result.config_digest = manifest.at("config").at("digest").get<std::string>();
  for (const auto& layer : manifest.at("layers")) {
    result.layers.push_back({.digest = layer.at("digest").get<std::string>(),
                             .size = layer.at("size").get<uint64_t>(),
                             .media_type = layer.at("mediaType").get<std::string>()});
  }
  return result;
}

}  // namespace

absl::Status Debootstrap(const std::string& target) {
  absl::Status status = Run(
      {"debootstrap", StrCat("--variant=", kDebianVariant), kDebianSuite, target, kDebianMirror});
  // debootstrap mounts proc and sys inside the target while it works; an error can leave them.
  absl::Status unmounted = UnmountAllUnder(target);
  RETURN_IF_ERROR(status);
  RETURN_IF_ERROR(unmounted);
  return TidyRootfs(target);
}

absl::Status TidyRootfs(const std::string& rootfs) {
  // What debootstrap copies from the build machine, and the package downloads and indexes it
  // keeps (about 80 MB); Debian's own container images ship without them.
  RETURN_IF_ERROR(WriteFileAtomically(rootfs + "/etc/resolv.conf", ""));
  RETURN_IF_ERROR(WriteFileAtomically(rootfs + "/etc/hostname", "localhost\n"));
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(rootfs + "/var/cache/apt", ec)) {
    if (entry.path().extension() == ".bin") RETURN_IF_ERROR(RemoveAll(entry.path().string()));
  }
  for (const auto& entry :
       std::filesystem::directory_iterator(rootfs + "/var/cache/apt/archives", ec)) {
    if (entry.path().extension() == ".deb") RETURN_IF_ERROR(RemoveAll(entry.path().string()));
  }
  return ClearDirectory(rootfs + "/var/lib/apt/lists");
}

absl::Status InstallPackages(const std::string& rootfs, const std::vector<std::string>& packages) {
  RETURN_IF_ERROR(MountProc(rootfs + "/proc"));
  absl::Cleanup unmount = [&] { UnmountAllUnder(rootfs).IgnoreError(); };
  ASSIGN_OR_RETURN(std::string resolv, ReadFileToString("/etc/resolv.conf"));
  ScopedFileOverride resolv_conf(rootfs + "/etc/resolv.conf", resolv, 0644);
  RETURN_IF_ERROR(resolv_conf.status());
  // Keeps maintainer scripts from starting services inside the chroot.
  ScopedFileOverride policy(rootfs + "/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0755);
  RETURN_IF_ERROR(policy.status());
  RETURN_IF_ERROR(Chroot(rootfs, {"apt-get", "update"}));
  std::vector<std::string> install = {"apt-get", "install", "-y", "--no-install-recommends"};
  install.insert(install.end(), packages.begin(), packages.end());
  RETURN_IF_ERROR(Chroot(rootfs, install));
  RETURN_IF_ERROR(Chroot(rootfs, {"apt-get", "clean"}));
  return ClearDirectory(rootfs + "/var/lib/apt/lists");
}

absl::Status BuildLayout(const ImageRecipe& recipe, const std::string& base_rootfs,
                         const std::string& entry) {
  const std::string layout = entry + "/layout";
  const std::string bundle = entry + "/bundle";
  const std::string ref = StrCat(layout, ":", recipe.name);
  RETURN_IF_ERROR(Run({"umoci", "init", "--layout", layout}));
  RETURN_IF_ERROR(Run({"umoci", "new", "--image", ref}));
  RETURN_IF_ERROR(
      Run({"umoci", "insert", "--image", ref, "--history.created_by",
           StrCat("debootstrap --variant=", kDebianVariant, " ", kDebianSuite), base_rootfs, "/"}));
  RETURN_IF_ERROR(Run({"umoci", "unpack", "--image", ref, bundle}));
  if (!recipe.packages.empty()) {
    RETURN_IF_ERROR(InstallPackages(bundle + "/rootfs", recipe.packages));
    std::string installed = "apt-get install";
    for (const std::string& p : recipe.packages) StrAppend(&installed, " ", p);
    RETURN_IF_ERROR(
        Run({"umoci", "repack", "--image", ref, "--history.created_by", installed, bundle}));
  }
  std::vector<std::string> config = {"umoci", "config", "--image", ref, "--config.env", kPath};
  for (const std::string& arg : recipe.cmd) {
    config.push_back("--config.cmd");
    config.push_back(arg);
  }
  RETURN_IF_ERROR(Run(config));
  return Run({"umoci", "gc", "--layout", layout});
}

absl::StatusOr<LayoutManifest> ReadLayoutManifest(const std::string& layout_dir,
                                                  const std::string& tag) {
  try {
    return ParseManifest(layout_dir, tag);
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(StrCat("reading the OCI layout ", layout_dir, ": ", e.what()));
  }
}

absl::StatusOr<uint64_t> UnpackedSize(const std::string& dir) {
  std::error_code ec;
  std::set<std::pair<dev_t, ino_t>> seen;
  uint64_t total = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0) return ErrnoError(errno, "lstat");
    if (S_ISLNK(st.st_mode)) total += static_cast<uint64_t>(st.st_size);
    if (!S_ISREG(st.st_mode)) continue;
    if (st.st_nlink > 1 && !seen.insert({st.st_dev, st.st_ino}).second) continue;
    total += static_cast<uint64_t>(st.st_size);
  }
  if (ec) return ErrnoError(ec.value(), StrCat("walking ", dir));
  return total;
}

absl::StatusOr<FileLock> FileLock::Acquire(const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_RDWR | O_CREAT, 0644));
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return ErrnoError(errno, StrCat("flock ", path));
  }
  return FileLock(std::move(fd));
}

}  // namespace naiad::testing
