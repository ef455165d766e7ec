// Runs the bootstrap fuzz target (bootstrap_fuzzer.cc, compiled here with g++ as a plain function)
// over deterministic mutations of valid bootstraps, so the ordinary test suite catches crashes,
// hangs and contradicting reader results without a clang build. Most mutations are aimed at the
// structures the reader decodes (superblock, extended superblock, blob and chunk tables, inodes,
// inline xattrs, dirents, chunk indexes, the prefetch table), located through layout.h in the
// valid bootstrap, so they get past Validate() and reach the per-inode decoders.
//
// NAIAD_FUZZ_DUMP=<file> writes each input there before running it: after a crash the file holds
// the input, ready for build-fuzz/src/rafs/rafs_bootstrap_fuzzer <file>.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/test_files.h"
#include "rafs/blob_meta.h"
#include "rafs/bootstrap.h"
#include "rafs/bootstrap_fuzzer.h"
#include "rafs/builder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace naiad::rafs {
namespace {

using ::naiad::rafs::fuzzing::WalkBootstrap;
using ::naiad::rafs::fuzzing::WalkStats;

std::string FixturePath(const std::string& relative) {
  return ::naiad::testing::NydusFixturePath(relative);
}

absl::Status Write(const std::string& path, const std::string& data) {
  return ::naiad::testing::WriteTestFile(path, data);
}

std::string Pseudorandom(size_t size, uint64_t seed) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    data[i] = static_cast<char>(seed >> 56);
  }
  return data;
}

// A small tree with every structure the reader decodes: compact and extended inodes, inline and
// multi-block directories, inline symlinks, inline xattrs (a large one too), whiteouts and an
// opaque directory, hardlinks, deduplicated multi-chunk files (4 KiB chunks) and a prefetch table.
absl::StatusOr<std::string> BuildSeedBootstrap(const TempDir& dir) {
  std::string src = dir.Join("src");
  RETURN_IF_ERROR(CreateDirectories(src + "/a/b/c/d/e/f"));
  RETURN_IF_ERROR(CreateDirectories(src + "/many"));
  RETURN_IF_ERROR(CreateDirectories(src + "/opaque"));
  RETURN_IF_ERROR(CreateDirectories(dir.Join("blobs")));
  RETURN_IF_ERROR(Write(src + "/a/hello.txt", "hello\n"));
  RETURN_IF_ERROR(Write(src + "/a/b/empty", ""));
  RETURN_IF_ERROR(Write(src + "/a/b/c/d/e/f/deep", "deep"));
  RETURN_IF_ERROR(Write(src + "/a/big.bin", Pseudorandom(64 * 1024 + 100, 1)));
  RETURN_IF_ERROR(Write(src + "/a/big-copy.bin", Pseudorandom(64 * 1024 + 100, 1)));
  RETURN_IF_ERROR(Write(src + "/a/mod.pyc", Pseudorandom(9000, 2)));  // an extended inode
  RETURN_IF_ERROR(Write(src + "/a/.wh.gone", ""));
  RETURN_IF_ERROR(Write(src + "/opaque/.wh..wh..opq", ""));
  RETURN_IF_ERROR(Write(src + "/opaque/kept", "kept"));
  for (int i = 0; i < 300; ++i) {
    RETURN_IF_ERROR(Write(src + "/many/entry-" + std::to_string(i), std::to_string(i)));
  }
  if (::symlink("hello.txt", (src + "/a/link").c_str()) != 0) return ErrnoError(errno, "symlink");
  if (::symlink(std::string(1500, 't').c_str(), (src + "/a/longlink").c_str()) != 0) {
    return ErrnoError(errno, "symlink");
  }
  if (::link((src + "/a/hello.txt").c_str(), (src + "/a/hard").c_str()) != 0) {
    return ErrnoError(errno, "link");
  }
  if (::mkfifo((src + "/a/fifo").c_str(), 0600) != 0) return ErrnoError(errno, "mkfifo");
  // xattrs where the file system allows them (tmpfs and ext4 do); the builder encodes each prefix.
  std::string big_value(700, 'v');
  ::setxattr((src + "/a/hello.txt").c_str(), "user.one", "1", 1, 0);
  ::setxattr((src + "/a/hello.txt").c_str(), "user.big", big_value.data(), big_value.size(), 0);
  ::setxattr((src + "/a/b").c_str(), "user.dir", "d", 1, 0);
  ::setxattr((src + "/a/big.bin").c_str(), "trusted.t", "t", 1, 0);
  ::setxattr((src + "/a/big.bin").c_str(), "security.s", "s", 1, 0);
  ASSIGN_OR_RETURN(auto source, DirectorySource::Create(src));
  ASSIGN_OR_RETURN(LayerBuildResult result,
                   BuildLayer(*source, {.chunk_size = 4096,
                                        .threads = 1,
                                        .blob_dir = dir.Join("blobs"),
                                        .prefetch_paths = {"/a/hello.txt", "/many", "/a/big.bin"},
                                        .build_time = 1700000000}));
  return result.bootstrap;
}

