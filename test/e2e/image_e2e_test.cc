// `naiad image` on a real image and against independent readers:
//
//  * Round trip on the debootstrap python3 image: RAFS images built from its rootfs (dir-rafs) and
//    from its OCI layers (tar-rafs per gzip layer, then merge with --blob-digests) unpack, through
//    GNU tar, to exactly the rootfs: paths, types, modes, owners, sizes, content, symlink targets,
//    hardlink groups and xattrs.
//  * Overlay semantics: three generated layers with whiteouts, opaque directories, replaced files,
//    directories replaced by files and back, and re-created names, merged by `naiad image merge`,
//    show the same tree as the kernel's overlayfs stacking the same three layers.
//  * The kernel's EROFS driver, an independent reader, mounts the uncompressed image of the python
//    rootfs (blob as extra device) and shows exactly the rootfs; fsck.erofs accepts it.
//
// Needs root (mounts, device nodes, chown) and the cached python test image (built on first use).
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "image/image_command.h"
#include "rafs/bootstrap.h"
#include "rafs/chunk_reader.h"
#include "rafs/tree_snapshot.h"
#include "test/testing/test_env.h"
#include "test/testing/test_images.h"

namespace naiad::image {
namespace {

using ::naiad::rafs::testing::DiffSnapshots;
using ::naiad::rafs::testing::SnapshotDirectory;
using ::naiad::rafs::testing::SnapshotImage;
using ::naiad::rafs::testing::SnapshotOptions;
using ::naiad::rafs::testing::TreeSnapshot;
using ::naiad::testing::TestImage;
using ::naiad::testing::TestImages;

// Logs how long each step takes: these tests move half a gigabyte several times.
class Stopwatch {
 public:
  explicit Stopwatch(std::string what) : what_(std::move(what)) {}
  ~Stopwatch() {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start_)
                  .count();
    std::printf("[ step     ] %s: %.1f s\n", what_.c_str(), static_cast<double>(ms) / 1000);
    std::fflush(stdout);
  }

 private:
  std::string what_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Drops the overlayfs-private xattrs: overlayfs hides them when read through a mount, and the
// merger resolves (removes) the markers, so neither side should have any; this keeps the
// comparison about the visible tree should a kernel show them anyway.
void DropOverlayXattrs(TreeSnapshot& snapshot) {
  for (auto& [path, file] : snapshot) {
    std::erase_if(file.xattrs,
                  [](const auto& x) { return x.first.starts_with("trusted.overlay."); });
  }
}

class ImageE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NAIAD_SKIP_UNLESS_ROOT();
    ASSERT_OK_AND_ASSIGN(dir_, ::naiad::testing::CreateOwnedTempDir("naiad-image-e2e-"));
    ASSERT_OK(CreateDirectories(dir_.Join("blobs")));
    ASSERT_OK(CreateDirectories(dir_.Join("mnt")));
  }

  // Mounts come down even when an assertion failed half-way, before the tree is removed.
  void TearDown() override {
    if (dir_.path().empty()) return;
    for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) {
      if (::umount2(it->c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
        ADD_FAILURE() << "umount " << *it << ": " << std::strerror(errno);
      }
    }
    EXPECT_OK(::naiad::testing::UnmountAllUnder(dir_.path()));
  }

  static TestImage Python() {
    Stopwatch watch("TestImages::Get(python)");
    auto image = TestImages::Get("python");
    EXPECT_OK(image.status());
    return image.ok() ? *image : TestImage{};
  }

  // GNU tar extraction into a fresh directory: numeric owners, permissions and every xattr.
  std::string Extract(const std::string& tar, const std::string& name) {
    Stopwatch watch("extract " + name + " with GNU tar");
    std::string into = dir_.Join(name);
    EXPECT_OK(CreateDirectories(into));
    EXPECT_OK(RunCommandOk({"tar", "--xattrs", "--xattrs-include=*", "--numeric-owner",
                            "--same-owner", "-xpf", tar, "-C", into})
                  .status());
    return into;
  }

