#include "base/subprocess.h"

#include <signal.h>

#include <filesystem>
#include <string>

#include "base/file.h"
#include "base/status_matchers.h"

namespace naiad {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

TEST(Run, CapturesOutputAndExitCode) {
  ASSERT_OK_AND_ASSIGN(RunResult r, RunCommand({"sh", "-c", "echo out; echo err >&2; exit 3"}));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.output, HasSubstr("out\n"));
  EXPECT_THAT(r.output, HasSubstr("err\n"));
}

TEST(Run, PassesEnvCwdAndStdin) {
  ASSERT_OK_AND_ASSIGN(
      RunResult r, RunCommand({"sh", "-c", "echo $NAIAD_X; pwd; cat"},
                              {.env = {"NAIAD_X=42"}, .cwd = "/tmp", .stdin_data = "from stdin"}));
  EXPECT_EQ(r.output, "42\n/tmp\nfrom stdin");
}

TEST(Run, TimesOutAndKills) {
  EXPECT_THAT(RunCommand({"sleep", "30"}, {.timeout = absl::Milliseconds(200)}),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("sleep 30")));
}

TEST(Run, MissingProgramIsAnErrorNamingIt) {
  EXPECT_THAT(RunCommand({"/nonexistent/prog"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/prog")));
}

TEST(RunOk, NonZeroExitIsErrorWithOutputTail) {
  EXPECT_THAT(RunCommandOk({"sh", "-c", "echo boom; exit 1"}),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("exit code 1: boom")));
  EXPECT_THAT(RunCommandOk({"echo", "hi"}), IsOkAndHolds("hi\n"));
}

TEST(Subprocess, StopTerminatesTheProcessGroup) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create());
  std::string pidfile = dir.Join("child.pid");
  ASSERT_OK_AND_ASSIGN(
      Subprocess p, Subprocess::Start({"sh", "-c", "sleep 60 & echo $! > " + pidfile + "; wait"}));
  EXPECT_TRUE(p.running());
  for (int i = 0; i < 200 && !std::filesystem::exists(pidfile); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_OK_AND_ASSIGN(std::string grandchild, ReadFileToString(pidfile));
  ASSERT_OK_AND_ASSIGN(int code, p.Stop(absl::Seconds(2)));
  EXPECT_EQ(code, 128 + SIGTERM);
  absl::SleepFor(absl::Milliseconds(100));
  // Gone, or a zombie waiting for init to reap it.
  auto status = ReadFileToString("/proc/" + std::to_string(std::stoi(grandchild)) + "/stat");
  if (status.ok()) {
    EXPECT_THAT(*status, HasSubstr(") Z ")) << "grandchild survived Stop()";
  }
}

TEST(Subprocess, WaitReturnsExitCodeAndOutputGoesToFile) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create());
  ASSERT_OK_AND_ASSIGN(Subprocess p, Subprocess::Start({"sh", "-c", "echo logged; exit 7"},
                                                       {.output_path = dir.Join("log")}));
  EXPECT_THAT(p.Wait(absl::Seconds(10)), IsOkAndHolds(7));
  EXPECT_THAT(ReadFileToString(dir.Join("log")), IsOkAndHolds("logged\n"));
}

}  // namespace
}  // namespace naiad