// A field of an on-disk structure: where it is and how wide.
struct Field {
  uint64_t offset;
  int width;  // 1, 2, 4 or 8
};

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Locates the fields of every structure in a valid bootstrap, using the offsets of layout.h.
std::vector<Field> LocateFields(const Bootstrap& boot) {
  std::vector<Field> fields;
  auto add = [&](uint64_t base, std::initializer_list<std::pair<uint64_t, int>> list) {
    for (auto [offset, width] : list) fields.push_back({base + offset, width});
  };
  // ErofsSuperblock and RafsExtSuperblock.
  add(kSuperblockOffset, {{0, 4},
                          {4, 4},
                          {8, 4},
                          {12, 1},
                          {13, 1},
                          {14, 2},
                          {16, 8},
                          {24, 8},
                          {32, 4},
                          {36, 4},
                          {40, 4},
                          {44, 4},
                          {80, 4},
                          {84, 2},
                          {86, 2},
                          {88, 2}});
  add(kExtSuperblockOffset, {{0, 8}, {8, 8}, {16, 4}, {20, 4}, {24, 8}, {32, 8}, {40, 8}, {48, 4}});
  const RafsExtSuperblock& ext = boot.ext();
  for (uint64_t i = 0; i < boot.blobs().size(); ++i) {
    add(ext.blob_table_offset + i * sizeof(BlobTableEntry), {{0, 1},
                                                             {63, 1},
                                                             {64, 4},
                                                             {68, 4},
                                                             {72, 4},
                                                             {76, 4},
                                                             {80, 4},
                                                             {84, 4},
                                                             {88, 8},
                                                             {96, 8},
                                                             {104, 4},
                                                             {108, 4},
                                                             {112, 8},
                                                             {120, 8},
                                                             {128, 8}});
  }
  for (uint64_t i = 0; i < ext.chunk_table_size / sizeof(ChunkInfo); ++i) {
    add(ext.chunk_table_offset + i * sizeof(ChunkInfo),
        {{0, 1}, {32, 4}, {36, 4}, {40, 4}, {44, 4}, {48, 8}, {56, 8}, {64, 8}, {72, 4}});
  }
  for (uint64_t i = 0; i < boot.prefetch_nids().size(); ++i) {
    add(ext.prefetch_table_offset + i * 4, {{0, 4}});
  }
  // Inodes and what follows them, for every inode reachable from the root.
  std::vector<uint64_t> stack = {boot.root_nid()};
  std::unordered_set<uint64_t> seen;
  while (!stack.empty()) {
    uint64_t nid = stack.back();
    stack.pop_back();
    if (!seen.insert(nid).second) continue;
    absl::StatusOr<Inode> inode = boot.GetInode(nid);
    if (!inode.ok()) continue;
    uint64_t base = uint64_t{boot.superblock().meta_blkaddr} * kBlockSize + nid * kInodeSlotSize;
    if (inode->inode_size == sizeof(ExtendedInode)) {
      add(base, {{0, 2},
                 {2, 2},
                 {4, 2},
                 {8, 8},
                 {16, 4},
                 {20, 4},
                 {24, 4},
                 {28, 4},
                 {32, 8},
                 {40, 4},
                 {44, 4}});
    } else {
      add(base, {{0, 2}, {2, 2}, {4, 2}, {6, 2}, {8, 4}, {16, 4}, {20, 4}, {24, 2}, {26, 2}});
    }
    uint64_t xattr_size = inode->xattr_icount == 0 ? 0 : 12 + (inode->xattr_icount - 1) * 4ull;
    uint64_t xattr_base = base + inode->inode_size;
    if (xattr_size > 0) {
      add(xattr_base, {{4, 1}});  // shared_count
      for (uint64_t pos = sizeof(XattrIbodyHeader); pos + sizeof(XattrEntry) <= xattr_size;) {
        add(xattr_base + pos, {{0, 1}, {1, 1}, {2, 2}, {4, 1}});
        uint8_t name_len = static_cast<uint8_t>(boot.bytes()[xattr_base + pos]);
        uint16_t value_size;
        std::memcpy(&value_size, boot.bytes().data() + xattr_base + pos + 2, 2);
        pos = AlignUp(pos + sizeof(XattrEntry) + name_len + value_size, 4);
      }
    }
    uint64_t data = inode->layout == DataLayout::kFlatInline ? xattr_base + xattr_size
                                                             : uint64_t{inode->raw_u} * kBlockSize;
    if (inode->is_regular() && inode->size > 0) {
      uint64_t index = AlignUp(xattr_base + xattr_size, 8);
      uint64_t inode_chunk = uint64_t{1} << (kBlockSizeBits + (inode->raw_u & 0x1f));
      for (uint64_t i = 0; i < (inode->size + inode_chunk - 1) / inode_chunk; ++i) {
        add(index + i * sizeof(ChunkIndex), {{0, 2}, {2, 2}, {4, 4}});
      }
    } else if (inode->is_symlink()) {
      add(data, {{0, 1}, {inode->size - 1, 1}});
    } else if (inode->is_dir()) {
      for (uint64_t block = 0; block < inode->size; block += kBlockSize) {
        uint16_t first;
        std::memcpy(&first, boot.bytes().data() + data + block + 8, 2);
        for (uint64_t i = 0; i < first / sizeof(Dirent); ++i) {
          add(data + block + i * sizeof(Dirent), {{0, 8}, {8, 2}, {10, 1}});
        }
        add(data + block + first, {{0, 1}});  // the first name
      }
      absl::StatusOr<std::vector<DirEntry>> entries = boot.ReadDir(nid);
      if (entries.ok()) {
        for (const DirEntry& e : *entries) stack.push_back(e.nid);
      }
    }
  }
  return fields;
}