  void Unpack(const std::string& bootstrap, const std::string& blob_dir, const std::string& tar) {
    Stopwatch watch("naiad image unpack " + bootstrap);
    ASSERT_OK_AND_ASSIGN(
        nlohmann::json out,
        ::naiad::image::Unpack({.bootstrap = bootstrap, .output = tar, .blob_dir = blob_dir}));
    EXPECT_EQ(out["skipped_sockets"], 0);
  }

  // What every round trip is compared with.
  static TreeSnapshot RootfsSnapshot(const TestImage& image) {
    Stopwatch watch("snapshot of the rootfs");
    auto snapshot = SnapshotDirectory(image.rootfs_dir);
    EXPECT_OK(snapshot.status());
    EXPECT_GT(snapshot.ok() ? snapshot->size() : 0, 10000u);
    return snapshot.ok() ? *snapshot : TreeSnapshot{};
  }

  // The root directory is compared too: every reader here shows the rootfs's own root.
  void ExpectSameTree(const TreeSnapshot& want, const std::string& got_dir) {
    Stopwatch watch("snapshot and compare " + got_dir);
    ASSERT_OK_AND_ASSIGN(TreeSnapshot got, SnapshotDirectory(got_dir));
    std::string diff = DiffSnapshots(want, got);
    EXPECT_EQ(diff.substr(0, 20000), "");
    EXPECT_EQ(got.size(), want.size());
  }

  absl::Status Mount(const std::string& source, const std::string& target, const char* type,
                     const std::string& options) {
    if (::mount(source.c_str(), target.c_str(), type, MS_RDONLY, options.c_str()) != 0) {
      return ErrnoError(errno,
                        StrCat("mount -t ", type, " ", source, " ", target, " -o ", options));
    }
    mounts_.push_back(target);
    return absl::OkStatus();
  }

  ::naiad::TempDir dir_;
  std::vector<std::string> mounts_;
};

// ---------------------------------------------------------------------------------------------
// a. Round trips on the python3 rootfs.

TEST_F(ImageE2eTest, PythonRootfsRoundTripsThroughDirRafs) {
  TestImage image = Python();
  ASSERT_FALSE(image.rootfs_dir.empty());
  TreeSnapshot want = RootfsSnapshot(image);
  {
    Stopwatch watch("naiad image create dir-rafs");
    ASSERT_OK_AND_ASSIGN(nlohmann::json out, Create({.source = image.rootfs_dir,
                                                     .type = "dir-rafs",
                                                     .bootstrap = dir_.Join("dir.boot"),
                                                     .blob_dir = dir_.Join("blobs"),
                                                     .threads = 2}));
    EXPECT_EQ(out["blobs"].size(), 1u);
  }
  {
    Stopwatch watch("naiad image check");
    ASSERT_OK_AND_ASSIGN(nlohmann::json report, Check({.bootstrap = dir_.Join("dir.boot"),
                                                       .blob_dir = dir_.Join("blobs")}));
    EXPECT_GT(report["files"].get<int>(), 10000);
  }
  ASSERT_NO_FATAL_FAILURE(Unpack(dir_.Join("dir.boot"), dir_.Join("blobs"), dir_.Join("dir.tar")));
  ExpectSameTree(want, Extract(dir_.Join("dir.tar"), "from-dir"));
}

