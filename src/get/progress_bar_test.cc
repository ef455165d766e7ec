#include "get/progress_bar.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::get {
namespace {

using ::testing::HasSubstr;

TEST(ProgressBar, FormatsBytes) {
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(256.0 * 1024 * 1024), "256.0 MiB");
}

TEST(ProgressBar, FormatsProgressWithRateEtaAndSource) {
  DownloadProgress p{.bytes = 64 << 20, .total = uint64_t{256} << 20, .elapsed = absl::Seconds(4)};
  std::string line = FormatProgress(p, "origin");
  EXPECT_THAT(line, HasSubstr("64.0 MiB / 256.0 MiB"));
  EXPECT_THAT(line, HasSubstr("25.0%"));
  EXPECT_THAT(line, HasSubstr("16.0 MiB/s"));
  EXPECT_THAT(line, HasSubstr("ETA 12s"));
  EXPECT_THAT(line, HasSubstr("from origin"));
}

TEST(ProgressBar, UnknownTotalHasNoEta) {
  DownloadProgress p{.bytes = 1024, .elapsed = absl::Seconds(1)};
  EXPECT_THAT(FormatProgress(p, "origin"), ::testing::Not(HasSubstr("ETA")));
}

}  // namespace
}  // namespace naiad::get
