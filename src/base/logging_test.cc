#include "base/logging.h"

#include "base/file.h"
#include "base/status_matchers.h"

namespace naiad {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(Logging, FormatsFieldsAsKeyValueAndQuotesWhenNeeded) {
  EXPECT_EQ(FormatLogFields({{"blob", "ab12"}, {"offset", 4096}, {"ok", true}}),
            " blob=ab12 offset=4096 ok=true");
  EXPECT_EQ(FormatLogFields({{"msg", "two words"}, {"eq", "a=b"}, {"empty", ""}}),
            " msg=\"two words\" eq=\"a=b\" empty=\"\"");
  EXPECT_EQ(FormatLogFields({{"q", "say \"hi\""}}), " q=\"say \\\"hi\\\"\"");
}

TEST(Logging, ParsesLevels) {
  EXPECT_THAT(ParseLogLevel("INFO"), IsOkAndHolds(LogLevel::kInfo));
  EXPECT_THAT(ParseLogLevel("warning"), IsOkAndHolds(LogLevel::kWarn));
  EXPECT_THAT(ParseLogLevel("loud"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("loud")));
}

TEST(Logging, WritesRecordsAtOrAboveLevelToFile) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create());
  std::string path = dir.Join("log.txt");
  ASSERT_OK(SetLogFile(path));
  SetLogLevel(LogLevel::kInfo);
  LogDebug("hidden debug");
  LogInfo("chunk fetched", {{"blob", "3f2a"}, {"offset", 1048576}});
  LogError("backend failed", {{"code", 503}});
  SetLogLevel(LogLevel::kOff);
  LogError("silenced");
  SetLogLevel(LogLevel::kInfo);
  LogWarn("flush");  // warn flushes the sink
  ASSERT_OK_AND_ASSIGN(std::string text, ReadFileToString(path));
  EXPECT_THAT(text, HasSubstr(" I chunk fetched blob=3f2a offset=1048576\n"));
  EXPECT_THAT(text, HasSubstr(" E backend failed code=503\n"));
  EXPECT_THAT(text, Not(HasSubstr("hidden debug")));
  EXPECT_THAT(text, Not(HasSubstr("silenced")));
}

}  // namespace
}  // namespace naiad
