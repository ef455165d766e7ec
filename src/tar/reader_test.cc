// Reads archives written by the system's GNU tar (and the upstream Nydus fixtures) and checks
// every entry against the files they were made from.
#include "tar/reader.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/test_files.h"
#include "tar/tar_testing.h"

namespace naiad::tar {
namespace {

using ::naiad::tar::testing::Find;
using ::naiad::tar::testing::HaveCommand;
using ::naiad::tar::testing::ReadEntry;
using ::naiad::tar::testing::ReadLayerFile;
using ::naiad::tar::testing::Shell;
using ::naiad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

class TarGnuTarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-tar-"));
    root_ = dir_.Join("root");
    ASSERT_OK(CreateDirectories(root_));
  }

  void WriteFile(const std::string& name, const std::string& data, mode_t mode = 0644) {
    ASSERT_OK(CreateDirectories(std::filesystem::path(root_ + "/" + name).parent_path()));
    ASSERT_OK(WriteFileAtomically(root_ + "/" + name, data, mode));
    ASSERT_EQ(::chmod((root_ + "/" + name).c_str(), mode), 0);  // umask-proof, keeps setuid
  }

  // tar <flags> of the whole root into `name`; returns its path.
  std::string Tar(const std::string& flags, const std::string& name = "layer.tar") {
    std::string out = dir_.Join(name);
    EXPECT_OK(Shell(StrCat("tar ", flags, " -cf ", out, " -C ", root_, " .")));
    return out;
  }

  std::vector<ReadEntry> Read(const std::string& layer, ReaderOptions options = {}) {
    absl::StatusOr<std::vector<ReadEntry>> entries = ReadLayerFile(layer, options);
    EXPECT_OK(entries);
    return entries.ok() ? *std::move(entries) : std::vector<ReadEntry>{};
  }

  TempDir dir_;
  std::string root_;
};

// Every entry type, in each format GNU tar writes, agrees with lstat() of its source.
class TarEntryTypesTest : public TarGnuTarTest,
                          public ::testing::WithParamInterface<const char*> {};

