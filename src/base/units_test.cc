#include "base/units.h"

#include <cstdint>

#include "base/status_matchers.h"
#include "base/strings.h"

namespace naiad {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

constexpr uint64_t kKi = uint64_t{1} << 10;
constexpr uint64_t kMi = uint64_t{1} << 20;
constexpr uint64_t kGi = uint64_t{1} << 30;
constexpr uint64_t kTi = uint64_t{1} << 40;

TEST(ParseByteQuantity, PlainNumbersAndEmpty) {
  EXPECT_THAT(ParseByteQuantity(""), IsOkAndHolds(0u));
  EXPECT_THAT(ParseByteQuantity("  "), IsOkAndHolds(0u));
  EXPECT_THAT(ParseByteQuantity("0"), IsOkAndHolds(0u));
  EXPECT_THAT(ParseByteQuantity("1048576"), IsOkAndHolds(kMi));
  EXPECT_THAT(ParseByteQuantity(" 42 "), IsOkAndHolds(42u));
  EXPECT_THAT(ParseByteQuantity("100B"), IsOkAndHolds(100u));
  EXPECT_THAT(ParseByteQuantity("18446744073709551615"), IsOkAndHolds(UINT64_MAX));
}

TEST(ParseByteQuantity, EveryUnitIsBinary) {
  struct Case {
    const char* text;
    uint64_t bytes;
  };
  const Case cases[] = {
      {"1k", kKi},         {"1K", kKi},          {"1Ki", kKi},         {"1KB", kKi},
      {"1KiB", kKi},       {"2kb", 2 * kKi},     {"100Mi", 100 * kMi}, {"50MB", 50 * kMi},
      {"50M", 50 * kMi},   {"50m", 50 * kMi},    {"3G", 3 * kGi},      {"3Gi", 3 * kGi},
      {"3GiB", 3 * kGi},   {"2T", 2 * kTi},      {"2Ti", 2 * kTi},     {"2TB", 2 * kTi},
      {"10 Mi", 10 * kMi}, {"10 MiB", 10 * kMi},
  };
  for (const Case& c : cases)
    EXPECT_THAT(ParseByteQuantity(c.text), IsOkAndHolds(c.bytes)) << c.text;
}

TEST(ParseByteQuantity, FractionsRoundDown) {
  EXPECT_THAT(ParseByteQuantity("1.5Gi"), IsOkAndHolds(kGi + kGi / 2));
  EXPECT_THAT(ParseByteQuantity("0.5k"), IsOkAndHolds(512u));
  EXPECT_THAT(ParseByteQuantity("0.001k"), IsOkAndHolds(1u));  // 1.024 bytes
  EXPECT_THAT(ParseByteQuantity("1.9"), IsOkAndHolds(1u));
  EXPECT_THAT(ParseByteQuantity("2.25Mi"), IsOkAndHolds(2 * kMi + kMi / 4));
}

TEST(ParseByteQuantity, ErrorsNameTheText) {
  for (const char* bad : {"abc", "Mi", "-1", "+1", "1.", ".5", "1.5.5", "10X", "10Mx", "10MiBB",
                          "10  Mi", "10i", "10iB", "1,000", "0x10", "1e6", "1Pi"}) {
    EXPECT_THAT(ParseByteQuantity(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(StrCat("\"", bad, "\""))))
        << bad;
  }
}

TEST(ParseByteQuantity, RejectsOverflow) {
  EXPECT_THAT(ParseByteQuantity("18446744073709551616"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  EXPECT_THAT(ParseByteQuantity("16777216Ti"),  // 2^64
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  EXPECT_THAT(ParseByteQuantity("99999999999999999999999999Ti"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  EXPECT_THAT(ParseByteQuantity("1.0000000000000000001"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("decimal places")));
}

}  // namespace
}  // namespace naiad