class Mutator {
 public:
  Mutator(const std::string& seed, std::vector<Field> fields, uint64_t root_nid, uint64_t rng_seed)
      : seed_(seed), fields_(std::move(fields)), root_nid_(root_nid), rng_(rng_seed) {}

  std::string Next() {
    std::string input = seed_;
    const int edits = 1 + static_cast<int>(rng_() % 4);
    for (int e = 0; e < edits && !input.empty(); ++e) Edit(input);
    return input;
  }

 private:
  uint64_t Interesting(uint64_t original, size_t size) {
    const uint64_t values[] = {0,
                               1,
                               2,
                               3,
                               7,
                               8,
                               12,
                               0x20,
                               0x3f,
                               0x7f,
                               0x80,
                               0xff,
                               0x100,
                               0xfff,
                               0x1000,
                               0xffff,
                               0x10000,
                               0x7fffffff,
                               0x80000000,
                               0xfffffffe,
                               0xffffffff,
                               uint64_t{1} << 32,
                               uint64_t{1} << 43,
                               uint64_t{1} << 48,
                               uint64_t{1} << 63,
                               ~uint64_t{0},
                               size,
                               size - 1,
                               size / kInodeSlotSize,
                               size / kBlockSize,
                               root_nid_,
                               original + 1,
                               original - 1,
                               original * 2,
                               original / 2,
                               original ^ (uint64_t{1} << (rng_() % 64))};
    return values[rng_() % std::size(values)];
  }

