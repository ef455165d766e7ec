#include <cerrno>

#include "base/status_matchers.h"

namespace naiad {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(half, Half(half));
  return half;
}

absl::Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusMacros, AssignOrReturnPropagatesErrorsAndValues) {
  EXPECT_THAT(Quarter(8), IsOkAndHolds(2));
  EXPECT_THAT(Quarter(6), StatusIs(absl::StatusCode::kInvalidArgument, "odd"));
  EXPECT_OK(CheckEven(4));
  EXPECT_THAT(CheckEven(3), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("odd")));
}

TEST(StatusMacros, ErrnoErrorMapsCodeAndNamesContext) {
  EXPECT_THAT(ErrnoError(ENOENT, "open /x"),
              StatusIs(absl::StatusCode::kNotFound, "open /x: No such file or directory"));
  EXPECT_THAT(ErrnoError(EACCES, "open /y"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("/y")));
}

TEST(StatusMacros, AnnotateKeepsCode) {
  EXPECT_THAT(Annotate(absl::DataLossError("bad crc"), "piece 3"),
              StatusIs(absl::StatusCode::kDataLoss, "piece 3: bad crc"));
  EXPECT_OK(Annotate(absl::OkStatus(), "ignored"));
}

}  // namespace
}  // namespace naiad
