// Sparse files: GNU tar writes them in four encodings; each must read back byte-identical, with
// the holes as zeros.
#include <memory>
#include <string>
#include <vector>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "tar/reader.h"
#include "tar/sparse.h"
#include "tar/tar_testing.h"

namespace naiad::tar {
namespace {

using ::naiad::tar::testing::Find;
using ::naiad::tar::testing::HeaderSpec;
using ::naiad::tar::testing::MakeHeader;
using ::naiad::tar::testing::Octal;
using ::naiad::tar::testing::Padded;
using ::naiad::tar::testing::ReadEntry;
using ::naiad::tar::testing::ReadLayerFile;
using ::naiad::tar::testing::ReadTarString;
using ::naiad::tar::testing::Shell;
using ::naiad::tar::testing::TarBuilder;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

class TarSparseTest : public ::testing::TestWithParam<const char*> {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<TempDir> dir = TempDir::Create("naiad-tar-sparse-");
    ASSERT_OK(dir);
    Dir() = std::make_unique<TempDir>(*std::move(dir));
    const std::string root = Dir()->Join("root");
    // d: data at both ends and in the middle; m: ends in a hole; h: all hole;
    // many: 40 data runs, more than the old GNU header's 4 slots (extension blocks) and a
    // multi-line 1.0 map.
    std::string script = StrCat(
        "set -e; mkdir ", root, " && cd ", root, " && ",
        "truncate -s 64M d && printf 'start' | dd of=d conv=notrunc status=none && ",
        "printf 'mid\\n' | dd of=d bs=1 seek=5000003 conv=notrunc status=none && ",
        "printf 'x\\n' | dd of=d bs=1 seek=67108862 conv=notrunc status=none && ",
        "printf 'middle' | dd of=m bs=1 seek=3000000 status=none && truncate -s 10M m && ",
        "truncate -s 8M h && ", "truncate -s 20M many && for i in $(seq 0 39); do ",
        "printf \"run $i\" | dd of=many bs=1 seek=$((i * 500000 + i)) conv=notrunc status=none; "
        "done");
    ASSERT_OK(Shell(script));
  }
  static void TearDownTestSuite() { Dir().reset(); }

  // A file name for this parameter's archive.
  static std::string LayerName(const char* suffix) {
    std::string name = StrCat("layer", GetParam(), suffix);
    for (char& c : name) {
      if (c == ' ' || c == '=') c = '_';
    }
    return Dir()->Join(name);
  }