TEST_F(ImageE2eTest, PythonOciLayersRoundTripThroughTarRafsAndMerge) {
  TestImage image = Python();
  ASSERT_GE(image.layers.size(), 2u);
  TreeSnapshot want = RootfsSnapshot(image);
  std::vector<std::string> boots;
  std::vector<std::string> digests;
  std::vector<std::string> rafs_blob_ids;
  for (size_t i = 0; i < image.layers.size(); ++i) {
    const std::string& digest = image.layers[i].digest;
    ASSERT_TRUE(digest.starts_with("sha256:")) << digest;
    std::string layer_blob = image.layout_dir + "/blobs/sha256/" + digest.substr(7);
    std::string boot = dir_.Join(StrCat("layer", i, ".boot"));
    Stopwatch watch(StrCat("naiad image create tar-rafs layer ", i, " (", image.layers[i].size,
                           " bytes gzip)"));
    ASSERT_OK_AND_ASSIGN(nlohmann::json out, Create({.source = layer_blob,
                                                     .type = "tar-rafs",
                                                     .bootstrap = boot,
                                                     .blob_dir = dir_.Join("blobs"),
                                                     .threads = 2}));
    ASSERT_EQ(out["blobs"].size(), 1u) << out.dump();
    boots.push_back(boot);
    digests.push_back(digest);
    rafs_blob_ids.push_back(out["blobs"][0].get<std::string>());
  }
  std::string joined;
  for (const std::string& d : digests) joined += (joined.empty() ? "" : ",") + d;
  {
    Stopwatch watch("naiad image merge");
    ASSERT_OK_AND_ASSIGN(
        nlohmann::json out,
        Merge({.sources = boots, .bootstrap = dir_.Join("merged.boot"), .blob_digests = joined}));
    ASSERT_EQ(out["blobs"].size(), digests.size());
    // --blob-digests renames the blobs: the merged image refers to them by the given digests.
    for (size_t i = 0; i < digests.size(); ++i) EXPECT_EQ(out["blobs"][i], digests[i].substr(7));
  }
  // So the blobs are found under those names, as a registry would serve them.
  std::string merged_blobs = dir_.Join("merged-blobs");
  ASSERT_OK(CreateDirectories(merged_blobs));
  for (size_t i = 0; i < digests.size(); ++i) {
    ASSERT_EQ(::symlink(dir_.Join("blobs/" + rafs_blob_ids[i]).c_str(),
                        (merged_blobs + "/" + digests[i].substr(7)).c_str()),
              0);
  }
  {
    Stopwatch watch("naiad image check (merged)");
    ASSERT_OK(Check({.bootstrap = dir_.Join("merged.boot"), .blob_dir = merged_blobs}).status());
  }
  ASSERT_NO_FATAL_FAILURE(Unpack(dir_.Join("merged.boot"), merged_blobs, dir_.Join("merged.tar")));
  ExpectSameTree(want, Extract(dir_.Join("merged.tar"), "from-layers"));
}

// ---------------------------------------------------------------------------------------------
// b. Overlay semantics against the kernel's overlayfs.

// One change a layer makes, written either as an OCI layer (whiteout files) or in overlayfs form
// (0:0 character devices, trusted.overlay.opaque).
struct Change {
  enum Kind { kDir, kFile, kSymlink, kHardlink, kWhiteout, kOpaque } kind;
  std::string path;
  std::string data;  // file content, symlink target, hardlink target (a path in the layer)
  mode_t mode = 0644;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string xattr;  // "user.name=value"
};

