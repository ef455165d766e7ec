// File: cli/command.h
//
// The `naiad` binary is a multi-call binary: each component library registers its subcommands
// here, and apps/naiad/main.cc only dispatches. A command parses its own arguments (with CLI11)
// and returns a process exit code.
//
//   namespace {
//   int RunGet(int argc, char** argv) { ... }
//   NAIAD_REGISTER_COMMAND("get", "download a URL through the swarm", RunGet, "dfget");
//   }
//
// The optional aliases let the binary be installed under an upstream tool's name (a symlink
// `dfget -> naiad`), so existing scripts and unit files keep working.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace naiad::cli {

// argv[0] is the command's name ("naiad get" style, for help output).
using CommandFn = std::function<int(int argc, char** argv)>;

struct Command {
  std::string name;
  std::string summary;
  CommandFn run;
  std::vector<std::string> aliases;
};

// Registers a command; called from static initializers. Names must be unique.
bool RegisterCommand(Command command);

// All commands, sorted by name.
std::vector<const Command*> Commands();

// Finds a command by name or alias.
const Command* FindCommand(std::string_view name);

// The top-level entry point used by main(): dispatches on argv[0]'s basename (multi-call) or on
// argv[1], and handles `--version`, `help` and `help <command>`.
int Main(int argc, char** argv);

// Prints "naiad <command>: error: <message>" to stderr and returns the exit code for `status`
// (0 for OK, 1 otherwise). Commands end with `return ExitCode(command, status);`.
int ExitCode(std::string_view command, const absl::Status& status);

}  // namespace naiad::cli

#define NAIAD_CLI_CONCAT_INNER_(a, b) a##b
#define NAIAD_CLI_CONCAT_(a, b) NAIAD_CLI_CONCAT_INNER_(a, b)
// Registers command `name` (a string literal) at static-initialization time.
#define NAIAD_REGISTER_COMMAND(name, summary, fn, ...)                                        \
  [[maybe_unused]] static const bool NAIAD_CLI_CONCAT_(naiad_command_registered_, __LINE__) = \
      ::naiad::cli::RegisterCommand({name, summary, fn, {__VA_ARGS__}})
