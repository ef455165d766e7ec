#include "get/progress_bar.h"

#include <cstdio>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::get {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint64_t kMiB = 1 << 20;

TEST(ProgressBar, FormatsBytes) {
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(256.0 * 1024 * 1024), "256.0 MiB");
}

TEST(ProgressBar, FormatsSources) {
  EXPECT_EQ(FormatSources({.origin = 3 * kMiB, .peers = kMiB, .local = 0}),
            "origin 3.0 MiB \u00b7 peers 1.0 MiB \u00b7 local 0 B");
  EXPECT_EQ(FormatSources({.origin = 3 * kMiB, .direct = true}), "origin 3.0 MiB (direct)");
}

TEST(ProgressBar, FormatsProgressWithRateEtaAndSources) {
  DownloadProgress p{.bytes = 64 * kMiB, .total = 256 * kMiB, .elapsed = absl::Seconds(4)};
  std::string line = FormatProgress(p, {.origin = 40 * kMiB, .peers = 24 * kMiB});
  EXPECT_THAT(line, HasSubstr("64.0 MiB / 256.0 MiB"));
  EXPECT_THAT(line, HasSubstr("25.0%"));
  EXPECT_THAT(line, HasSubstr("16.0 MiB/s"));
  EXPECT_THAT(line, HasSubstr("ETA 12s"));
  EXPECT_THAT(line, HasSubstr("origin 40.0 MiB \u00b7 peers 24.0 MiB \u00b7 local 0 B"));
}

TEST(ProgressBar, UnknownTotalHasNoEta) {
  DownloadProgress p{.bytes = 1024, .elapsed = absl::Seconds(1)};
  EXPECT_THAT(FormatProgress(p, {.origin = 1024, .direct = true}), Not(HasSubstr("ETA")));
}

TEST(ProgressBar, SummaryNamesBytesTimeRateAndSources) {
  DownloadResult result{.bytes = 8 * kMiB, .elapsed = absl::Seconds(2)};
  EXPECT_EQ(FormatSummary("out.bin", result, {.local = 8 * kMiB}),
            "out.bin: 8.0 MiB in 2s (4.0 MiB/s); origin 0 B \u00b7 peers 0 B \u00b7 local 8.0 MiB");
}

// Off a terminal, a line at most every few seconds (the first at once); nothing to clear.
TEST(ProgressBar, OffATerminalPrintsLinesNotRedraws) {
  FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  ProgressBar bar(out, /*redraw=*/false);
  for (int i = 1; i <= 3; ++i) {
    bar.Update({.bytes = i * kMiB, .total = 3 * kMiB, .elapsed = absl::Seconds(i)},
               {.origin = i * kMiB, .direct = true});
  }
  bar.Finish();
  std::rewind(out);
  char buffer[4096] = {};
  size_t n = std::fread(buffer, 1, sizeof(buffer) - 1, out);
  std::fclose(out);
  std::string text(buffer, n);
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_THAT(text, HasSubstr("1.0 MiB / 3.0 MiB"));
  EXPECT_THAT(text, Not(HasSubstr("2.0 MiB / 3.0 MiB")));
}

}  // namespace
}  // namespace naiad::get