absl::Status Materialize(const std::string& root, const std::vector<Change>& changes, bool oci) {
  RETURN_IF_ERROR(CreateDirectories(root));
  for (const Change& c : changes) {
    std::string path = root + "/" + c.path;
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    RETURN_IF_ERROR(CreateDirectories(parent.string()));
    switch (c.kind) {
      case Change::kDir:
        RETURN_IF_ERROR(CreateDirectories(path));
        break;
      case Change::kFile: {
        ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600));
        RETURN_IF_ERROR(WriteFull(fd.get(), c.data));
        break;
      }
      case Change::kSymlink:
        if (::symlink(c.data.c_str(), path.c_str()) != 0) return ErrnoError(errno, path);
        continue;  // no chmod/chown through a symlink
      case Change::kHardlink:
        if (::link((root + "/" + c.data).c_str(), path.c_str()) != 0) {
          return ErrnoError(errno, path);
        }
        continue;
      case Change::kWhiteout:
        if (oci) {
          std::string file = (parent / (".wh." + std::filesystem::path(path).filename().string()));
          ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644));
        } else if (::mknod(path.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
          return ErrnoError(errno, StrCat("mknod ", path));
        }
        continue;
      case Change::kOpaque:
        RETURN_IF_ERROR(CreateDirectories(path));
        if (oci) {
          ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path + "/.wh..wh..opq",
                                                       O_WRONLY | O_CREAT | O_TRUNC, 0644));
        } else if (::setxattr(path.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
          return ErrnoError(errno, StrCat("setxattr trusted.overlay.opaque ", path));
        }
        break;
    }
    if (::chmod(path.c_str(), c.mode) != 0) return ErrnoError(errno, StrCat("chmod ", path));
    if (::lchown(path.c_str(), c.uid, c.gid) != 0) return ErrnoError(errno, StrCat("chown ", path));
    if (!c.xattr.empty()) {
      size_t eq = c.xattr.find('=');
      std::string name = c.xattr.substr(0, eq);
      std::string value = c.xattr.substr(eq + 1);
      if (::setxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
        return ErrnoError(errno, StrCat("setxattr ", name, " ", path));
      }
    }
  }
  return absl::OkStatus();
}

std::string Content(size_t size, char seed) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(seed + i * 131 + (i >> 9));
  return data;
}

// Bottom, middle, top.
std::vector<std::vector<Change>> OverlayLayers() {
  using C = Change;
  std::vector<Change> bottom = {
      {C::kDir, "etc", "", 0755},
      {C::kFile, "etc/config", "v1\n"},
      {C::kFile, "etc/keep", "keep\n", 0644, 0, 0, "user.keep=yes"},
      {C::kFile, "etc/remove-me", "doomed\n"},
      {C::kFile, "top-level-file", "gone in the top layer\n"},
      {C::kDir, "usr/lib", "", 0755},
      {C::kFile, "usr/lib/libfoo.so", Content(300000, 'f'), 0755},
      {C::kHardlink, "usr/lib/libfoo.so.1", "usr/lib/libfoo.so"},
      {C::kFile, "usr/lib/libbaz.so", Content(5000, 'z'), 0755},
      {C::kHardlink, "usr/lib/libbaz.so.2", "usr/lib/libbaz.so"},
      {C::kFile, "usr/lib/libbar.so", Content(70000, 'b'), 0755, 0, 0, "user.tag=bar"},
      {C::kDir, "opt/app/sub", "", 0755},
      {C::kFile, "opt/app/a", "a\n"},
      {C::kFile, "opt/app/sub/b", "b\n"},
      {C::kDir, "var/data", "", 0700},
      {C::kFile, "var/data/x", "x\n"},
      {C::kDir, "srv", "", 0755},
      {C::kFile, "srv/node", "a file for now\n"},
      {C::kDir, "home/user", "", 0750, 1000, 1000},
      {C::kFile, "home/user/.profile", "PS1='$ '\n", 0644, 1000, 1000},
      {C::kFile, "home/user/doc.txt", "private\n", 0600, 1000, 1000, "user.note=mine"},
      {C::kDir, "bin", "", 0755},
      {C::kFile, "bin/dash", Content(1000, 'd'), 0755},
      {C::kSymlink, "bin/sh", "dash"},
      {C::kDir, "deleted-dir/inner", "", 0755},
      {C::kFile, "deleted-dir/inner/f", "f\n"},
      {C::kFile, "deleted-dir/g", "g\n"},
  };
  std::vector<Change> middle = {
      {C::kDir, "etc", "", 0750},  // the upper directory's attributes win
      {C::kFile, "etc/config", "v2\n", 0600},
      {C::kWhiteout, "etc/remove-me"},
      {C::kOpaque, "opt/app", "", 0755},
      {C::kFile, "opt/app/new", "fresh\n"},
      {C::kDir, "var", "", 0755},
      {C::kFile, "var/data", "the directory became a file\n", 0640},
      {C::kDir, "srv/node", "", 0711},  // the file became a directory
      {C::kFile, "srv/node/inner", "inner\n"},
      {C::kFile, "srv/node/other", "other\n"},
      {C::kWhiteout, "deleted-dir"},
      {C::kDir, "home/user", "", 0750, 1000, 1000},
      {C::kFile, "home/user/new.txt", "new\n", 0644, 1000, 1000},
      {C::kDir, "usr/lib", "", 0755},
      {C::kWhiteout, "usr/lib/libbar.so"},
  };
  std::vector<Change> top = {
      {C::kDir, "etc", "", 0755},
      {C::kFile, "etc/remove-me", "back again\n", 0640},  // re-created after its deletion
      {C::kWhiteout, "top-level-file"},
      {C::kWhiteout, "ghost"},             // removes nothing
      {C::kDir, "deleted-dir", "", 0700},  // re-created: none of the bottom content returns
      {C::kFile, "deleted-dir/new", "reborn\n"},
      {C::kDir, "var/data", "", 0755},  // and back to a directory
      {C::kFile, "var/data/y", "y\n"},
      {C::kDir, "srv/node", "", 0711},
      {C::kWhiteout, "srv/node/inner"},
      {C::kDir, "usr/lib", "", 0755},
      {C::kWhiteout, "usr/lib/libfoo.so"},  // its hardlink libfoo.so.1 stays
      {C::kFile, "usr/lib/libnew.so", Content(1 << 20, 'n'), 0755},
      {C::kDir, "bin", "", 0755},
      {C::kSymlink, "bin/sh", "bash"},
      {C::kFile, "bin/bash", Content(3000, 'B'), 0755},
      {C::kDir, "opt/app", "", 0755},
      {C::kFile, "opt/app/new", "fresher\n", 0644},
      {C::kOpaque, "home/user", "", 0700, 1000, 1000},
      {C::kFile, "home/user/only", "only this\n", 0644, 1000, 1000},
  };
  return {bottom, middle, top};
}

