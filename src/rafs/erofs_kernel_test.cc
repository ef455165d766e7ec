// An independent reader agrees with our writer: the Linux kernel's EROFS driver mounts a bootstrap
// built with --compressor none, with the blob as its extra device, and shows exactly the source
// tree; erofs-utils' fsck.erofs and dump.erofs accept the bootstrap.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/subprocess.h"
#include "base/test_files.h"
#include "rafs/builder.h"
#include "rafs/tar_source.h"
#include "rafs/tree_snapshot.h"
#include "tar/tar_testing.h"

namespace naiad::rafs {
namespace {

using ::naiad::rafs::testing::DiffSnapshots;
using ::naiad::rafs::testing::SnapshotDirectory;
using ::testing::HasSubstr;

void Write(const std::string& path, const std::string& data, mode_t mode = 0644) {
  ASSERT_OK(::naiad::testing::WriteTestFile(path, data, mode));
}

class ErofsKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting EROFS needs root";
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-erofs-"));
    src_ = dir_.Join("src");
    mnt_ = dir_.Join("mnt");
    ASSERT_OK(CreateDirectories(src_ + "/a/b/c"));
    ASSERT_OK(CreateDirectories(mnt_));
    std::string big(5 * 1024 * 1024 + 777, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) >> 5);
    Write(src_ + "/a/big.bin", big, 0755);
    Write(src_ + "/a/b/small.txt", "hello erofs\n");
    Write(src_ + "/a/b/c/empty", "");
    Write(src_ + "/a/dup.bin", big);
    ASSERT_EQ(::symlink("b/small.txt", (src_ + "/a/link").c_str()), 0);
    ASSERT_EQ(::symlink(std::string(3000, 'x').c_str(), (src_ + "/a/longlink").c_str()), 0);
    ASSERT_EQ(::link((src_ + "/a/b/small.txt").c_str(), (src_ + "/a/hard").c_str()), 0);
    ASSERT_EQ(::mknod((src_ + "/a/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    ASSERT_EQ(::mkfifo((src_ + "/a/fifo").c_str(), 0640), 0);
    ASSERT_EQ(::chown((src_ + "/a/b/small.txt").c_str(), 1234, 70000), 0);
    for (int i = 0; i < 600; ++i) Write(src_ + "/a/b/c/n" + std::to_string(i), std::to_string(i));
    // A sparse file: its holes become hole chunks (block address 0xFFFFFFFF), which the kernel
    // must read as zeros.
    UniqueFd sparse(::open((src_ + "/a/sparse.img").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_GE(sparse.get(), 0);
    ASSERT_EQ(::ftruncate(sparse.get(), (off_t{64} << 20) + 1000), 0);
    for (off_t at : {off_t{0}, (off_t{20} << 20) - 1, (off_t{64} << 20) + 997}) {
      ASSERT_EQ(::pwrite(sparse.get(), "data", 3, at), 3);
    }
    struct stat st;
    ASSERT_EQ(::fstat(sparse.get(), &st), 0);
    sparse_on_disk_ = st.st_blocks * 512 < (off_t{1} << 20);
    ::setxattr((src_ + "/a/big.bin").c_str(), "user.note", "chunked", 7, 0);
    ::setxattr((src_ + "/a/b").c_str(), "trusted.overlay.opaque", "y", 1, 0);
  }

  void TearDown() override {
    if (mounted_) ::umount2(mnt_.c_str(), MNT_DETACH);
  }

  TempDir dir_;
  std::string src_, mnt_;
  bool mounted_ = false;
  bool sparse_on_disk_ = false;  // the file system kept the holes
};

TEST_F(ErofsKernelTest, KernelMountShowsTheSourceTree) {
  ASSERT_OK_AND_ASSIGN(auto source, DirectorySource::Create(src_));
  std::string blob = dir_.Join("image.blob");
  ASSERT_OK_AND_ASSIGN(LayerBuildResult result,
                       BuildLayer(*source, {.compressor = Compressor::kNone, .blob_path = blob}));
  if (sparse_on_disk_) {
    EXPECT_EQ(result.stats.hole_chunks, 65u - 4);  // chunks 0, 19, 20 and 64 hold data
  }
  std::string boot = dir_.Join("image.boot");
  ASSERT_OK(WriteFileAtomically(boot, result.bootstrap));
  // File-backed mount with the blob as extra device (no loop devices needed).
  std::string options = "device=" + blob;
  ASSERT_EQ(::mount(boot.c_str(), mnt_.c_str(), "erofs", MS_RDONLY, options.c_str()), 0)
      << "mount: " << std::strerror(errno);
  mounted_ = true;
  ASSERT_OK_AND_ASSIGN(auto want, SnapshotDirectory(src_, {.compare_root = false}));
  ASSERT_OK_AND_ASSIGN(auto got, SnapshotDirectory(mnt_, {.compare_root = false}));
  EXPECT_EQ(DiffSnapshots(want, got), "");
}

TEST_F(ErofsKernelTest, ErofsUtilsAcceptTheBootstrap) {
  ASSERT_OK_AND_ASSIGN(auto source, DirectorySource::Create(src_));
  std::string blob = dir_.Join("image.blob");
  ASSERT_OK_AND_ASSIGN(LayerBuildResult result,
                       BuildLayer(*source, {.compressor = Compressor::kNone, .blob_path = blob}));
  std::string boot = dir_.Join("image.boot");
  ASSERT_OK(WriteFileAtomically(boot, result.bootstrap));
  ASSERT_OK_AND_ASSIGN(RunResult fsck, RunCommand({"fsck.erofs", "--device=" + blob, boot}));
  EXPECT_EQ(fsck.exit_code, 0) << fsck.output;
  ASSERT_OK_AND_ASSIGN(RunResult dump, RunCommand({"dump.erofs", "--device=" + blob, boot}));
  EXPECT_EQ(dump.exit_code, 0) << dump.output;
  EXPECT_THAT(dump.output, HasSubstr("Filesystem magic number"));
  ASSERT_OK_AND_ASSIGN(RunResult path,
                       RunCommand({"dump.erofs", "--device=" + blob, "--path=/a/big.bin", boot}));
  EXPECT_EQ(path.exit_code, 0) << path.output;
  EXPECT_THAT(path.output, HasSubstr("5243657"));  // its size
}

// The hole chunks of a sparse tar entry, independently of the file system the test runs on.
TEST_F(ErofsKernelTest, KernelReadsHoleChunksAsZeros) {
  // Data in chunks 0, 15, 16 and 40; the short last chunk (5 bytes) is a hole too.
  constexpr uint64_t kSize = (uint64_t{48} << 20) + 5;
  const std::vector<std::pair<uint64_t, std::string>> segments = {
      {7, "first"}, {(uint64_t{16} << 20) - 1, "straddles"}, {(uint64_t{40} << 20) + 9, "ab"}};
  std::string map, stored, want(kSize, '\0');
  for (const auto& [offset, bytes] : segments) {
    map += (map.empty() ? "" : ",") + std::to_string(offset) + "," + std::to_string(bytes.size());
    stored += bytes;
    want.replace(offset, bytes.size(), bytes);
  }
  tar::testing::TarBuilder tar;
  tar.Pax({{"GNU.sparse.map", map},
           {"GNU.sparse.realsize", std::to_string(kSize)},
           {"GNU.sparse.name", "disk.img"}});
  tar.Add({.name = "GNUSparseFile.0/disk.img"}, stored);
  ASSERT_OK_AND_ASSIGN(
      auto source, TarSource::FromStream(std::make_unique<tar::StringInputStream>(tar.Finish())));
  std::string blob = dir_.Join("sparse.blob");
  ASSERT_OK_AND_ASSIGN(LayerBuildResult result,
                       BuildLayer(*source, {.compressor = Compressor::kNone, .blob_path = blob}));
  EXPECT_EQ(result.stats.hole_chunks, 49u - 4);
  std::string boot = dir_.Join("sparse.boot");
  ASSERT_OK(WriteFileAtomically(boot, result.bootstrap));
  std::string options = "device=" + blob;
  ASSERT_EQ(::mount(boot.c_str(), mnt_.c_str(), "erofs", MS_RDONLY, options.c_str()), 0)
      << "mount: " << std::strerror(errno);
  mounted_ = true;
  ASSERT_OK_AND_ASSIGN(std::string got, ReadFileToString(mnt_ + "/disk.img"));
  EXPECT_EQ(got.size(), kSize);
  EXPECT_TRUE(got == want) << "the kernel's read of the sparse file differs";
  ASSERT_OK_AND_ASSIGN(RunResult fsck, RunCommand({"fsck.erofs", "--device=" + blob, boot}));
  EXPECT_EQ(fsck.exit_code, 0) << fsck.output;
}

}  // namespace
}  // namespace naiad::rafs