  // Shared by the whole suite: the sparse files are made once.
  static std::unique_ptr<TempDir>& Dir() {
    static std::unique_ptr<TempDir> dir;
    return dir;
  }
};

TEST_P(TarSparseTest, ReadsBackByteIdentical) {
  const std::string layer = LayerName(".tar");
  ASSERT_OK(Shell(
      StrCat("tar --sparse ", GetParam(), " -cf ", layer, " -C ", Dir()->Join("root"), " .")));
  ASSERT_OK_AND_ASSIGN(std::vector<ReadEntry> entries, ReadLayerFile(layer));
  ASSERT_EQ(entries.size(), 5u);
  for (const char* name : {"d", "m", "h", "many"}) {
    SCOPED_TRACE(name);
    const ReadEntry* e = Find(entries, name);
    ASSERT_NE(e, nullptr);
    ASSERT_OK_AND_ASSIGN(std::string want, ReadFileToString(Dir()->Join("root/") + name));
    EXPECT_TRUE(e->entry.sparse);
    EXPECT_EQ(e->entry.size, want.size());
    EXPECT_EQ(e->content.size(), want.size());
    EXPECT_TRUE(e->content == want) << "content differs";
  }
  ASSERT_OK_AND_ASSIGN(std::string tar_bytes, ReadFileToString(layer));
  EXPECT_LT(tar_bytes.size(), 1u << 20);  // the holes were not stored
}

std::string FormatName(const ::testing::TestParamInfo<const char*>& info) {
  const char* names[] = {"Gnu", "Pax00", "Pax01", "Pax10"};
  return names[info.index];
}

INSTANTIATE_TEST_SUITE_P(TarFormats, TarSparseTest,
                         ::testing::Values("--format=gnu", "--format=pax --sparse-version=0.0",
                                           "--format=pax --sparse-version=0.1",
                                           "--format=pax --sparse-version=1.0"),
                         FormatName);

TEST_P(TarSparseTest, CompressedAndPartiallyRead) {
  const std::string layer = LayerName(".tar.zst");
  ASSERT_OK(Shell(StrCat("tar --zstd --sort=name --sparse ", GetParam(), " -cf ", layer, " -C ",
                         Dir()->Join("root"), " .")));
  ASSERT_OK_AND_ASSIGN(auto stream, OpenLayer(layer));
  ASSERT_OK_AND_ASSIGN(auto reader, Reader::Create(std::move(stream)));
  std::vector<std::string> paths;
  for (;;) {
    ASSERT_OK_AND_ASSIGN(std::optional<Entry> entry, reader->Next());
    if (!entry) break;
    paths.push_back(entry->path);
    char buf[10];
    ASSERT_OK_AND_ASSIGN(size_t n, reader->Read(buf, sizeof(buf)));  // then skip the rest
    if (entry->path == "d") {
      EXPECT_EQ(std::string(buf, n), std::string("start\0\0\0\0\0", 10));
    }
  }
  EXPECT_EQ(paths, (std::vector<std::string>{"", "d", "h", "m", "many"}));
}

// ---- hand-built sparse entries: unaligned segments, and bad maps ----

// An old GNU 'S' header for `name` with the given map.
std::string GnuSparseHeader(const std::string& name, const std::vector<SparseSegment>& map,
                            uint64_t real_size, uint64_t stored, bool extended = false) {
  std::string block =
      MakeHeader({.name = name, .type = 'S', .size = stored, .magic = std::string("ustar  \0", 8)});
  for (size_t i = 0; i < map.size() && i < 4; ++i) {
    block.replace(386 + 24 * i, 12, Octal(map[i].offset, 12));
    block.replace(386 + 24 * i + 12, 12, Octal(map[i].length, 12));
  }
  block[482] = extended ? 1 : 0;
  block.replace(483, 12,
                real_size < (uint64_t{1} << 33)
                    ? Octal(real_size, 12)
                    : ::naiad::tar::testing::Base256(static_cast<int64_t>(real_size), 12));
  ::naiad::tar::testing::FixChecksum(&block);
  return block;
}

TEST(TarHandBuiltSparse, OldGnuUnalignedSegments) {
  std::string tar = GnuSparseHeader("s", {{5, 3}, {100, 2}, {200, 0}}, 200, 5) + Padded("abcde") +
                    std::string(1024, '\0');
  ASSERT_OK_AND_ASSIGN(auto entries, ReadTarString(tar));
  ASSERT_EQ(entries.size(), 1u);
  std::string want(200, '\0');
  want.replace(5, 3, "abc");
  want.replace(100, 2, "de");
  EXPECT_EQ(entries[0].content, want);
  EXPECT_EQ(entries[0].entry.size, 200u);
}

TEST(TarHandBuiltSparse, OldGnuExtensionBlock) {
  std::string ext(512, '\0');
  ext.replace(0, 12, Octal(40, 12));
  ext.replace(12, 12, Octal(1, 12));
  std::string tar = GnuSparseHeader("s", {{0, 1}, {10, 1}, {20, 1}, {30, 1}}, 60, 5, true) + ext +
                    Padded("ABCDE") + std::string(1024, '\0');
  ASSERT_OK_AND_ASSIGN(auto entries, ReadTarString(tar));
  ASSERT_EQ(entries.size(), 1u);
  std::string want(60, '\0');
  for (int i = 0; i < 5; ++i) want[i * 10] = static_cast<char>('A' + i);
  EXPECT_EQ(entries[0].content, want);
}

TEST(TarHandBuiltSparse, Pax10Unaligned) {
  TarBuilder tar;
  tar.Pax({{"GNU.sparse.major", "1"},
           {"GNU.sparse.minor", "0"},
           {"GNU.sparse.name", "real/name"},
           {"GNU.sparse.realsize", "1000"}});
  std::string data = Padded("2\n1\n2\n998\n2\n") + "xyzw";
  tar.Add({.name = "GNUSparseFile.0/name"}, data);
  ASSERT_OK_AND_ASSIGN(auto entries, ReadTarString(tar.Finish()));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].entry.path, "real/name");
  std::string want(1000, '\0');
  want.replace(1, 2, "xy");
  want.replace(998, 2, "zw");
  EXPECT_EQ(entries[0].content, want);
}

