// Hand-built archives: the hardening rules, the odd corners of the formats, and how archives end.
#include <string>
#include <vector>

#include "base/status_matchers.h"
#include "tar/reader.h"
#include "tar/tar_testing.h"

namespace naiad::tar {
namespace {

using ::naiad::tar::testing::Base256;
using ::naiad::tar::testing::HeaderSpec;
using ::naiad::tar::testing::MakeHeader;
using ::naiad::tar::testing::Padded;
using ::naiad::tar::testing::ReadEntry;
using ::naiad::tar::testing::ReadTarString;
using ::naiad::tar::testing::TarBuilder;
using ::naiad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::Status ReadStatus(const std::string& tar, ReaderOptions options = {}) {
  return ReadTarString(tar, options).status();
}

std::vector<ReadEntry> ReadOk(const std::string& tar, ReaderOptions options = {}) {
  absl::StatusOr<std::vector<ReadEntry>> entries = ReadTarString(tar, options);
  EXPECT_OK(entries);
  return entries.ok() ? *std::move(entries) : std::vector<ReadEntry>{};
}

std::string OneEntry(HeaderSpec spec, const std::string& data = "") {
  return TarBuilder().Add(std::move(spec), data).Finish();
}

// ---- paths ----

TEST(TarHardening, EscapingPathNamesEntryAndOffset) {
  TarBuilder tar;
  tar.File("ok", "x").File("../etc/passwd", "evil");
  EXPECT_THAT(ReadStatus(tar.Finish()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "tar entry \"../etc/passwd\" at offset 1024: path escapes the layer root"));
  EXPECT_THAT(ReadStatus(TarBuilder().File("a/../../b", "").Finish()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'..' component")));
}

TEST(TarHardening, AbsolutePaths) {
  std::string tar = TarBuilder().File("/etc/shadow", "s").Finish();
  EXPECT_THAT(ReadStatus(tar), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("\"/etc/shadow\" at offset 0: absolute path")));
  std::vector<ReadEntry> entries = ReadOk(tar, {.strip_leading_slash = true});
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].entry.path, "etc/shadow");
}

TEST(TarHardening, ComponentAndPathLengthsAndNul) {
  EXPECT_THAT(
      ReadStatus(TarBuilder().Pax({{"path", std::string(256, 'n')}}).File("x", "").Finish()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer than 255 bytes")));
  std::string deep;
  while (deep.size() <= 4096) deep += std::string(200, 'd') + "/";
  EXPECT_THAT(ReadStatus(TarBuilder().Pax({{"path", deep + "f"}}).File("x", "").Finish()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer than 4096 bytes")));
  EXPECT_THAT(
      ReadStatus(TarBuilder().Pax({{"path", std::string("a\0b", 3)}}).File("x", "").Finish()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(ReadStatus(TarBuilder()
                             .Add({.name = "././@LongLink", .type = 'L'}, std::string("a\0b\0", 4))
                             .File("x", "")
                             .Finish()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
}

TEST(TarHardening, HardlinkTargets) {
  auto link = [](const std::string& target) {
    return TarBuilder().File("f", "x").Add({.name = "l", .type = '1', .linkname = target}).Finish();
  };
  std::vector<ReadEntry> ok = ReadOk(link("./f"));
  ASSERT_EQ(ok.size(), 2u);
  EXPECT_EQ(ok[1].entry.link_target, "f");
  EXPECT_THAT(ReadStatus(link("../f")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "tar entry \"l\" at offset 1024: hardlink target \"../f\": path escapes "
                       "the layer root"));
  EXPECT_THAT(ReadStatus(link("/f")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute path")));
  EXPECT_EQ(ReadOk(link("/f"), {.strip_leading_slash = true})[1].entry.link_target, "f");
  EXPECT_THAT(ReadStatus(link("./")), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("hardlink to the layer root")));
  EXPECT_THAT(ReadStatus(link("")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without a target")));
}

TEST(TarHardening, SymlinkTargets) {
  auto sym = [](const std::string& name, const std::string& target) {
    return TarBuilder().Add({.name = name, .type = '2', .linkname = target}).Finish();
  };
  EXPECT_EQ(ReadOk(sym("usr/bin/py", "/usr/bin/python3"))[0].entry.link_target, "/usr/bin/python3");
  EXPECT_EQ(ReadOk(sym("usr/bin/py", "../../x//./y"))[0].entry.link_target, "../../x//./y");
  EXPECT_THAT(ReadStatus(sym("usr/bin/py", "../../../etc/passwd")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "tar entry \"usr/bin/py\" at offset 0: symlink target "
                       "\"../../../etc/passwd\" climbs above the layer root"));
  EXPECT_EQ(ReadOk(sym("usr/bin/py", "../../../etc/passwd"), {.reject_escaping_symlinks = false})[0]
                .entry.link_target,
            "../../../etc/passwd");
  EXPECT_THAT(ReadStatus(sym("s", "")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty symlink target")));
}

TEST(TarHardening, RootEntry) {
  for (const char* root : {"./", ".", "/"}) {
    SCOPED_TRACE(root);
    std::vector<ReadEntry> entries =
        ReadOk(TarBuilder().Add({.name = root, .type = '5', .mode = 0700, .uid = 7}).Finish());
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].entry.path, "");
    EXPECT_EQ(entries[0].entry.mode, 0700u);
    EXPECT_EQ(entries[0].entry.uid, 7u);
  }
  EXPECT_THAT(ReadStatus(TarBuilder().File(".", "x").Finish()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be a directory")));
}

// ---- corruption and limits ----

TEST(TarCorruption, ChecksumMismatchIsDataLoss) {
  std::string tar = TarBuilder().File("a", "x").File("b", "y").Finish();
  tar[1024 + 10] = 'Z';  // inside b's name, checksum untouched
  EXPECT_THAT(ReadStatus(tar), StatusIs(absl::StatusCode::kDataLoss,
                                        "tar header at offset 1024: checksum mismatch"));
}

TEST(TarCorruption, TruncatedHeaderAndData) {
  std::string tar = TarBuilder().File("a", std::string(1000, 'a')).File("b", "y").bytes();
  EXPECT_THAT(ReadStatus(tar.substr(0, 1536 + 100)),
              StatusIs(absl::StatusCode::kDataLoss,
                       "truncated tar: header at offset 1536 wants 412 more bytes"));
  EXPECT_THAT(ReadStatus(tar.substr(0, 512 + 300)),
              StatusIs(absl::StatusCode::kDataLoss,
                       "truncated tar: entry \"a\" at offset 0 wants 724 more bytes"));
  // Read() sees it too, and the error sticks.
  ASSERT_OK_AND_ASSIGN(auto reader,
                       Reader::Create(std::make_unique<StringInputStream>(tar.substr(0, 812))));
  ASSERT_OK_AND_ASSIGN(auto entry, reader->Next());
  char buf[2000];
  ASSERT_OK_AND_ASSIGN(size_t n, reader->Read(buf, sizeof(buf)));
  EXPECT_EQ(n, 300u);
  EXPECT_THAT(reader->Read(buf, sizeof(buf)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  EXPECT_THAT(reader->Next(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
}

TEST(TarLimits, EntrySize) {
  std::string huge = MakeHeader({.name = "big"});
  huge.replace(124, 12, Base256(int64_t{1} << 41, 12));
  ::naiad::tar::testing::FixChecksum(&huge);
  EXPECT_THAT(ReadStatus(huge),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tar entry \"big\" at offset 0: size 2199023255552 exceeds")));
  EXPECT_THAT(ReadStatus(OneEntry({.name = "f"}, "12345"), {.max_entry_size = 4}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_entry_size")));
  // PAX size overrides the header's, and is checked the same way.
  EXPECT_THAT(ReadStatus(TarBuilder().Pax({{"size", "3000000000000"}}).File("f", "").Finish()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds")));
}

TEST(TarLimits, ExtensionHeaderSizes) {
  std::string pax = MakeHeader({.name = "p", .type = 'x', .size = (1 << 20) + 1});
  EXPECT_THAT(ReadStatus(pax),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "tar header at offset 0: PAX extended header of 1048577 bytes exceeds "
                       "the limit of 1048576 bytes"));
  std::string name = MakeHeader({.name = "././@LongLink", .type = 'L', .size = 1 << 30});
  EXPECT_THAT(ReadStatus(name),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("GNU long name of")));
  // Many headers in a row for one entry.
  TarBuilder many;
  for (int i = 0; i < 5; ++i) many.Pax({{"comment", std::string(1000000, 'c')}});
  EXPECT_THAT(ReadStatus(many.File("f", "").Finish()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("extension headers of one")));
}

TEST(TarLimits, UnknownTypeFlags) {
  EXPECT_THAT(ReadStatus(OneEntry({.name = "q", .type = 'Q'})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "tar entry \"q\" at offset 0: unknown type flag 'Q' (0x51)"));
  EXPECT_THAT(ReadStatus(OneEntry({.name = "q", .type = '\x01'})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown type flag (0x01)")));
  EXPECT_THAT(ReadStatus(OneEntry({.name = "q", .type = 'M'})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'M'")));
}

TEST(TarLimits, BadNumericFieldsAndIds) {
  std::string bad_mode = MakeHeader({.name = "m"});
  bad_mode.replace(100, 8, std::string("0x44\0\0\0\0", 8));
  ::naiad::tar::testing::FixChecksum(&bad_mode);
  EXPECT_THAT(ReadStatus(bad_mode), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("\"m\" at offset 0: invalid mode field")));
  EXPECT_THAT(
      ReadStatus(OneEntry({.name = "u", .uid = uint64_t{1} << 33, .base256_ids = true})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("uid 8589934592 does not fit")));
  EXPECT_THAT(
      ReadStatus(TarBuilder().Pax({{"gid", "x"}}).File("f", "").Finish()),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("tar header at offset 0: PAX extended header: PAX record \"gid\"")));
  EXPECT_THAT(
      ReadStatus(TarBuilder().Add({.name = "p", .type = 'x'}, "garbage").File("f", "").Finish()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed PAX record")));
}

TEST(TarLimits, Base256SizeIsDecoded) {
  std::string big = MakeHeader({.name = "big"});
  big.replace(124, 12, Base256((int64_t{1} << 33) + 1, 12));
  ::naiad::tar::testing::FixChecksum(&big);
  ASSERT_OK_AND_ASSIGN(
      auto reader,
      Reader::Create(std::make_unique<StringInputStream>(big + std::string(1000, 'b'))));
  ASSERT_OK_AND_ASSIGN(auto entry, reader->Next());
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->size, (uint64_t{1} << 33) + 1);
  char buf[4096];
  ASSERT_OK_AND_ASSIGN(size_t n, reader->Read(buf, sizeof(buf)));
  EXPECT_EQ(n, 1000u);
  EXPECT_THAT(reader->Read(buf, sizeof(buf)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("wants 8589934104 more bytes")));
}

// ---- how archives end ----

TEST(TarEndOfArchive, Variants) {
  const std::string body = TarBuilder().File("a", "x").bytes();
  EXPECT_EQ(ReadOk(body).size(), 1u);                           // no zero blocks at all
  EXPECT_EQ(ReadOk(body + std::string(512, '\0')).size(), 1u);  // a single zero block
  EXPECT_EQ(ReadOk(body + std::string(700, '\0')).size(), 1u);  // ... and a partial one
  EXPECT_EQ(ReadOk(body + std::string(1024, '\0') + "trailing garbage").size(), 1u);
  EXPECT_EQ(ReadOk("").size(), 0u);
  EXPECT_EQ(ReadOk(std::string(10240, '\0')).size(), 0u);
  EXPECT_THAT(ReadStatus(body + std::string(512, '\0') + TarBuilder().File("hidden", "").bytes()),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("offset 1536: data after a single zero block")));
  const std::string pax = TarBuilder().Pax({{"path", "p"}}).bytes();
  EXPECT_THAT(ReadStatus(pax),
              StatusIs(absl::StatusCode::kDataLoss,
                       "truncated tar: header at offset 1024 wants 512 more bytes"));
  EXPECT_THAT(ReadStatus(pax + std::string(1024, '\0')),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("right after an extended header")));
  // A trailing global header (git archive of an empty tree writes one) is fine.
  EXPECT_EQ(ReadOk(TarBuilder().Pax({{"comment", "c"}}, 'g').Finish()).size(), 0u);
}

// ---- format corners ----

TEST(TarFormats, OldStyleEntries) {
  TarBuilder tar;
  tar.Add({.name = "label", .type = 'V'});            // volume label: skipped
  tar.Add({.name = "contig", .type = '7'}, "seven");  // contiguous: regular
  tar.Add({.name = "olddir/", .type = '\0', .magic = std::string(8, '\0')});  // V7 directory
  tar.Add({.name = "dir2/", .type = '0'});
  tar.Add({.name = "dump", .type = 'D'}, std::string("listing\0", 8));  // GNU dumpdir
  tar.Add({.name = "s", .type = '2', .size = 600, .linkname = "t"});    // size ignored: no data
  tar.File("after", "ok");
  std::vector<ReadEntry> entries = ReadOk(tar.Finish());
  ASSERT_EQ(entries.size(), 6u);
  EXPECT_EQ(entries[0].entry.path, "contig");
  EXPECT_EQ(entries[0].content, "seven");
  EXPECT_EQ(entries[1].entry.path, "olddir");
  EXPECT_EQ(entries[1].entry.type, EntryType::kDirectory);
  EXPECT_EQ(entries[2].entry.type, EntryType::kDirectory);
  EXPECT_EQ(entries[3].entry.type, EntryType::kDirectory);
  EXPECT_EQ(entries[3].content, "");
  EXPECT_EQ(entries[4].entry.link_target, "t");
  EXPECT_EQ(entries[5].content, "ok");
}

TEST(TarFormats, UstarPrefixAndGnuLongLink) {
  TarBuilder tar;
  tar.Add({.name = "file", .prefix = "some/prefix"}, "p");
  tar.Add({.name = "././@LongLink", .type = 'K', .magic = std::string("ustar  \0", 8)},
          std::string(150, 't') + std::string(1, '\0'));
  tar.Add(
      {.name = "sym", .type = '2', .linkname = "truncated", .magic = std::string("ustar  \0", 8)});
  // In GNU headers the prefix area is something else (atime): it is not part of the name.
  tar.Add({.name = "gnu", .magic = std::string("ustar  \0", 8), .prefix = "12345670123"}, "g");
  std::vector<ReadEntry> entries = ReadOk(tar.Finish());
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].entry.path, "some/prefix/file");
  EXPECT_EQ(entries[1].entry.link_target, std::string(150, 't'));
  EXPECT_EQ(entries[2].entry.path, "gnu");
}

TEST(TarFormats, PaxGlobalsAndLocals) {
  TarBuilder tar;
  tar.Pax({{"uid", "1000"}, {"path", "ignored"}, {"SCHILY.xattr.user.g", "1"}}, 'g');
  tar.File("a", "");
  tar.Pax({{"uid", "2000"}, {"SCHILY.xattr.user.l", "2"}}).File("b", "");
  tar.Pax({{"uid", ""}}).Add({.name = "c", .uid = 5});  // "uid=" falls back to the header
  tar.Pax({{"mtime", "-1.5"}, {"uname", "alice"}, {"linkpath", "/x"}})
      .Add({.name = "d", .type = '2'});
  std::vector<ReadEntry> entries = ReadOk(tar.Finish());
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].entry.path, "a");
  EXPECT_EQ(entries[0].entry.uid, 1000u);
  EXPECT_THAT(entries[0].entry.xattrs, ElementsAre(::testing::Pair("user.g", "1")));
  EXPECT_EQ(entries[1].entry.uid, 2000u);
  EXPECT_EQ(entries[1].entry.xattrs.size(), 2u);
  EXPECT_EQ(entries[2].entry.uid, 5u);
  EXPECT_EQ(entries[3].entry.mtime, -2);
  EXPECT_EQ(entries[3].entry.mtime_nsec, 500000000u);
  EXPECT_EQ(entries[3].entry.uname, "alice");
  EXPECT_EQ(entries[3].entry.link_target, "/x");
}

TEST(TarFormats, DevicesAndNegativeMtime) {
  TarBuilder tar;
  tar.Add({.name = "c", .type = '3', .devmajor = 4, .devminor = 64});
  tar.Pax({{"SCHILY.devmajor", "300000000"}, {"SCHILY.devminor", "7"}})
      .Add({.name = "b", .type = '4'});
  tar.Add({.name = "old", .mtime = -86400});
  std::vector<ReadEntry> entries = ReadOk(tar.Finish());
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].entry.type, EntryType::kCharDevice);
  EXPECT_EQ(entries[0].entry.dev_major, 4u);
  EXPECT_EQ(entries[0].entry.dev_minor, 64u);
  EXPECT_EQ(entries[1].entry.dev_major, 300000000u);
  EXPECT_EQ(entries[2].entry.mtime, -86400);
}

TEST(TarFormats, SignedChecksumAndBase256Ids) {
  std::vector<ReadEntry> entries = ReadOk(
      OneEntry({.name = "f", .uid = 3000000000, .gid = 2100000, .base256_ids = true}, "data"));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].entry.uid, 3000000000u);
  EXPECT_EQ(entries[0].entry.gid, 2100000u);
}

}  // namespace
}  // namespace naiad::tar
