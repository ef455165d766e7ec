// `naiad image` end to end on real inputs: upstream's tar fixtures and generated trees go through
// create -> (check, inspect) -> unpack, and come back as the same tree.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "base/test_files.h"
#include "image/image_command.h"
#include "rafs/bootstrap.h"
#include "rafs/chunk_reader.h"
#include "rafs/tree_snapshot.h"
#include "tar/tar_testing.h"

namespace naiad::image {
namespace {

using ::naiad::rafs::testing::DiffSnapshots;
using ::naiad::rafs::testing::SnapshotDirectory;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

std::string FixturePath(const std::string& relative) {
  return ::naiad::testing::NydusFixturePath(relative);
}

void Write(const std::string& path, const std::string& data, mode_t mode = 0644) {
  ASSERT_OK(::naiad::testing::WriteTestFile(path, data, mode));
}

size_t CountEntries(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++n;
  }
  return n;
}

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-image-"));
    ASSERT_OK(CreateDirectories(dir_.Join("blobs")));
    ASSERT_OK(CreateDirectories(dir_.Join("out")));
  }

  // Extracts a tar with GNU tar (numeric owners, xattrs) into a fresh directory.
  std::string Extract(const std::string& tar, const std::string& name) {
    std::string into = dir_.Join(name);
    EXPECT_OK(CreateDirectories(into));
    auto r = RunCommandOk(
        {"tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", tar, "-C", into});
    EXPECT_OK(r.status());
    return into;
  }

  // create -> check -> unpack -> extract, compared with extracting the input directly.
  void ExpectTarRoundTrip(const std::string& tar, bool compare_xattrs, int compression_level = 3) {
    ASSERT_OK(Create({.source = tar,
                      .type = "tar-rafs",
                      .bootstrap = dir_.Join("l.boot"),
                      .blob_dir = dir_.Join("blobs"),
                      .compression_level = compression_level})
                  .status());
    ASSERT_OK_AND_ASSIGN(nlohmann::json report,
                         Check({.bootstrap = dir_.Join("l.boot"), .blob_dir = dir_.Join("blobs")}));
    EXPECT_GT(report["files"].get<int>(), 0);
    ASSERT_OK(Unpack({.bootstrap = dir_.Join("l.boot"),
                      .output = dir_.Join("out/back.tar"),
                      .blob_dir = dir_.Join("blobs")})
                  .status());
    std::string want_dir = Extract(tar, "want");
    std::string got_dir = Extract(dir_.Join("out/back.tar"), "got");
    rafs::testing::SnapshotOptions options{.compare_root = false, .include_xattrs = compare_xattrs};
    ASSERT_OK_AND_ASSIGN(auto want, SnapshotDirectory(want_dir, options));
    ASSERT_OK_AND_ASSIGN(auto got, SnapshotDirectory(got_dir, options));
    EXPECT_EQ(DiffSnapshots(want, got), "");
    EXPECT_GT(want.size(), 5u);
  }

  TempDir dir_;
};

TEST_F(ImageTest, UpstreamAllEntryTypeTarRoundTrips) {
  if (!std::filesystem::exists(FixturePath("tar"))) GTEST_SKIP() << "no ../shared/fixtures";
  ExpectTarRoundTrip(FixturePath("tar/all-entry-type.tar"), true);
}

TEST_F(ImageTest, UpstreamMacosTarRoundTrips) {
  if (!std::filesystem::exists(FixturePath("tar"))) GTEST_SKIP() << "no ../shared/fixtures";
  // bsdtar's LIBARCHIVE.xattr.* records are ours to keep but GNU tar drops them on extraction,
  // so the two extractions are compared without xattrs.
  ExpectTarRoundTrip(FixturePath("tar/all-entry-type-macos.tar"), false);
}

TEST_F(ImageTest, UpstreamEmptyTarIsAnEmptyImage) {
  if (!std::filesystem::exists(FixturePath("tar"))) GTEST_SKIP() << "no ../shared/fixtures";
  ASSERT_OK_AND_ASSIGN(nlohmann::json out, Create({.source = FixturePath("tar/empty.tar"),
                                                   .type = "tar-rafs",
                                                   .bootstrap = dir_.Join("e.boot"),
                                                   .blob_dir = dir_.Join("blobs")}));
  EXPECT_TRUE(out["blobs"].empty());
  ASSERT_OK_AND_ASSIGN(nlohmann::json report, Check({.bootstrap = dir_.Join("e.boot")}));
  EXPECT_EQ(report["files"], 0);
}