TEST_P(TarEntryTypesTest, MatchTheFilesystem) {
  WriteFile("d/f", "hello\n", 04755);
  WriteFile("big", RandomBytes(3 << 20, 1));
  WriteFile("empty", "");
  ASSERT_EQ(::chmod((root_ + "/d").c_str(), 0750), 0);
  ASSERT_EQ(::mkdir((root_ + "/t").c_str(), 0777), 0);
  ASSERT_EQ(::chmod((root_ + "/t").c_str(), 01777), 0);
  ASSERT_EQ(::symlink("../big", (root_ + "/d/s").c_str()), 0);
  ASSERT_EQ(::symlink("/usr/bin/python3", (root_ + "/abs").c_str()), 0);
  ASSERT_EQ(::link((root_ + "/d/f").c_str(), (root_ + "/d/h").c_str()), 0);
  ASSERT_EQ(::mkfifo((root_ + "/p").c_str(), 0600), 0);
  bool devices = ::mknod((root_ + "/c").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0 &&
                 ::mknod((root_ + "/b").c_str(), S_IFBLK | 0660, makedev(259, 70000)) == 0;

  std::vector<ReadEntry> entries = Read(Tar(StrCat("--format=", GetParam())));
  ASSERT_EQ(entries.size(), devices ? 12u : 10u);
  const ReadEntry* root = Find(entries, "");
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->entry.type, EntryType::kDirectory);
  for (const ReadEntry& e : entries) {
    SCOPED_TRACE(e.entry.path);
    struct stat st;
    ASSERT_EQ(::lstat((root_ + "/" + e.entry.path).c_str(), &st), 0);
    EXPECT_EQ(e.entry.mode, st.st_mode & 07777);
    EXPECT_EQ(e.entry.uid, st.st_uid);
    EXPECT_EQ(e.entry.gid, st.st_gid);
    EXPECT_EQ(e.entry.mtime, st.st_mtim.tv_sec);
    if (e.entry.type == EntryType::kRegular) {
      ASSERT_TRUE(S_ISREG(st.st_mode));
      ASSERT_OK_AND_ASSIGN(std::string want, ReadFileToString(root_ + "/" + e.entry.path));
      EXPECT_EQ(e.entry.size, want.size());
      EXPECT_TRUE(e.content == want);
      EXPECT_FALSE(e.entry.sparse);
    } else {
      EXPECT_EQ(e.entry.size, 0u);
      EXPECT_EQ(e.content, "");
    }
    EXPECT_EQ(e.entry.type == EntryType::kDirectory, S_ISDIR(st.st_mode));
    EXPECT_EQ(e.entry.type == EntryType::kSymlink, S_ISLNK(st.st_mode));
    EXPECT_EQ(e.entry.type == EntryType::kFifo, S_ISFIFO(st.st_mode));
    EXPECT_EQ(e.entry.type == EntryType::kCharDevice, S_ISCHR(st.st_mode));
    EXPECT_EQ(e.entry.type == EntryType::kBlockDevice, S_ISBLK(st.st_mode));
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      EXPECT_EQ(e.entry.dev_major, major(st.st_rdev));
      EXPECT_EQ(e.entry.dev_minor, minor(st.st_rdev));
    }
  }
  EXPECT_EQ(Find(entries, "d/s")->entry.link_target, "../big");
  EXPECT_EQ(Find(entries, "abs")->entry.link_target, "/usr/bin/python3");
  EXPECT_EQ(Find(entries, "d/f")->entry.mode, 04755u);
  EXPECT_EQ(Find(entries, "t")->entry.mode, 01777u);
  // GNU tar stores whichever name it meets first; the other links to it.
  const ReadEntry* f = Find(entries, "d/f");
  const ReadEntry* h = Find(entries, "d/h");
  const ReadEntry* link = f->entry.type == EntryType::kHardlink ? f : h;
  const ReadEntry* data = link == f ? h : f;
  EXPECT_EQ(link->entry.type, EntryType::kHardlink);
  EXPECT_EQ(link->entry.link_target, data->entry.path);
  EXPECT_EQ(data->content, "hello\n");
}

INSTANTIATE_TEST_SUITE_P(TarFormats, TarEntryTypesTest, ::testing::Values("gnu", "pax", "ustar"));

TEST_F(TarGnuTarTest, V7Format) {
  WriteFile("d/f", "seven\n");
  ASSERT_EQ(::symlink("f", (root_ + "/d/s").c_str()), 0);
  std::vector<ReadEntry> entries = Read(Tar("--format=v7 --sort=name"));
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].entry.path, "");
  EXPECT_EQ(entries[1].entry.type, EntryType::kDirectory);
  EXPECT_EQ(entries[2].entry.type, EntryType::kRegular);  // typeflag '\0'
  EXPECT_EQ(entries[2].content, "seven\n");
  EXPECT_EQ(entries[2].entry.uname, "");  // V7 headers have no owner names
  EXPECT_EQ(entries[3].entry.link_target, "f");
}

class TarLongNamesTest : public TarGnuTarTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(TarLongNamesTest, LongPathsAndLinkTargets) {
  const std::string dir =
      std::string(100, 'a') + "/" + std::string(100, 'b') + "/" + std::string(100, 'c');
  const std::string file = dir + "/" + std::string(150, 'f');  // 454 bytes, components > 100
  WriteFile(file, "long\n");
  WriteFile("x/" + std::string(120, 'g'), "short dir, long name\n");
  ASSERT_EQ(::symlink(std::string(200, 's').c_str(), (root_ + "/sym").c_str()), 0);
  ASSERT_EQ(::link((root_ + "/" + file).c_str(), (root_ + "/zz").c_str()), 0);