  static uint64_t Get(const std::string& s, const Field& f) {
    uint64_t v = 0;
    std::memcpy(&v, s.data() + f.offset, f.width);
    return v;
  }
  static void Set(std::string& s, const Field& f, uint64_t v) {
    std::memcpy(s.data() + f.offset, &v, f.width);
  }

  void Edit(std::string& input) {
    const Field& field = fields_[rng_() % fields_.size()];
    const bool field_fits = field.offset + field.width <= input.size();
    switch (rng_() % 8) {
      case 0:  // a bit anywhere
        input[rng_() % input.size()] ^= static_cast<char>(1 << (rng_() % 8));
        break;
      case 1:  // a random byte anywhere
        input[rng_() % input.size()] = static_cast<char>(rng_());
        break;
      case 2:  // a bit of a field
        if (field_fits)
          Set(input, field, Get(input, field) ^ (uint64_t{1} << (rng_() % (8 * field.width))));
        break;
      case 3:
      case 4:  // an interesting value in a field
        if (field_fits) Set(input, field, Interesting(Get(input, field), input.size()));
        break;
      case 5: {  // another field's value (e.g. a dirent naming another inode: cycles, sharing)
        const Field& other = fields_[rng_() % fields_.size()];
        if (field_fits && other.offset + other.width <= input.size()) {
          Set(input, field, Get(input, other));
        }
        break;
      }
      case 6:  // truncation, at a structure boundary or anywhere
        input.resize(rng_() % 2 ? std::min<uint64_t>(field.offset, input.size())
                                : rng_() % input.size());
        break;
      case 7:  // a field's bytes replaced by random ones, or growth
        if (rng_() % 4 == 0) {
          input.append(rng_() % 2 ? kBlockSize : 1 + rng_() % 100, static_cast<char>(rng_()));
        } else if (field_fits) {
          Set(input, field, rng_());
        }
        break;
    }
  }

  const std::string& seed_;
  std::vector<Field> fields_;
  uint64_t root_nid_;
  std::mt19937_64 rng_;
};

struct Outcome {
  int inputs = 0;
  int opened = 0;
  int walked_deep = 0;  // opened and at least half the seed's inodes read
  std::chrono::steady_clock::duration slowest{};
};

// Runs `count` mutations of `seed` through the fuzz target.
Outcome RunMutations(const std::string& seed, int count, uint64_t rng_seed) {
  Outcome outcome;
  auto boot = Bootstrap::FromBytes(seed);
  EXPECT_OK(boot.status());
  if (!boot.ok()) return outcome;
  std::vector<Field> fields = LocateFields(**boot);
  EXPECT_GT(fields.size(), 100u);
  const uint64_t seed_inodes = WalkBootstrap(seed).inodes;
  const char* dump = std::getenv("NAIAD_FUZZ_DUMP");
  Mutator mutator(seed, std::move(fields), (*boot)->root_nid(), rng_seed);
  for (int i = 0; i < count; ++i) {
    std::string input = mutator.Next();
    if (dump != nullptr) {
      EXPECT_OK(WriteFileAtomically(dump, input));
    }
    auto start = std::chrono::steady_clock::now();
    WalkStats stats = WalkBootstrap(input);
    outcome.slowest = std::max(outcome.slowest, std::chrono::steady_clock::now() - start);
    ++outcome.inputs;
    outcome.opened += stats.opened;
    outcome.walked_deep += stats.opened && 2 * stats.inodes >= seed_inodes;
  }
  return outcome;
}

// Built once for the suite (SetUpTestSuite): the builder's bootstrap of the seed tree.
std::string* seed_bootstrap = nullptr;

class BootstrapFuzzTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto dir = TempDir::Create("naiad-boot-fuzz-");
    ASSERT_OK(dir.status());
    auto boot = BuildSeedBootstrap(*dir);
    ASSERT_OK(boot.status());
    seed_bootstrap = new std::string(*std::move(boot));
  }
  static void TearDownTestSuite() {
    delete seed_bootstrap;
    seed_bootstrap = nullptr;
  }
  void SetUp() override { ASSERT_NE(seed_bootstrap, nullptr); }
  static const std::string& seed() { return *seed_bootstrap; }

  static void ExpectRobust(const Outcome& outcome) {
    std::cout << "inputs " << outcome.inputs << ", opened " << outcome.opened << ", walked deep "
              << outcome.walked_deep << ", slowest "
              << std::chrono::duration_cast<std::chrono::microseconds>(outcome.slowest).count()
              << " us\n";
    // A hang would hit the ctest timeout; this bounds the worst single input much tighter.
    EXPECT_LT(outcome.slowest, std::chrono::seconds(5));
    // Aimed mutations must mostly get past Validate() and into the tree, or the test would only
    // be fuzzing the superblock checks.
    EXPECT_GT(outcome.opened, outcome.inputs / 2);
    EXPECT_GT(outcome.walked_deep, outcome.inputs / 4);
  }
};

TEST_F(BootstrapFuzzTest, SeedIsWalkedEndToEnd) {
  WalkStats stats = WalkBootstrap(seed());
  EXPECT_TRUE(stats.opened);
  EXPECT_TRUE(stats.tree_loaded);
  EXPECT_GE(stats.inodes, 320u);  // 300 in many/, the rest in a/ and opaque/
  EXPECT_GT(stats.dirents, stats.inodes);
  EXPECT_GE(stats.symlinks, 2u);
  EXPECT_GT(stats.chunks, 30u);  // 4 KiB chunks
  EXPECT_GT(stats.chunk_table, 10u);
  EXPECT_GE(stats.resolved, 16u);
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(seed()));
  EXPECT_EQ(boot->prefetch_nids().size(), 3u);
  std::vector<Field> fields = LocateFields(*boot);
  EXPECT_GT(fields.size(), 3000u);
  // The libFuzzer entry point is the same walk.
  EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(seed().data()), seed().size()),
            0);
}

TEST_F(BootstrapFuzzTest, MutatedBuilderBootstrapsNeverCrashOrHang) {
  ExpectRobust(RunMutations(seed(), 4000, 20240611));
}

TEST_F(BootstrapFuzzTest, MutatedUpstreamBootstrapsNeverCrashOrHang) {
  std::vector<std::string> seeds;
  if (auto boot = ReadFileToString(FixturePath("bootstrap/rafs-v6-2.2.boot")); boot.ok()) {
    seeds.push_back(*boot);
  }
  // The bootstrap that upstream embedded in a blob with a TOC.
  if (auto blob = ReadFileToString(
          FixturePath("toc/2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca"));
      blob.ok()) {
    BlobReadFn read = MemoryBlobReader(*blob);
    ASSERT_OK_AND_ASSIGN(BlobTail tail, ReadBlobTail(read, blob->size()));
    ASSERT_OK_AND_ASSIGN(std::string boot, ReadInlineBootstrap(read, tail));
    seeds.push_back(boot);
  }
  if (seeds.empty()) GTEST_SKIP() << "no upstream fixtures at " << FixturePath("");
  for (size_t i = 0; i < seeds.size(); ++i) {
    SCOPED_TRACE(i);
    WalkStats stats = WalkBootstrap(seeds[i]);
    EXPECT_TRUE(stats.opened);
    EXPECT_TRUE(stats.tree_loaded);
    EXPECT_GT(stats.chunks, 0u);
    ExpectRobust(RunMutations(seeds[i], 3000, 7 + i));
  }
}

// The byte offset of inode `nid` and of its first chunk index.
struct InodeSpot {
  uint64_t inode = 0;
  uint64_t first_index = 0;
};
InodeSpot Locate(const Bootstrap& boot, uint64_t nid) {
  InodeSpot spot;
  spot.inode = uint64_t{boot.superblock().meta_blkaddr} * kBlockSize + nid * kInodeSlotSize;
  Inode inode = *boot.GetInode(nid);
  uint64_t xattrs = inode.xattr_icount == 0 ? 0 : 12 + (inode.xattr_icount - 1) * 4ull;
  spot.first_index = AlignUp(spot.inode + inode.inode_size + xattrs, 8);
  return spot;
}