// A generated tree with every entry type, long names, xattrs, sparse and large-id files,
// packed by GNU tar in pax format and compressed three ways (and built at three zstd levels).
TEST_F(ImageTest, GeneratedTreeRoundTripsThroughEachCompression) {
  std::string src = dir_.Join("src");
  ASSERT_OK(CreateDirectories(src + "/deep/" + std::string(200, 'd') + "/x"));
  Write(src + "/deep/" + std::string(200, 'd') + "/x/" + std::string(250, 'f'), "long name");
  std::string big(2'500'000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 >> 3);
  Write(src + "/big", big, 0700);
  Write(src + "/empty", "");
  ASSERT_EQ(::symlink("big", (src + "/link").c_str()), 0);
  ASSERT_EQ(::link((src + "/big").c_str(), (src + "/hard").c_str()), 0);
  ASSERT_EQ(::mkfifo((src + "/fifo").c_str(), 0600), 0);
  if (::geteuid() == 0) {
    ASSERT_EQ(::mknod((src + "/tty").c_str(), S_IFCHR | 0620, makedev(4, 1)), 0);
    ASSERT_EQ(::chown((src + "/empty").c_str(), 3000000, 3000001), 0);
  }
  ::setxattr((src + "/big").c_str(), "user.origin", "generated", 9, 0);
  ASSERT_OK(RunCommandOk({"truncate", "-s", "64M", src + "/sparse"}).status());
  ASSERT_OK(RunCommandOk({"sh", "-c",
                          "printf tail | dd of=" + src +
                              "/sparse bs=1 seek=50000000 conv=notrunc 2>/dev/null"})
                .status());
  for (auto [flag, level] : {std::pair{"", 3}, {"--gzip", 1}, {"--zstd", 19}}) {
    SCOPED_TRACE(StrCat(flag, " level ", level));
    std::string tar = dir_.Join("in.tar");
    std::vector<std::string> cmd = {
        "tar", "--xattrs", "--format=pax", "--sparse", "--numeric-owner",
        "-cf", tar,        "-C",           src,        "."};
    if (*flag != '\0') cmd.insert(cmd.begin() + 1, flag);
    ASSERT_OK(RunCommandOk(cmd).status());
    ExpectTarRoundTrip(tar, true, level);
    ASSERT_OK(RemoveAll(dir_.Join("want")));
    ASSERT_OK(RemoveAll(dir_.Join("got")));
  }
}