  std::vector<ReadEntry> entries = Read(Tar(StrCat("--format=", GetParam())));
  const ReadEntry* f = Find(entries, file);
  const ReadEntry* zz = Find(entries, "zz");
  ASSERT_NE(f, nullptr);
  ASSERT_NE(zz, nullptr);
  ASSERT_NE(Find(entries, dir), nullptr);
  EXPECT_EQ(Find(entries, "x/" + std::string(120, 'g'))->content, "short dir, long name\n");
  EXPECT_EQ(Find(entries, "sym")->entry.link_target, std::string(200, 's'));
  // One of the two names holds the data, the other is a hardlink with a long target.
  const ReadEntry* link = f->entry.type == EntryType::kHardlink ? f : zz;
  EXPECT_EQ(link->entry.type, EntryType::kHardlink);
  EXPECT_EQ(link->entry.link_target, link == f ? "zz" : file);
  EXPECT_EQ((link == f ? zz : f)->content, "long\n");
}

INSTANTIATE_TEST_SUITE_P(TarFormats, TarLongNamesTest, ::testing::Values("gnu", "pax"));

TEST_F(TarGnuTarTest, XattrsFromPax) {
  WriteFile("f", "x");
  const std::string value("v\0\xff al", 6);
  if (::setxattr((root_ + "/f").c_str(), "user.naiad", value.data(), value.size(), 0) != 0) {
    GTEST_SKIP() << "user xattrs unsupported here: " << std::strerror(errno);
  }
  ASSERT_EQ(::setxattr((root_ + "/f").c_str(), "user.empty", "", 0, 0), 0);
  std::vector<ReadEntry> entries = Read(Tar("--xattrs --xattrs-include='*' --format=pax"));
  const ReadEntry* f = Find(entries, "f");
  ASSERT_NE(f, nullptr);
  EXPECT_THAT(f->entry.xattrs,
              ::testing::UnorderedElementsAre(Pair("user.naiad", value), Pair("user.empty", "")));
}

TEST_F(TarGnuTarTest, BigIdsViaBase256AndPax) {
  WriteFile("f", "ids");
  for (const char* format : {"gnu", "pax"}) {
    SCOPED_TRACE(format);
    std::vector<ReadEntry> entries =
        Read(Tar(StrCat("--format=", format, " --owner=4000000000 --group=3000000")));
    const ReadEntry* f = Find(entries, "f");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->entry.uid, 4000000000u);
    EXPECT_EQ(f->entry.gid, 3000000u);
  }
}

TEST_F(TarGnuTarTest, NanosecondMtimeUnderPax) {
  WriteFile("f", "t");
  ASSERT_OK(Shell(StrCat("touch -d '2021-03-04 05:06:07.123456789' ", root_, "/f")));
  struct stat st;
  ASSERT_EQ(::stat((root_ + "/f").c_str(), &st), 0);
  std::vector<ReadEntry> entries = Read(Tar("--format=pax"));
  const ReadEntry* f = Find(entries, "f");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->entry.mtime, st.st_mtim.tv_sec);
  EXPECT_EQ(f->entry.mtime_nsec, 123456789u);
  std::vector<ReadEntry> gnu = Read(Tar("--format=gnu"));
  EXPECT_EQ(Find(gnu, "f")->entry.mtime_nsec, 0u);  // GNU headers have whole seconds only
}

TEST_F(TarGnuTarTest, CompressedLayersReadLikeThePlainOne) {
  WriteFile("a", RandomBytes(5 << 20, 2));
  WriteFile("b/c", std::string(1 << 20, 'z'));
  std::vector<ReadEntry> plain = Read(Tar("--format=pax"));
  ASSERT_EQ(plain.size(), 4u);
  for (const char* flags : {"-z", "--zstd"}) {
    SCOPED_TRACE(flags);
    std::vector<ReadEntry> other = Read(Tar(StrCat("--format=pax ", flags), "layer.c"));
    ASSERT_EQ(other.size(), plain.size());
    for (size_t i = 0; i < plain.size(); ++i) {
      EXPECT_EQ(other[i].entry.path, plain[i].entry.path);
      EXPECT_TRUE(other[i].content == plain[i].content);
    }
  }
}

