#include "cli/command.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "base/strings.h"
#include "base/version.h"

namespace naiad::cli {
namespace {

std::map<std::string, Command, std::less<>>& Registry() {
  static auto* registry = new std::map<std::string, Command, std::less<>>();
  return *registry;
}

std::string_view Basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

void PrintUsage(FILE* out) {
  std::fprintf(out,
               "naiad %s: container images onto many machines, fast (lazy RAFS v6 + P2P)\n\n"
               "usage: naiad <command> [options]\n"
               "       naiad help <command>\n"
               "       naiad --version\n\ncommands:\n",
               std::string(Version()).c_str());
  for (const Command* command : Commands()) {
    std::fprintf(out, "  %-14s %s\n", command->name.c_str(), command->summary.c_str());
  }
}

int Dispatch(const Command& command, int argc, char** argv) {
  std::string display = StrCat("naiad ", command.name);
  std::vector<char*> args(argv, argv + argc);
  args[0] = display.data();
  return command.run(argc, args.data());
}

int Help(int argc, char** argv) {
  if (argc < 3) {
    PrintUsage(stdout);
    return 0;
  }
  const Command* command = FindCommand(argv[2]);
  if (command == nullptr) {
    std::fprintf(stderr, "naiad help: unknown command \"%s\"\n", argv[2]);
    return 2;
  }
  std::string help = "--help";
  char* args[] = {argv[2], help.data()};
  return Dispatch(*command, 2, args);
}

}  // namespace

bool RegisterCommand(Command command) {
  std::string name = command.name;
  auto [it, inserted] = Registry().emplace(name, std::move(command));
  if (!inserted) {
    std::fprintf(stderr, "naiad: command \"%s\" registered twice\n", name.c_str());
    std::abort();
  }
  return true;
}

std::vector<const Command*> Commands() {
  std::vector<const Command*> out;
  for (const auto& [name, command] : Registry()) out.push_back(&command);
  return out;
}

const Command* FindCommand(std::string_view name) {
  auto it = Registry().find(name);
  if (it != Registry().end()) return &it->second;
  for (const auto& [unused, command] : Registry()) {
    if (std::find(command.aliases.begin(), command.aliases.end(), name) != command.aliases.end()) {
      return &command;
    }
  }
  return nullptr;
}

int Main(int argc, char** argv) {
  std::string_view self = argc > 0 ? Basename(argv[0]) : "naiad";
  if (self != "naiad") {
    if (const Command* command = FindCommand(self)) return command->run(argc, argv);
  }
  if (argc < 2) {
    PrintUsage(stderr);
    return 2;
  }
  std::string_view first = argv[1];
  if (first == "--version" || first == "-V" || first == "version") {
    std::printf("naiad %s\n", std::string(Version()).c_str());
    return 0;
  }
  if (first == "help" || first == "--help" || first == "-h") return Help(argc, argv);
  const Command* command = FindCommand(first);
  if (command == nullptr) {
    std::fprintf(stderr, "naiad: unknown command \"%s\"; run \"naiad help\" for the list\n",
                 argv[1]);
    return 2;
  }
  return Dispatch(*command, argc - 1, argv + 1);
}

int ExitCode(std::string_view command, const absl::Status& status) {
  if (status.ok()) return 0;
  std::fprintf(stderr, "naiad %.*s: error: %.*s\n", static_cast<int>(command.size()),
               command.data(), static_cast<int>(status.message().size()), status.message().data());
  return 1;
}

}  // namespace naiad::cli