TEST_F(ImageTest, InspectAnswersEachRequest) {
  if (!std::filesystem::exists(FixturePath("tar"))) GTEST_SKIP() << "no ../shared/fixtures";
  ASSERT_OK(Create({.source = FixturePath("tar/all-entry-type.tar"),
                    .bootstrap = dir_.Join("l.boot"),
                    .blob_dir = dir_.Join("blobs")})
                .status());
  std::string boot = dir_.Join("l.boot");
  EXPECT_THAT(Inspect({.bootstrap = boot}),
              ::naiad::testing::IsOkAndHolds(HasSubstr("\"chunk_size\": 1048576")));
  EXPECT_THAT(Inspect({.bootstrap = boot, .request = "tree"}),
              ::naiad::testing::IsOkAndHolds(HasSubstr("/tar/dir1/dir3/hardlink1.txt")));
  EXPECT_THAT(Inspect({.bootstrap = boot, .request = "stat", .path = "/tar/dir2/symlink1.txt"}),
              ::naiad::testing::IsOkAndHolds(HasSubstr("../dir1/dir3/file1.txt")));
  EXPECT_THAT(
      Inspect({.bootstrap = boot, .request = "chunks", .path = "/tar/dir1/dir3/hardlink1.txt"}),
      ::naiad::testing::IsOkAndHolds(HasSubstr("\"uncompressed_size\": 15")));
  EXPECT_THAT(Inspect({.bootstrap = boot, .request = "bogus"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bogus")));
}

TEST_F(ImageTest, FailedCreateLeavesNothingBehind) {
  std::string src = dir_.Join("src");
  ASSERT_OK(CreateDirectories(src));
  Write(src + "/a", std::string(300000, 'a'));
  std::string tar = dir_.Join("in.tar");
  ASSERT_OK(RunCommandOk({"tar", "-cf", tar, "-C", src, "."}).status());
  ASSERT_OK(RunCommandOk({"truncate", "-s", "2048", tar}).status());  // cut inside the file data
  EXPECT_THAT(
      Create({.source = tar, .bootstrap = dir_.Join("out/l.boot"), .blob_dir = dir_.Join("out")}),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  EXPECT_EQ(CountEntries(dir_.Join("out")), 0u);
}

TEST_F(ImageTest, CheckFindsEachKindOfCorruption) {
  std::string src = dir_.Join("src");
  ASSERT_OK(CreateDirectories(src + "/d"));
  Write(src + "/d/f", std::string(3 << 20, 'x') + "end");
  ASSERT_OK_AND_ASSIGN(
      nlohmann::json out,
      Create({.source = src, .bootstrap = dir_.Join("l.boot"), .blob_dir = dir_.Join("blobs")}));
  std::string blob = dir_.Join("blobs/") + out["blobs"][0].get<std::string>();
  ASSERT_OK(Check({.bootstrap = dir_.Join("l.boot"), .blob_dir = dir_.Join("blobs")}).status());

  // A flipped byte in the blob's chunk data.
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFileToString(blob));
  std::string bad = data;
  bad[10] ^= 0x55;
  ASSERT_OK(WriteFileAtomically(blob, bad));
  EXPECT_THAT(
      Check({.bootstrap = dir_.Join("l.boot"), .blob_dir = dir_.Join("blobs")}),
      StatusIs(absl::StatusCode::kDataLoss,
               ::testing::AnyOf(HasSubstr("does not match its digest"), HasSubstr("zstd"))));
  ASSERT_OK(WriteFileAtomically(blob, data));

  ASSERT_OK_AND_ASSIGN(std::string boot, ReadFileToString(dir_.Join("l.boot")));
  auto check_corrupt = [&](const std::string& corrupted, std::string_view expect) {
    ASSERT_OK(WriteFileAtomically(dir_.Join("bad.boot"), corrupted));
    EXPECT_THAT(Check({.bootstrap = dir_.Join("bad.boot")}),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr(std::string(expect))));
  };
  check_corrupt(boot.substr(0, boot.size() - 4096), "chunk table");
  std::string bad_magic = boot;
  bad_magic[1024] = 0;
  check_corrupt(bad_magic, "magic");
  // A chunk-table record pointing past its blob.
  uint64_t chunk_table;
  std::memcpy(&chunk_table, boot.data() + 1152 + 24, 8);
  std::string bad_offset = boot;
  uint64_t huge = uint64_t{1} << 36;
  std::memcpy(bad_offset.data() + chunk_table + 56, &huge, 8);
  check_corrupt(bad_offset, "disagree");
  EXPECT_THAT(Check({.bootstrap = dir_.Join("l.boot"), .blob_dir = dir_.Join("nowhere")}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nowhere")));
}

// Byte offsets in a bootstrap built by our writer, for crafting corrupt ones.
uint64_t InodeOffset(const rafs::Bootstrap& boot, uint64_t nid) {
  return uint64_t{boot.superblock().meta_blkaddr} * rafs::kBlockSize + nid * rafs::kInodeSlotSize;
}

template <typename T>
void Poke(std::string& bytes, uint64_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

// Regression: a layer whose only file data is a hole (blkaddr 0xFFFFFFFF: reads as zeros) has no
// blob, and merge indexed its empty blob remap table with the hole's blob index 0 (out of bounds;
// a crash). Holes name no blob, so there is nothing to remap.
TEST_F(ImageTest, MergeKeepsHolesOfLayersWithoutBlobs) {
  std::string src = dir_.Join("src");
  ASSERT_OK(CreateDirectories(src));
  Write(src + "/f", std::string(4096, 'x'));
  ASSERT_OK(Create({.source = src,
                    .bootstrap = dir_.Join("data.boot"),
                    .blob_dir = dir_.Join("blobs"),
                    .chunk_size = "0x1000"})
                .status());
  // The same layer with its only chunk turned into a hole and its blob and chunk tables dropped.
  ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFileToString(dir_.Join("data.boot")));
  ASSERT_OK_AND_ASSIGN(auto boot, rafs::Bootstrap::FromBytes(bytes));
  ASSERT_OK_AND_ASSIGN(uint64_t nid, boot->Resolve("/f"));
  uint64_t index = (InodeOffset(*boot, nid) + sizeof(rafs::CompactInode) + 7) / 8 * 8;
  Poke<uint32_t>(bytes, index + offsetof(rafs::ChunkIndex, blkaddr), 0xFFFFFFFF);
  Poke<uint16_t>(bytes, rafs::kSuperblockOffset + offsetof(rafs::ErofsSuperblock, extra_devices),
                 0);
  Poke<uint32_t>(
      bytes, rafs::kExtSuperblockOffset + offsetof(rafs::RafsExtSuperblock, blob_table_size), 0);
  Poke<uint64_t>(
      bytes, rafs::kExtSuperblockOffset + offsetof(rafs::RafsExtSuperblock, chunk_table_size), 0);
  ASSERT_OK(WriteFileAtomically(dir_.Join("hole.boot"), bytes));
  ASSERT_OK_AND_ASSIGN(auto hole, rafs::Bootstrap::FromBytes(bytes));
  ASSERT_TRUE(hole->blobs().empty());
  ASSERT_OK_AND_ASSIGN(auto chunks, hole->FileChunks(nid));
  ASSERT_EQ(chunks.size(), 1u);
  ASSERT_TRUE(chunks[0].hole);

  ASSERT_OK_AND_ASSIGN(nlohmann::json out, Merge({.sources = {dir_.Join("hole.boot")},
                                                  .bootstrap = dir_.Join("m.boot")}));
  EXPECT_TRUE(out["blobs"].empty());
  ASSERT_OK(Unpack({.bootstrap = dir_.Join("m.boot"), .output = dir_.Join("out/m.tar")}).status());
  std::string got = Extract(dir_.Join("out/m.tar"), "got");
  EXPECT_THAT(ReadFileToString(got + "/f"),
              ::naiad::testing::IsOkAndHolds(std::string(4096, '\0')));
}

// Regression: unpack and `inspect --request tree` followed every directory entry without
// remembering directories, so a corrupt bootstrap whose directories each list the next one under
// two names (no cycle, so no nesting error) made them walk 2^depth paths: 2^30 here, hanging and
// writing an endless tar. Check and the merger already refused a directory reachable twice; now
// every tree walk does.
TEST_F(ImageTest, DirectoryReachableTwiceIsCorruptForEveryWalker) {
  constexpr int kLevels = 30;
  std::string src = dir_.Join("src");
  std::string level = src;
  for (int i = 0; i < kLevels; ++i) {
    ASSERT_OK(CreateDirectories(level + "/b"));
    level += "/a";
  }
  ASSERT_OK(CreateDirectories(level));
  ASSERT_OK(
      Create({.source = src, .bootstrap = dir_.Join("l.boot"), .blob_dir = dir_.Join("blobs")})
          .status());
  ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFileToString(dir_.Join("l.boot")));
  ASSERT_OK_AND_ASSIGN(auto boot, rafs::Bootstrap::FromBytes(bytes));
  // Each level's entries are ".", "..", "a", "b": point "b" at the same directory as "a".
  std::string path;
  for (int i = 0; i < kLevels; ++i) {
    ASSERT_OK_AND_ASSIGN(uint64_t nid, boot->Resolve(path.empty() ? "/" : path));
    ASSERT_OK_AND_ASSIGN(rafs::Inode inode, boot->GetInode(nid));
    ASSERT_EQ(inode.layout, rafs::DataLayout::kFlatInline);
    ASSERT_EQ(inode.xattr_icount, 0);
    ASSERT_OK_AND_ASSIGN(rafs::DirEntry a, boot->Lookup(nid, "a"));
    uint64_t dirents = InodeOffset(*boot, nid) + inode.inode_size;
    Poke<uint64_t>(bytes, dirents + 3 * sizeof(rafs::Dirent), a.nid);
    path += "/a";
  }
  ASSERT_OK(WriteFileAtomically(dir_.Join("dag.boot"), bytes));

  auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(Unpack({.bootstrap = dir_.Join("dag.boot"), .output = dir_.Join("out/l.tar")}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("twice")));
  EXPECT_EQ(CountEntries(dir_.Join("out")), 0u);
  EXPECT_THAT(Inspect({.bootstrap = dir_.Join("dag.boot"), .request = "tree"}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("twice")));
  EXPECT_THAT(Check({.bootstrap = dir_.Join("dag.boot")}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("twice")));
  EXPECT_THAT(Merge({.sources = {dir_.Join("dag.boot")}, .bootstrap = dir_.Join("m.boot")}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("twice")));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

double CpuSeconds() {
  struct rusage usage;
  ::getrusage(RUSAGE_SELF, &usage);  // every thread of the process
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// A sparse-file bomb: a tar of a few KiB declaring a 64 GiB file that holds three short data
// segments. Its holes used to be read as zeros, hashed and deduplicated chunk by chunk (64 GiB
// of work); now every chunk-sized hole is a hole chunk, recorded without being read.
TEST_F(ImageTest, SparseFileHolesCostNothingAndReadBackAsZeros) {
  constexpr uint64_t kChunk = 1 << 20;
  constexpr uint64_t kSize = uint64_t{64} << 30;
  // The middle segment straddles a chunk boundary: four chunks hold data.
  const std::vector<std::pair<uint64_t, std::string>> segments = {
      {0, "head"}, {(uint64_t{32} << 30) - 3, "middle"}, {kSize - 4, "tail"}};
  std::string map, stored;
  for (const auto& [offset, bytes] : segments) {
    StrAppend(&map, map.empty() ? "" : ",", offset, ",", bytes.size());
    stored += bytes;
  }
  tar::testing::TarBuilder tar;
  tar.Pax({{"GNU.sparse.map", map},
           {"GNU.sparse.realsize", std::to_string(kSize)},
           {"GNU.sparse.name", "disk.img"}});
  tar.Add({.name = "GNUSparseFile.0/disk.img"}, stored);
  tar.File("after", "a file after the sparse one\n");
  Write(dir_.Join("sparse.tar"), tar.Finish());

  double cpu = CpuSeconds();
  ASSERT_OK_AND_ASSIGN(nlohmann::json out, Create({.source = dir_.Join("sparse.tar"),
                                                   .type = "tar-rafs",
                                                   .bootstrap = dir_.Join("l.boot"),
                                                   .blob_dir = dir_.Join("blobs")}));
  cpu = CpuSeconds() - cpu;
  EXPECT_EQ(out["stats"]["hole_chunks"], kSize / kChunk - 4);
  EXPECT_EQ(out["stats"]["chunks_stored"], 5);                   // four data chunks and "after"
  EXPECT_LT(out["stats"]["bytes"].get<uint64_t>(), 5 * kChunk);  // what was read: no holes
  EXPECT_LT(cpu, 5.0) << "CPU seconds for a 64 GiB sparse file of 14 data bytes";
  std::string blob = dir_.Join("blobs/") + out["blobs"][0].get<std::string>();
  EXPECT_LT(std::filesystem::file_size(blob), 64u << 10);
  // An 8-byte index per chunk of the file is all the holes cost.
  EXPECT_LT(std::filesystem::file_size(dir_.Join("l.boot")), (kSize / kChunk) * 8 + (64 << 10));

  ASSERT_OK_AND_ASSIGN(nlohmann::json report,
                       Check({.bootstrap = dir_.Join("l.boot"), .blob_dir = dir_.Join("blobs")}));
  EXPECT_EQ(report["files"], 2);
  EXPECT_EQ(report["verified_chunks"], 5);

  // Read back with the RAFS reader: data where the segments are, zeros everywhere else.
  ASSERT_OK_AND_ASSIGN(auto boot, rafs::Bootstrap::Open(dir_.Join("l.boot")));
  ASSERT_OK_AND_ASSIGN(auto reader, rafs::LocalChunkReader::Open(*boot, {dir_.Join("blobs")}));
  ASSERT_OK_AND_ASSIGN(uint64_t nid, boot->Resolve("/disk.img"));
  ASSERT_OK_AND_ASSIGN(rafs::Inode inode, boot->GetInode(nid));
  EXPECT_EQ(inode.size, kSize);
  ASSERT_OK_AND_ASSIGN(std::vector<rafs::ChunkRef> chunks, boot->FileChunks(nid));
  ASSERT_EQ(chunks.size(), kSize / kChunk);
  uint64_t holes = 0;
  for (const rafs::ChunkRef& chunk : chunks) {
    uint64_t end = chunk.file_offset + kChunk;
    bool has_data = std::any_of(segments.begin(), segments.end(), [&](const auto& segment) {
      return segment.first < end && segment.first + segment.second.size() > chunk.file_offset;
    });
    EXPECT_EQ(chunk.hole, !has_data) << "chunk at " << chunk.file_offset;
    holes += chunk.hole;
    if (!has_data && chunk.file_offset != kChunk) continue;  // one hole is read, as zeros
    std::string want(kChunk, '\0');
    for (const auto& [offset, bytes] : segments) {
      for (uint64_t i = 0; i < bytes.size(); ++i) {
        if (offset + i >= chunk.file_offset && offset + i < end) {
          want[offset + i - chunk.file_offset] = bytes[i];
        }
      }
    }
    ASSERT_OK_AND_ASSIGN(std::string got, reader->Read(chunk));
    EXPECT_TRUE(got == want) << "chunk at " << chunk.file_offset;
  }
  EXPECT_EQ(holes, kSize / kChunk - 4);
  ASSERT_OK_AND_ASSIGN(uint64_t after, boot->Resolve("/after"));
  std::string content;
  ASSERT_OK(reader->ReadFile(after, [&](std::string_view data) {
    content += data;
    return absl::OkStatus();
  }));
  EXPECT_EQ(content, "a file after the sparse one\n");
}

// A crafted bootstrap whose directory inodes all list the entries of one big directory (they
// point at its blocks): no directory is reachable twice, every per-directory limit holds, yet each
// walker would list the 800 entries once per directory, quadratic in the bootstrap's size (unpack
// wrote them all to the tar). Every walker now refuses directory data listed twice.
TEST_F(ImageTest, DirectoriesSharingEntryBlocksAreCorruptForEveryWalker) {
  constexpr int kDirs = 200;
  constexpr int kEntries = 800;
  std::string src = dir_.Join("src");
  ASSERT_OK(CreateDirectories(src + "/big"));
  for (int i = 0; i < kEntries; ++i) Write(StrCat(src, "/big/entry-", i), "");
  for (int i = 0; i < kDirs; ++i) ASSERT_OK(CreateDirectories(StrCat(src, "/d", 1000 + i)));
  ASSERT_OK(
      Create({.source = src, .bootstrap = dir_.Join("l.boot"), .blob_dir = dir_.Join("blobs")})
          .status());
  ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFileToString(dir_.Join("l.boot")));
  ASSERT_OK_AND_ASSIGN(auto boot, rafs::Bootstrap::FromBytes(bytes));
  ASSERT_OK_AND_ASSIGN(rafs::Inode big, boot->GetInode(*boot->Resolve("/big")));
  ASSERT_EQ(big.layout, rafs::DataLayout::kFlatPlain);  // its entries fill several blocks
  ASSERT_GT(big.size, 3 * rafs::kBlockSize);
  for (int i = 0; i < kDirs; ++i) {
    ASSERT_OK_AND_ASSIGN(uint64_t nid, boot->Resolve(StrCat("/d", 1000 + i)));
    ASSERT_OK_AND_ASSIGN(rafs::Inode d, boot->GetInode(nid));
    ASSERT_EQ(d.inode_size, sizeof(rafs::CompactInode));
    uint64_t at = InodeOffset(*boot, nid);
    uint16_t plain = static_cast<uint16_t>(rafs::DataLayout::kFlatPlain)
                     << rafs::kInodeDataLayoutShift;
    Poke<uint16_t>(bytes, at + offsetof(rafs::CompactInode, format), plain);
    Poke<uint32_t>(bytes, at + offsetof(rafs::CompactInode, size), static_cast<uint32_t>(big.size));
    Poke<uint32_t>(bytes, at + offsetof(rafs::CompactInode, u), big.raw_u);
  }
  ASSERT_OK(WriteFileAtomically(dir_.Join("shared.boot"), bytes));
  ASSERT_OK_AND_ASSIGN(auto shared, rafs::Bootstrap::FromBytes(bytes));
  ASSERT_OK_AND_ASSIGN(auto listed, shared->ReadDir(*shared->Resolve("/d1000")));
  ASSERT_EQ(listed.size(), kEntries + 2u);  // the crafted directory lists big's entries

  auto shares = StatusIs(absl::StatusCode::kDataLoss, HasSubstr("shares its entries"));
  EXPECT_THAT(Unpack({.bootstrap = dir_.Join("shared.boot"), .output = dir_.Join("out/l.tar")}),
              shares);
  EXPECT_EQ(CountEntries(dir_.Join("out")), 0u);
  EXPECT_THAT(Inspect({.bootstrap = dir_.Join("shared.boot"), .request = "tree"}), shares);
  EXPECT_THAT(Check({.bootstrap = dir_.Join("shared.boot")}), shares);
  EXPECT_THAT(Merge({.sources = {dir_.Join("shared.boot")}, .bootstrap = dir_.Join("m.boot")}),
              shares);
  // The message names both directories and the bytes they share.
  EXPECT_THAT(Check({.bootstrap = dir_.Join("shared.boot")}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr(StrCat("directory /d1000 (inode ", *shared->Resolve("/d1000"),
                                        ") shares its entries with directory inode ",
                                        *shared->Resolve("/big")))));
  // The untouched bootstrap passes every walker: a directory's own blocks are claimed once.
  ASSERT_OK(Check({.bootstrap = dir_.Join("l.boot")}).status());
  ASSERT_OK(Merge({.sources = {dir_.Join("l.boot")}, .bootstrap = dir_.Join("m.boot")}).status());
}

TEST(DirectoryClaims, OverlapsAreFoundWhereverTheyAre) {
  // A bootstrap of one directory per claim is more than this needs: claims only look at extents.
  TempDir dir = *TempDir::Create("naiad-claims-");
  std::string src = dir.Join("src");
  for (const char* d : {"a", "b", "c"}) {
    ASSERT_OK(CreateDirectories(StrCat(src, "/", d)));
    for (int i = 0; i < 300; ++i) Write(StrCat(src, "/", d, "/file-", i), "");
  }
  ASSERT_OK(CreateDirectories(dir.Join("blobs")));
  ASSERT_OK(Create({.source = src, .bootstrap = dir.Join("l.boot"), .blob_dir = dir.Join("blobs")})
                .status());
  ASSERT_OK_AND_ASSIGN(auto boot, rafs::Bootstrap::Open(dir.Join("l.boot")));
  rafs::DirectoryClaims claims;
  for (const char* d : {"/c", "/a", "/", "/b"}) {
    ASSERT_OK(claims.Claim(*boot, *boot->Resolve(d), d)) << d;
  }
  for (const char* d : {"/a", "/b", "/c", "/"}) {
    EXPECT_THAT(claims.Claim(*boot, *boot->Resolve(d), d),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr("shares its entries")))
        << d;
  }
  // A file has no directory data to claim.
  EXPECT_FALSE(claims.Claim(*boot, *boot->Resolve("/a/file-1"), "/a/file-1").ok());
}

TEST_F(ImageTest, BadFlagsAreRejected) {
  EXPECT_THAT(Create({.source = "x", .bootstrap = "b", .blob = "c", .fs_version = "5"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("only RAFS v6")));
  EXPECT_THAT(Create({.source = "x", .bootstrap = "b"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--blob")));
  EXPECT_THAT(Create({.source = "x", .bootstrap = "b", .blob = "c", .chunk_size = "0x3000"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("power of two")));
  EXPECT_THAT(Create({.source = "x", .bootstrap = "b", .blob = "c", .compressor = "gzip"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gzip")));
  for (int level : {0, 20}) {
    EXPECT_THAT(Create({.source = "x", .bootstrap = "b", .blob = "c", .compression_level = level}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(StrCat("--compression-level: compression level ", level,
                                          ": must be from 1 (fastest) to 19 (smallest)"))));
  }
  EXPECT_THAT(Merge({.sources = {"a"}, .bootstrap = "b", .blob_digests = "sha256:12,sha256:34"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 values for 1 sources")));
}

}  // namespace
}  // namespace naiad::image