TEST_F(TarGnuTarTest, CorruptGzipLayerIsDataLossNamingGzip) {
  WriteFile("a", RandomBytes(1 << 20, 3));
  std::string path = Tar("-z", "layer.tar.gz");
  ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFileToString(path));
  for (size_t i = 2000; i < 2100; ++i) bytes[i] = static_cast<char>(~bytes[i]);
  ASSERT_OK(WriteFileAtomically(path, bytes));
  EXPECT_THAT(ReadLayerFile(path), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("gzip")));
}

TEST_F(TarGnuTarTest, StripLeadingSlashAcceptsAbsoluteNames) {
  WriteFile("etc/motd", "hi");
  std::string layer = dir_.Join("abs.tar");
  ASSERT_OK(Shell(StrCat("tar -P --transform='s,^\\./,/,' -cf ", layer, " -C ", root_, " ./etc")));
  EXPECT_THAT(ReadLayerFile(layer),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute path")));
  ASSERT_OK_AND_ASSIGN(std::vector<ReadEntry> entries,
                       ReadLayerFile(layer, {.strip_leading_slash = true}));
  ASSERT_NE(Find(entries, "etc/motd"), nullptr);
  EXPECT_EQ(Find(entries, "etc/motd")->content, "hi");
}

TEST_F(TarGnuTarTest, SmallBuffersAndShortReads) {
  WriteFile("a", RandomBytes(300000, 4));
  WriteFile("b", RandomBytes(513, 5));
  std::string layer = Tar("--format=gnu");
  ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFileToString(layer));
  // A source that returns 1000 bytes at a time and a reader buffer at its minimum.
  ASSERT_OK_AND_ASSIGN(auto entries,
                       ::naiad::tar::testing::ReadTarString(bytes, {.buffer_size = 1}, 1000));
  ASSERT_OK_AND_ASSIGN(std::string a, ReadFileToString(root_ + "/a"));
  EXPECT_TRUE(Find(entries, "a")->content == a);
  EXPECT_EQ(Find(entries, "b")->content.size(), 513u);
}

TEST_F(TarGnuTarTest, NextSkipsUnreadContentAndReadAfterEndIsZero) {
  WriteFile("a", RandomBytes(200000, 6));
  WriteFile("b", "bee");
  ASSERT_OK_AND_ASSIGN(auto layer, OpenLayer(Tar("--format=gnu --sort=name")));
  ASSERT_OK_AND_ASSIGN(auto reader, Reader::Create(std::move(layer)));
  char buf[100];
  EXPECT_THAT(reader->Read(buf, sizeof(buf)), ::naiad::testing::IsOkAndHolds(0u));
  ASSERT_OK_AND_ASSIGN(auto root, reader->Next());
  ASSERT_OK_AND_ASSIGN(auto a, reader->Next());
  ASSERT_EQ(a->path, "a");
  EXPECT_THAT(reader->Read(buf, sizeof(buf)), ::naiad::testing::IsOkAndHolds(100u));
  ASSERT_OK_AND_ASSIGN(auto b, reader->Next());  // skips the other 199900 bytes
  ASSERT_EQ(b->path, "b");
  EXPECT_THAT(reader->Read(buf, sizeof(buf)), ::naiad::testing::IsOkAndHolds(3u));
  EXPECT_EQ(std::string(buf, 3), "bee");
  ASSERT_OK_AND_ASSIGN(auto end, reader->Next());
  EXPECT_FALSE(end.has_value());
  ASSERT_OK_AND_ASSIGN(end, reader->Next());
  EXPECT_FALSE(end.has_value());
  EXPECT_THAT(reader->Read(buf, sizeof(buf)), ::naiad::testing::IsOkAndHolds(0u));
  EXPECT_EQ(b->header_offset, 512u * 2 + 200192);  // after root's header, a's header and data
}