TEST_F(ImageE2eTest, MergedLayersShowWhatOverlayfsShows) {
  std::vector<std::vector<Change>> layers = OverlayLayers();
  std::vector<std::string> boots;
  std::vector<std::string> lowerdirs;  // bottom first
  for (size_t i = 0; i < layers.size(); ++i) {
    SCOPED_TRACE(i);
    std::string oci = dir_.Join(StrCat("oci", i));
    std::string overlay = dir_.Join(StrCat("overlay", i));
    ASSERT_OK(Materialize(oci, layers[i], true));
    ASSERT_OK(Materialize(overlay, layers[i], false));
    std::string tar = dir_.Join(StrCat("layer", i, ".tar"));
    ASSERT_OK(RunCommandOk({"tar", "--xattrs", "--xattrs-include=*", "--numeric-owner",
                            "--format=pax", "-cf", tar, "-C", oci, "."})
                  .status());
    std::string boot = dir_.Join(StrCat("layer", i, ".boot"));
    ASSERT_OK(Create({.source = tar,
                      .type = "tar-rafs",
                      .bootstrap = boot,
                      .blob_dir = dir_.Join("blobs"),
                      .chunk_size = "0x10000"})
                  .status());
    boots.push_back(boot);
    lowerdirs.push_back(overlay);
  }
  ASSERT_OK(Merge({.sources = boots, .bootstrap = dir_.Join("merged.boot")}).status());
  ASSERT_OK_AND_ASSIGN(auto boot, rafs::Bootstrap::Open(dir_.Join("merged.boot")));
  ASSERT_OK_AND_ASSIGN(auto reader,
                       rafs::LocalChunkReader::Open(*boot, {.blob_dir = dir_.Join("blobs")}));
  // The root is compared too: overlayfs shows the top layer's root directory, the image has the
  // top layer tar's "./" entry, made from a directory created the same way.
  SnapshotOptions options;
  ASSERT_OK_AND_ASSIGN(TreeSnapshot merged, SnapshotImage(*boot, *reader, options));

  std::string mnt = dir_.Join("mnt");
  ASSERT_OK(Mount("overlay", mnt, "overlay",
                  StrCat("lowerdir=", lowerdirs[2], ":", lowerdirs[1], ":", lowerdirs[0])));
  ASSERT_OK_AND_ASSIGN(TreeSnapshot kernel, SnapshotDirectory(mnt, options));
  DropOverlayXattrs(merged);
  DropOverlayXattrs(kernel);
  EXPECT_EQ(DiffSnapshots(kernel, merged), "");

  // The cases the layers set up, spelled out (a wrong kernel view would fail these too).
  EXPECT_EQ(kernel["etc/remove-me"].size, 11u);
  EXPECT_EQ(kernel["etc/config"].mode, S_IFREG | 0600);
  EXPECT_EQ(kernel["etc"].mode, S_IFDIR | 0755);
  EXPECT_TRUE(S_ISDIR(kernel["var/data"].mode));
  EXPECT_TRUE(S_ISDIR(kernel["srv/node"].mode));
  EXPECT_EQ(kernel["bin/sh"].symlink, "bash");
  EXPECT_EQ(kernel["etc/keep"].xattrs.size(), 1u);
  EXPECT_EQ(kernel["usr/lib/libbaz.so.2"].link_group, "usr/lib/libbaz.so");
  for (const char* gone :
       {"top-level-file", "ghost", "etc/.wh.remove-me", "opt/app/a", "opt/app/sub", "var/data/x",
        "srv/node/inner", "deleted-dir/g", "deleted-dir/inner", "usr/lib/libbar.so",
        "usr/lib/libfoo.so", "home/user/.profile", "home/user/new.txt", "home/user/doc.txt"}) {
    EXPECT_FALSE(merged.contains(gone)) << gone;
    EXPECT_FALSE(kernel.contains(gone)) << gone;
  }
  for (const char* kept : {"etc/keep", "opt/app/new", "var/data/y", "srv/node/other",
                           "deleted-dir/new", "usr/lib/libfoo.so.1", "home/user/only"}) {
    EXPECT_TRUE(merged.contains(kept)) << kept;
  }
}