template <typename T>
void Poke(std::string& bytes, uint64_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

// Regression: a hole index (blkaddr 0xFFFFFFFF) in an inode whose chunk size is 2^40 made
// FileChunks() expand one 8-byte index into 2^28 chunk references (24 GB) and die of OOM; every
// reader of the bootstrap (check, unpack, merge, inspect) did. And a size near 2^64 wrapped the
// chunk count to 0, so a huge file read back as having no chunks at all.
TEST_F(BootstrapFuzzTest, HostileChunkIndexesAreRejectedCheaply) {
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(seed()));
  ASSERT_OK_AND_ASSIGN(uint64_t nid, boot->Resolve("/a/mod.pyc"));
  ASSERT_OK_AND_ASSIGN(Inode inode, boot->GetInode(nid));
  ASSERT_EQ(inode.inode_size, sizeof(ExtendedInode));
  InodeSpot spot = Locate(*boot, nid);

  std::string hole = seed();
  Poke<uint64_t>(hole, spot.inode + offsetof(ExtendedInode, size), uint64_t{1} << 40);
  Poke<uint32_t>(hole, spot.inode + offsetof(ExtendedInode, u), kChunkFormatIndexes | 28);
  Poke<uint32_t>(hole, spot.first_index + offsetof(ChunkIndex, blkaddr), 0xFFFFFFFF);
  auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(auto bad, Bootstrap::FromBytes(hole));
  EXPECT_THAT(bad->FileChunks(nid), ::naiad::testing::StatusIs(absl::StatusCode::kDataLoss,
                                                               ::testing::HasSubstr("chunk")));
  EXPECT_TRUE(WalkBootstrap(hole).opened);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));

  std::string huge = seed();
  Poke<uint64_t>(huge, spot.inode + offsetof(ExtendedInode, size), ~uint64_t{0});
  ASSERT_OK_AND_ASSIGN(bad, Bootstrap::FromBytes(huge));
  EXPECT_THAT(bad->FileChunks(nid), ::naiad::testing::StatusIs(absl::StatusCode::kDataLoss,
                                                               ::testing::HasSubstr("chunk")));

  // The same inode with chunk-sized holes is fine: each hole pays for itself with an index.
  std::string small_hole = seed();
  Poke<uint32_t>(small_hole, spot.first_index + offsetof(ChunkIndex, blkaddr), 0xFFFFFFFF);
  ASSERT_OK_AND_ASSIGN(auto ok, Bootstrap::FromBytes(small_hole));
  ASSERT_OK_AND_ASSIGN(std::vector<ChunkRef> chunks, ok->FileChunks(nid));
  ASSERT_EQ(chunks.size(), 3u);  // 9000 bytes in 4 KiB chunks
  EXPECT_TRUE(chunks[0].hole);
  EXPECT_EQ(chunks[0].uncompressed_size, 4096u);
  EXPECT_FALSE(chunks[1].hole);
}

TEST_F(BootstrapFuzzTest, TruncatedAndGarbageInputsNeverCrash) {
  // Odd lengths around the superblocks, then every 4 KiB boundary: the chunk table is last, so
  // every cut loses part of it and Validate() refuses the rest.
  std::vector<size_t> lengths;
  for (size_t length = 0; length < 2048; length += 61) lengths.push_back(length);
  for (size_t length = kBlockSize; length < seed().size(); length += kBlockSize) {
    lengths.push_back(length);
  }
  for (size_t length : lengths) {
    EXPECT_FALSE(WalkBootstrap(seed().substr(0, length)).opened) << length;
  }
  std::mt19937_64 rng(99);
  for (int i = 0; i < 300; ++i) {
    std::string garbage = seed().substr(0, kExtSuperblockOffset + sizeof(RafsExtSuperblock));
    garbage.resize(kBlockSize * (1 + rng() % 8));
    for (size_t j = kExtSuperblockOffset + sizeof(RafsExtSuperblock); j < garbage.size(); ++j) {
      garbage[j] = static_cast<char>(rng());
    }
    WalkBootstrap(garbage);
  }
}

}  // namespace
}  // namespace naiad::rafs