// 9 GiB does not fit the 11 octal digits of a size field: GNU tar switches to base-256.
TEST_F(TarGnuTarTest, HugeSparseFileUsesBase256Size) {
  const uint64_t size = uint64_t{9} << 30;
  ASSERT_OK(Shell(StrCat("truncate -s ", size, " big && printf tail | dd of=big bs=1 seek=",
                         size - 4, " conv=notrunc status=none"),
                  root_));
  ASSERT_OK_AND_ASSIGN(auto layer, OpenLayer(Tar("--sparse --format=gnu")));
  ASSERT_OK_AND_ASSIGN(auto reader, Reader::Create(std::move(layer)));
  ASSERT_OK_AND_ASSIGN(auto root, reader->Next());
  ASSERT_OK_AND_ASSIGN(auto big, reader->Next());
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->size, size);
  EXPECT_TRUE(big->sparse);
  std::string buf(1 << 20, '\0');
  uint64_t total = 0;
  std::string last;
  for (;;) {
    ASSERT_OK_AND_ASSIGN(size_t n, reader->Read(buf.data(), buf.size()));
    if (n == 0) break;
    total += n;
    last.assign(buf.data(), n);
  }
  EXPECT_EQ(total, size);
  EXPECT_TRUE(last.ends_with("tail"));
}

// libarchive's writer: pax (with LIBARCHIVE.xattr.* next to SCHILY.xattr.*), GNU and ustar.
TEST_F(TarGnuTarTest, BsdtarArchives) {
  if (!HaveCommand("bsdtar")) {
    GTEST_SKIP() << "bsdtar not installed (libarchive-tools)";
  }
  WriteFile("dir/" + std::string(150, 'n'), "long name\n");
  WriteFile("f", RandomBytes(70000, 7));
  ASSERT_EQ(::symlink("f", (root_ + "/s").c_str()), 0);
  ASSERT_EQ(::link((root_ + "/f").c_str(), (root_ + "/h").c_str()), 0);
  const bool xattrs = ::setxattr((root_ + "/f").c_str(), "user.k", "v", 1, 0) == 0;
  for (const char* format : {"pax", "gnutar", "ustar"}) {
    SCOPED_TRACE(format);
    if (std::string(format) == "ustar") {
      ASSERT_OK(RemoveAll(root_ + "/dir"));  // its name is too long for ustar
    }
    std::string layer = dir_.Join(StrCat(format, ".tar"));
    ASSERT_OK(Shell(StrCat("bsdtar --format=", format, " -cf ", layer, " -C ", root_, " .")));
    std::vector<ReadEntry> entries = Read(layer);
    ASSERT_OK_AND_ASSIGN(std::string f, ReadFileToString(root_ + "/f"));
    const ReadEntry* file = Find(entries, "f");
    const ReadEntry* hard = Find(entries, "h");
    ASSERT_NE(file, nullptr);
    ASSERT_NE(hard, nullptr);
    const ReadEntry* data = file->entry.type == EntryType::kRegular ? file : hard;
    EXPECT_TRUE(data->content == f);
    EXPECT_EQ(Find(entries, "s")->entry.link_target, "f");
    if (std::string(format) != "ustar") {
      ASSERT_NE(Find(entries, "dir/" + std::string(150, 'n')), nullptr);
    }
    if (xattrs && std::string(format) == "pax") {
      EXPECT_THAT(data->entry.xattrs, ElementsAre(Pair("user.k", "v")));
    }
  }
}

// ---- the upstream Nydus fixtures ----

std::string FixturePath(const std::string& name) {
  return ::naiad::testing::NydusFixturePath("tar/" + name);
}

class TarNydusFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(FixturePath(""))) {
      GTEST_SKIP() << "no upstream tar fixtures at " << FixturePath("") << " (../shared absent)";
    }
  }
};

TEST_F(TarNydusFixtureTest, AllEntryType) {
  ASSERT_OK_AND_ASSIGN(auto entries, ReadLayerFile(FixturePath("all-entry-type.tar")));
  std::vector<std::string> paths;
  paths.reserve(entries.size());
  for (const ReadEntry& e : entries) paths.push_back(e.entry.path);
  EXPECT_THAT(paths, ElementsAre("tar", "tar/dir1", "tar/dir1/dir3", "tar/dir1/dir3/hardlink1.txt",
                                 "tar/dir1/dir3/xfile.txt", "tar/dir1/hardlink2.txt", "tar/dir2",
                                 "tar/dir2/hardlink3.txt", "tar/dir2/symlink1.txt"));
  const ReadEntry* data = Find(entries, "tar/dir1/dir3/hardlink1.txt");
  EXPECT_EQ(data->entry.type, EntryType::kRegular);
  EXPECT_EQ(data->content, "This is a test\n");
  EXPECT_EQ(data->entry.mtime, 1665584430);
  const ReadEntry* link = Find(entries, "tar/dir2/hardlink3.txt");
  EXPECT_EQ(link->entry.type, EntryType::kHardlink);
  EXPECT_EQ(link->entry.link_target, "tar/dir1/dir3/hardlink1.txt");
  const ReadEntry* sym = Find(entries, "tar/dir2/symlink1.txt");
  EXPECT_EQ(sym->entry.type, EntryType::kSymlink);
  EXPECT_EQ(sym->entry.link_target, "../dir1/dir3/file1.txt");
  EXPECT_EQ(sym->entry.mode, 0755u);
}

TEST_F(TarNydusFixtureTest, AllEntryTypeMacos) {
  ASSERT_OK_AND_ASSIGN(auto entries, ReadLayerFile(FixturePath("all-entry-type-macos.tar")));
  EXPECT_EQ(entries.size(), 16u);
  const ReadEntry* data = Find(entries, "tar/dir1/hardlink2.txt");
  ASSERT_NE(data, nullptr);
  EXPECT_EQ(data->entry.uid, 502u);
  EXPECT_EQ(data->entry.gid, 20u);
  EXPECT_EQ(data->entry.uname, "gerry");
  EXPECT_EQ(data->entry.mtime_nsec, 393557573u);
  // SCHILY and LIBARCHIVE spell the same xattr twice; it comes out once.
  EXPECT_THAT(data->entry.xattrs, ElementsAre(Pair("hardlink3", "value")));
  EXPECT_THAT(Find(entries, "tar/dir1/dir3")->entry.xattrs, ElementsAre(Pair("dir", "value")));
  const ReadEntry* link = Find(entries, "tar/dir2/hardlink3.txt");
  EXPECT_EQ(link->entry.link_target, "tar/dir1/hardlink2.txt");
  EXPECT_EQ(Find(entries, "tar/dir1/._dir3")->content.size(), 141u);
  const ReadEntry* long_entry = nullptr;  // a 256-byte name, from a PAX path record
  for (const ReadEntry& e : entries) {
    if (e.entry.path.starts_with("tar/dir1/dir3/this_is_really")) long_entry = &e;
  }
  ASSERT_NE(long_entry, nullptr);
  EXPECT_GT(long_entry->entry.path.size(), 255u);
  EXPECT_EQ(long_entry->content.size(), 10u);
}

TEST_F(TarNydusFixtureTest, EmptyFileIsAnEmptyLayer) {
  ASSERT_OK_AND_ASSIGN(auto entries, ReadLayerFile(FixturePath("empty.tar")));
  EXPECT_TRUE(entries.empty());
}

}  // namespace
}  // namespace naiad::tar