// A consumer that records holes instead of zeros: HoleAhead() says how far the hole at the read
// position goes, SkipHole() moves past it without producing zeros, and Read() carries on with the
// data after it.
TEST(TarHandBuiltSparse, HolesAreSkippedWithoutProducingZeros) {
  constexpr uint64_t kSize = uint64_t{1} << 36;    // 64 GiB, of which 5 bytes are stored
  constexpr uint64_t kSecond = uint64_t{1} << 32;  // an offset that fits the header's octal field
  // The entry after it shows that the stream stays in step.
  std::string tar = GnuSparseHeader("s", {{5, 3}, {kSecond, 2}}, kSize, 5) + Padded("abcde") +
                    MakeHeader({.name = "next", .size = 5}) + Padded("after") +
                    std::string(1024, '\0');
  ASSERT_OK_AND_ASSIGN(auto reader, Reader::Create(std::make_unique<StringInputStream>(tar)));
  EXPECT_EQ(reader->HoleAhead(), 0u);  // before the first entry
  ASSERT_OK_AND_ASSIGN(std::optional<Entry> entry, reader->Next());
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->size, kSize);
  EXPECT_EQ(reader->HoleAhead(), 5u);
  EXPECT_THAT(reader->SkipHole(6),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the hole there is 5")));
  ASSERT_OK(reader->SkipHole(2));
  EXPECT_EQ(reader->HoleAhead(), 3u);
  ASSERT_OK(reader->SkipHole(3));
  EXPECT_EQ(reader->HoleAhead(), 0u);  // data: "abc"
  char buf[8];
  ASSERT_OK_AND_ASSIGN(size_t n, reader->Read(buf, 2));
  EXPECT_EQ(std::string(buf, n), "ab");
  EXPECT_EQ(reader->HoleAhead(), 0u);
  ASSERT_OK_AND_ASSIGN(n, reader->Read(buf, 8));
  EXPECT_EQ(std::string(buf, n), "c");
  EXPECT_EQ(reader->HoleAhead(), kSecond - 8);
  ASSERT_OK(reader->SkipHole(kSecond - 8));
  ASSERT_OK_AND_ASSIGN(n, reader->Read(buf, 8));
  EXPECT_EQ(std::string(buf, n), "de");
  // The hole at the end reads as zeros after a partial skip.
  EXPECT_EQ(reader->HoleAhead(), kSize - kSecond - 2);
  ASSERT_OK(reader->SkipHole(kSize - kSecond - 5));
  ASSERT_OK_AND_ASSIGN(n, reader->Read(buf, 8));
  EXPECT_EQ(std::string(buf, n), std::string(3, '\0'));
  EXPECT_EQ(reader->HoleAhead(), 0u);
  ASSERT_OK_AND_ASSIGN(n, reader->Read(buf, 8));
  EXPECT_EQ(n, 0u);
  ASSERT_OK(reader->SkipHole(0));

  ASSERT_OK_AND_ASSIGN(entry, reader->Next());
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->path, "next");
  EXPECT_EQ(reader->HoleAhead(), 0u);  // not sparse
  EXPECT_THAT(reader->SkipHole(1), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  ASSERT_OK_AND_ASSIGN(n, reader->Read(buf, 8));
  EXPECT_EQ(std::string(buf, n), "after");
}

