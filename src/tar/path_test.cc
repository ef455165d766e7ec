#include "tar/path.h"

#include <string>

#include "base/status_matchers.h"

namespace naiad::tar {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

TEST(TarNormalizePath, CleansHarmlessSpellings) {
  EXPECT_THAT(NormalizePath("./usr//lib/./x/", false), IsOkAndHolds("usr/lib/x"));
  EXPECT_THAT(NormalizePath("a", false), IsOkAndHolds("a"));
  EXPECT_THAT(NormalizePath("a/b/", false), IsOkAndHolds("a/b"));
  EXPECT_THAT(NormalizePath(".//a", false), IsOkAndHolds("a"));
  EXPECT_THAT(NormalizePath("...", false), IsOkAndHolds("..."));
  EXPECT_THAT(NormalizePath("a/..b/.c", false), IsOkAndHolds("a/..b/.c"));
}

TEST(TarNormalizePath, RootSpellingsAreTheEmptyPath) {
  for (const char* root : {".", "./", "/", "//", "./.", "/./"}) {
    EXPECT_THAT(NormalizePath(root, false), IsOkAndHolds("")) << root;
  }
}

TEST(TarNormalizePath, RejectsEscapesAndDotDot) {
  EXPECT_THAT(NormalizePath("../etc/passwd", false),
              StatusIs(absl::StatusCode::kInvalidArgument, "path escapes the layer root"));
  EXPECT_THAT(NormalizePath("./..", false),
              StatusIs(absl::StatusCode::kInvalidArgument, "path escapes the layer root"));
  EXPECT_THAT(NormalizePath("a/../b", false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'..' component")));
  EXPECT_THAT(NormalizePath("a/b/..", false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'..' component")));
}

TEST(TarNormalizePath, AbsolutePathsNeedStripLeadingSlash) {
  EXPECT_THAT(NormalizePath("/etc/passwd", false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute path")));
  EXPECT_THAT(NormalizePath("/etc/passwd", true), IsOkAndHolds("etc/passwd"));
  EXPECT_THAT(NormalizePath("//etc//passwd", true), IsOkAndHolds("etc/passwd"));
  EXPECT_THAT(NormalizePath("/../etc", true),
              StatusIs(absl::StatusCode::kInvalidArgument, "path escapes the layer root"));
}

TEST(TarNormalizePath, LengthLimitsAndNul) {
  std::string component(255, 'c');
  EXPECT_THAT(NormalizePath(component, false), IsOkAndHolds(component));
  EXPECT_THAT(NormalizePath(component + "c", false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer than 255")));
  std::string long_path;
  while (long_path.size() < 4096) long_path += "d/";
  long_path.resize(4096);  // "d/d/.../d/" exactly 4096 bytes; trailing slash dropped: 4095
  EXPECT_OK(NormalizePath(long_path, false));
  EXPECT_THAT(NormalizePath(long_path + "dd", false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer than 4096")));
  EXPECT_THAT(NormalizePath(std::string("a\0b", 3), false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(NormalizePath("", false), StatusIs(absl::StatusCode::kInvalidArgument, "empty path"));
}

TEST(TarCheckSymlinkTarget, RelativeTargetsStayInsideTheRoot) {
  EXPECT_OK(CheckSymlinkTarget("usr/bin/python", "python3.11", true));
  EXPECT_OK(CheckSymlinkTarget("usr/bin/x", "../lib/x", true));
  EXPECT_OK(CheckSymlinkTarget("usr/bin/x", "../../etc/x", true));  // reaches the root, no further
  EXPECT_OK(CheckSymlinkTarget("a/b", "./../c/./..//d", true));
  EXPECT_THAT(CheckSymlinkTarget("usr/bin/x", "../../../etc/passwd", true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("climbs above")));
  EXPECT_THAT(CheckSymlinkTarget("x", "../x", true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("climbs above")));
  // Climbing out and back in still escapes on the host.
  EXPECT_THAT(CheckSymlinkTarget("a/l", "../../a/b", true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("climbs above")));
  EXPECT_OK(CheckSymlinkTarget("x", "../x", false));
}

TEST(TarCheckSymlinkTarget, AbsoluteTargetsAreNormal) {
  EXPECT_OK(CheckSymlinkTarget("usr/bin/python", "/usr/bin/python3", true));
  EXPECT_OK(CheckSymlinkTarget("x", "/../../etc", true));
}

TEST(TarCheckSymlinkTarget, RejectsEmptyNulAndOverlong) {
  EXPECT_THAT(CheckSymlinkTarget("x", "", true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(CheckSymlinkTarget("x", std::string("a\0b", 3), false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(CheckSymlinkTarget("x", std::string(4096, 'a'), false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer than 4095")));
}

TEST(TarQuoteForMessage, EscapesAndTruncates) {
  EXPECT_EQ(QuoteForMessage("a\nb"), "\"a\\nb\"");
  EXPECT_EQ(QuoteForMessage(std::string(300, 'x')).size(), 256u + 2 + 3);
}

}  // namespace
}  // namespace naiad::tar
