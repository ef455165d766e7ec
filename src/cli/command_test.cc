#include "cli/command.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::cli {
namespace {

int g_last_argc = 0;
std::string g_last_arg;

int RunEcho(int argc, char** argv) {
  g_last_argc = argc;
  g_last_arg = argc > 1 ? argv[1] : "";
  return 42;
}

NAIAD_REGISTER_COMMAND("echo-test", "test command", RunEcho, "legacy-echo");

TEST(Command, DispatchesByNameAndAlias) {
  std::string a0 = "naiad", a1 = "echo-test", a2 = "payload";
  char* argv[] = {a0.data(), a1.data(), a2.data()};
  EXPECT_EQ(Main(3, argv), 42);
  EXPECT_EQ(g_last_argc, 2);
  EXPECT_EQ(g_last_arg, "payload");

  std::string alias = "/usr/local/bin/legacy-echo", arg = "x";
  char* argv2[] = {alias.data(), arg.data()};
  EXPECT_EQ(Main(2, argv2), 42);
  EXPECT_EQ(g_last_arg, "x");
}

TEST(Command, UnknownCommandAndVersion) {
  std::string a0 = "naiad", bad = "no-such-command", version = "--version";
  char* argv[] = {a0.data(), bad.data()};
  EXPECT_EQ(Main(2, argv), 2);
  char* argv2[] = {a0.data(), version.data()};
  EXPECT_EQ(Main(2, argv2), 0);
  EXPECT_NE(FindCommand("echo-test"), nullptr);
  EXPECT_EQ(FindCommand("legacy-echo"), FindCommand("echo-test"));
}

TEST(Command, ExitCodeReportsErrors) {
  EXPECT_EQ(ExitCode("x", absl::OkStatus()), 0);
  EXPECT_EQ(ExitCode("x", absl::InternalError("bad")), 1);
}

}  // namespace
}  // namespace naiad::cli