// Holes read as zeros are budgeted over the archive; skipped ones are free.
TEST(TarHandBuiltSparse, HoleBytesReadAreBudgeted) {
  std::string entry = GnuSparseHeader("s", {{600, 1}}, 1000, 1) + Padded("x");
  std::string tar = entry + entry + std::string(1024, '\0');
  // Two entries of 999 bytes of hole each: 1998 bytes of zeros.
  EXPECT_OK(ReadTarString(tar, {.max_hole_bytes_read = 1998}).status());
  EXPECT_THAT(ReadTarString(tar, {.max_hole_bytes_read = 1997}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tar entry \"s\" at offset 1024: holes of sparse entries read as "
                                 "more than 1997 bytes of zeros")));
  // A consumer that skips the holes reads the data only.
  ASSERT_OK_AND_ASSIGN(auto reader, Reader::Create(std::make_unique<StringInputStream>(tar),
                                                   {.max_hole_bytes_read = 0}));
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(std::optional<Entry> e, reader->Next());
    ASSERT_TRUE(e.has_value());
    ASSERT_OK(reader->SkipHole(600));
    char c;
    ASSERT_OK_AND_ASSIGN(size_t n, reader->Read(&c, 1));
    EXPECT_EQ(std::string(&c, n), "x");
    ASSERT_OK(reader->SkipHole(reader->HoleAhead()));
    ASSERT_OK_AND_ASSIGN(n, reader->Read(&c, 1));
    EXPECT_EQ(n, 0u);
  }
}

absl::Status ReadSparseMap(const std::vector<SparseSegment>& map, uint64_t real_size,
                           uint64_t stored) {
  std::string tar = GnuSparseHeader("s", map, real_size, stored) +
                    Padded(std::string(stored, 'd')) + std::string(1024, '\0');
  return ReadTarString(tar).status();
}

TEST(TarHandBuiltSparse, BadMapsAreInvalidArgument) {
  EXPECT_THAT(ReadSparseMap({{100, 10}, {50, 10}}, 200, 20),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tar entry \"s\" at offset 0: sparse segment 1")));
  EXPECT_THAT(ReadSparseMap({{0, 10}, {5, 10}}, 200, 20),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overlaps")));
  EXPECT_THAT(ReadSparseMap({{0, 10}, {195, 10}}, 200, 20),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("past the file size")));
  EXPECT_THAT(ReadSparseMap({{0, 10}}, 200, 20),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("covers 10 bytes")));
}

TEST(TarHandBuiltSparse, Pax10MapRunningPastTheDataIsRejected) {
  TarBuilder tar;
  tar.Pax({{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.realsize", "10"}});
  tar.Add({.name = "f"}, "3\n0\n1\n");  // the map needs a full block and more numbers
  EXPECT_THAT(ReadTarString(tar.Finish()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(TarHandBuiltSparse, Pax10TooManySegments) {
  TarBuilder tar;
  tar.Pax({{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.realsize", "10"}});
  tar.Add({.name = "f"}, Padded("2000000\n"));
  EXPECT_THAT(ReadTarString(tar.Finish()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("announces 2000000")));
}

TEST(TarHandBuiltSparse, UnsupportedVersionAndMissingRealsize) {
  TarBuilder v2;
  v2.Pax({{"GNU.sparse.major", "2"}, {"GNU.sparse.minor", "0"}}).File("f", "");
  EXPECT_THAT(ReadTarString(v2.Finish()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sparse format 2.0")));
  TarBuilder no_size;
  no_size.Pax({{"GNU.sparse.map", "0,1"}}).File("f", "a");
  EXPECT_THAT(ReadTarString(no_size.Finish()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("realsize")));
  TarBuilder numblocks;
  numblocks
      .Pax({{"GNU.sparse.map", "0,1"}, {"GNU.sparse.size", "5"}, {"GNU.sparse.numblocks", "2"}})
      .File("f", "a");
  EXPECT_THAT(ReadTarString(numblocks.Finish()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("numblocks")));
}

TEST(TarHandBuiltSparse, RealSizeOverTheLimit) {
  std::string tar = GnuSparseHeader("s", {{0, 1}}, uint64_t{1} << 41, 1) + Padded("x");
  EXPECT_THAT(ReadTarString(tar).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_entry_size")));
}

}  // namespace
}  // namespace naiad::tar