// ---------------------------------------------------------------------------------------------
// c. The kernel's EROFS driver reads the python3 image.

TEST_F(ImageE2eTest, KernelErofsMountsThePythonImage) {
  TestImage image = Python();
  ASSERT_FALSE(image.rootfs_dir.empty());
  TreeSnapshot want = RootfsSnapshot(image);
  std::string boot = dir_.Join("image.boot");
  std::string blob = dir_.Join("image.blob");
  {
    Stopwatch watch("naiad image create --compressor none");
    ASSERT_OK(Create({.source = image.rootfs_dir,
                      .type = "dir-rafs",
                      .bootstrap = boot,
                      .blob = blob,
                      .compressor = "none",
                      .threads = 2})
                  .status());
  }
  {
    Stopwatch watch("fsck.erofs");
    // --extract without a directory decodes every file (plain fsck checks the superblock only).
    ASSERT_OK_AND_ASSIGN(RunResult fsck,
                         RunCommand({"fsck.erofs", "--extract", "--device=" + blob, boot}));
    EXPECT_EQ(fsck.exit_code, 0) << fsck.output;
  }
  // A file-backed mount with the blob as the extra device: mount(8) would set up a loop device
  // for the regular file, which the device= option cannot name.
  std::string mnt = dir_.Join("mnt");
  ASSERT_OK(Mount(boot, mnt, "erofs", "device=" + blob));
  ExpectSameTree(want, mnt);
}

}  // namespace
}  // namespace naiad::image
