// Field decoding: numeric fields, checksums, PAX records and times, sparse maps.
#include "tar/format.h"

#include <string>

#include "base/status_matchers.h"
#include "tar/pax.h"
#include "tar/pax_attributes.h"
#include "tar/sparse.h"
#include "tar/tar_testing.h"

namespace naiad::tar {
namespace {

using ::naiad::tar::testing::Base256;
using ::naiad::tar::testing::HeaderSpec;
using ::naiad::tar::testing::MakeHeader;
using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(TarParseNumeric, Octal) {
  EXPECT_THAT(format::ParseUnsigned(std::string_view("0000644\0", 8)), IsOkAndHolds(0644u));
  EXPECT_THAT(format::ParseUnsigned(std::string_view("   644 \0", 8)), IsOkAndHolds(0644u));
  EXPECT_THAT(format::ParseUnsigned(std::string_view("\0\0\0\0\0\0\0\0", 8)), IsOkAndHolds(0u));
  EXPECT_THAT(format::ParseUnsigned(std::string_view("       \0", 8)), IsOkAndHolds(0u));
  EXPECT_THAT(format::ParseUnsigned("77777777777"), IsOkAndHolds(077777777777u));  // no NUL
  EXPECT_THAT(format::ParseUnsigned(std::string_view("0644\0zz", 7)), IsOkAndHolds(0644u));
  EXPECT_THAT(format::ParseUnsigned("06x4"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("octal")));
  EXPECT_THAT(format::ParseUnsigned("0649"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("octal")));
  EXPECT_THAT(format::ParseUnsigned("7777777777777777777777"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflows")));
}

TEST(TarParseNumeric, Base256) {
  EXPECT_THAT(format::ParseUnsigned(Base256(uint64_t{1} << 40, 12)),
              IsOkAndHolds(uint64_t{1} << 40));
  EXPECT_THAT(format::ParseUnsigned(Base256(3000000000, 8)), IsOkAndHolds(3000000000u));
  EXPECT_THAT(format::ParseSigned(Base256(-1, 12)), IsOkAndHolds(-1));
  EXPECT_THAT(format::ParseSigned(Base256(-1234567890123, 12)), IsOkAndHolds(-1234567890123));
  EXPECT_THAT(format::ParseUnsigned(Base256(-5, 12)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));
  std::string huge(12, '\xff');
  huge[0] = static_cast<char>(0x80);
  EXPECT_THAT(format::ParseUnsigned(huge),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflows")));
}

TEST(TarChecksum, UnsignedAndSignedSumsAreAccepted) {
  std::string block = MakeHeader({.name = "caf\xc3\xa9"});  // bytes >= 0x80 make the sums differ
  EXPECT_TRUE(format::ChecksumMatches(block.data()));
  // Rewrite the checksum as the signed sum that old Sun tar wrote.
  int sum = 0;
  for (size_t i = 0; i < 512; ++i) {
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<signed char>(block[i]);
  }
  std::string field = ::naiad::tar::testing::Octal(static_cast<uint64_t>(sum), 7) + " ";
  block.replace(148, 8, field);
  EXPECT_TRUE(format::ChecksumMatches(block.data()));
  block[0] = 'X';
  EXPECT_FALSE(format::ChecksumMatches(block.data()));
}

TEST(TarDialect, FromMagic) {
  HeaderSpec spec{.name = "x"};
  auto dialect = [](const std::string& block) {
    return format::DetectDialect(*reinterpret_cast<const format::UstarHeader*>(block.data()));
  };
  EXPECT_EQ(dialect(MakeHeader(spec)), format::Dialect::kUstar);
  spec.magic = std::string("ustar  \0", 8);
  EXPECT_EQ(dialect(MakeHeader(spec)), format::Dialect::kGnu);
  spec.magic = std::string(8, '\0');
  EXPECT_EQ(dialect(MakeHeader(spec)), format::Dialect::kV7);
}

TEST(TarPaxRecords, ParsesInOrderWithBinaryValues) {
  std::string data = ::naiad::tar::testing::PaxRecords(
      {{"path", "a=b\nc"}, {"SCHILY.xattr.user.bin", std::string("\0\x01", 2)}, {"path", "d"}});
  data += std::string(30, '\0');  // padding is ignored
  ASSERT_OK_AND_ASSIGN(std::vector<PaxRecord> records, ParsePaxRecords(data));
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].value, "a=b\nc");
  EXPECT_EQ(records[1].value, std::string("\0\x01", 2));
  EXPECT_EQ(records[2].key, "path");
}

TEST(TarPaxRecords, RejectsMalformed) {
  for (const char* bad : {"5 a=b\n", "99 a=b\n", "x a=b\n", "7 a=b\nZ", "6 =ab\n", "6 abc\n",
                          "7 a=bcd", "-7 a=b\n", "0 \n", "123456789012345678901 a=b\n"}) {
    EXPECT_THAT(ParsePaxRecords(bad), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_))
        << bad;
  }
}

TEST(TarPaxTime, FractionsAndNegatives) {
  auto t = [](const char* text) -> std::pair<int64_t, uint32_t> {
    absl::StatusOr<PaxTime> time = ParsePaxTime(text);
    if (!time.ok()) return {-999, 999};
    return {time->seconds, time->nanoseconds};
  };
  EXPECT_EQ(t("1665584430.393557573"), std::make_pair(int64_t{1665584430}, 393557573u));
  EXPECT_EQ(t("12"), std::make_pair(int64_t{12}, 0u));
  EXPECT_EQ(t("12.5"), std::make_pair(int64_t{12}, 500000000u));
  EXPECT_EQ(t("12.1234567899999"), std::make_pair(int64_t{12}, 123456789u));
  EXPECT_EQ(t("-1.25"), std::make_pair(int64_t{-2}, 750000000u));
  EXPECT_EQ(t("-3"), std::make_pair(int64_t{-3}, 0u));
  for (const char* bad : {"", ".5", "1.x", "abc", "99999999999999999999", "1e5", "--1"}) {
    EXPECT_FALSE(ParsePaxTime(bad).ok()) << bad;
  }
}

TEST(TarPaxAttributes, XattrsDecodeAndLaterValuesWin) {
  PaxAttributes attrs;
  ASSERT_OK(ApplyPaxRecords({{"SCHILY.xattr.user.a", "1"},
                             {"LIBARCHIVE.xattr.user.b%3Dc", "dmFsdWU"},  // "value", unpadded
                             {"LIBARCHIVE.xattr.user.a", "Mg=="},         // "2" replaces "1"
                             {"uid", "4000000000"},
                             {"mtime", "5.5"},
                             {"comment", "ignored"}},
                            false, &attrs));
  EXPECT_THAT(attrs.xattrs, ElementsAre(Pair("user.a", "2"), Pair("user.b=c", "value")));
  EXPECT_EQ(attrs.uid, 4000000000u);
  ASSERT_TRUE(attrs.mtime);
  EXPECT_EQ(attrs.mtime->nanoseconds, 500000000u);
  ASSERT_OK(ApplyPaxRecords({{"uid", ""}}, false, &attrs));
  EXPECT_FALSE(attrs.uid);
}

TEST(TarPaxAttributes, RejectsBadValues) {
  PaxAttributes attrs;
  EXPECT_THAT(ApplyPaxRecords({{"uid", "4294967296"}}, false, &attrs),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32 bits")));
  EXPECT_THAT(ApplyPaxRecords({{"size", "-1"}}, false, &attrs),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("size")));
  EXPECT_THAT(ApplyPaxRecords({{"LIBARCHIVE.xattr.user.x", "!!!"}}, false, &attrs),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base64")));
  EXPECT_THAT(ApplyPaxRecords({{"SCHILY.xattr.", "v"}}, false, &attrs),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty xattr name")));
  EXPECT_THAT(ApplyPaxRecords({{"SCHILY.xattr.user.big", std::string(65537, 'v')}}, false, &attrs),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("larger than")));
  EXPECT_THAT(ApplyPaxRecords({{"GNU.sparse.numbytes", "5"}}, false, &attrs),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alternate")));
}

TEST(TarPaxAttributes, GlobalsCarryOnlyPerEntryNeutralKeys) {
  PaxAttributes globals;
  ASSERT_OK(ApplyPaxRecords({{"path", "x"}, {"size", "9"}, {"gid", "7"}, {"comment", "c"}}, true,
                            &globals));
  EXPECT_FALSE(globals.path);
  EXPECT_FALSE(globals.size);
  EXPECT_EQ(globals.gid, 7u);
}

TEST(TarSparseMap, Validation) {
  using M = std::vector<SparseSegment>;
  EXPECT_OK(ValidateSparseMap(M{{0, 10}, {100, 5}, {200, 0}}, 200, 15));
  EXPECT_OK(ValidateSparseMap(M{}, 1000, 0));
  EXPECT_THAT(ValidateSparseMap(M{{100, 5}, {0, 10}}, 200, 15),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overlaps or precedes")));
  EXPECT_THAT(ValidateSparseMap(M{{0, 10}, {5, 10}}, 200, 20),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overlaps")));
  EXPECT_THAT(ValidateSparseMap(M{{195, 10}}, 200, 10),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("past the file size")));
  EXPECT_THAT(ValidateSparseMap(M{{~uint64_t{0} - 5, 10}}, ~uint64_t{0}, 10),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("past the file size")));
  EXPECT_THAT(ValidateSparseMap(M{{0, 10}}, 200, 11),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stores 11")));
}

TEST(TarSparseMap, ListAndPairs) {
  EXPECT_THAT(ParseSparseMapList("0,10,4096,5"),
              IsOkAndHolds(ElementsAre(SparseSegment{0, 10}, SparseSegment{4096, 5})));
  EXPECT_THAT(ParseSparseMapList(""), IsOkAndHolds(::testing::IsEmpty()));
  EXPECT_FALSE(ParseSparseMapList("0,10,5").ok());
  EXPECT_FALSE(ParseSparseMapList("0,,5,1").ok());
  EXPECT_FALSE(ParseSparseMapList("0,x").ok());
}

TEST(TarSparseMap, Format10Parser) {
  SparseMapParser parser(100000);
  std::string block = "2\n0\n512\n4096\n10\n";
  block.resize(512, '\0');
  ASSERT_OK(parser.Feed(block));
  ASSERT_TRUE(parser.done());
  EXPECT_THAT(parser.map(), ElementsAre(SparseSegment{0, 512}, SparseSegment{4096, 10}));

  SparseMapParser liar(2048);  // announces far more segments than 2 KiB could describe
  EXPECT_THAT(liar.Feed("1000000\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("announces")));
  SparseMapParser garbage(100000);
  EXPECT_THAT(garbage.Feed("2\n0\nx"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed")));
  SparseMapParser long_number(100000);
  EXPECT_THAT(long_number.Feed("1\n123456789012345678901\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too long")));
  SparseMapParser split(100000);  // a map may span blocks
  ASSERT_OK(split.Feed("1\n40"));
  EXPECT_FALSE(split.done());
  ASSERT_OK(split.Feed("96\n7\n"));
  EXPECT_THAT(split.map(), ElementsAre(SparseSegment{4096, 7}));
}

}  // namespace
}  // namespace naiad::tar
