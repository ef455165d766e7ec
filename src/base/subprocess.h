// File: base/subprocess.h
//
// Starting, watching and stopping child processes: the daemons the tests start (registry,
// containerd, naiad components inside network namespaces) and the tools the builders call
// (skopeo, umoci, debootstrap).
//
//   ASSIGN_OR_RETURN(RunResult r, RunCommand({"skopeo", "inspect", ref}, {.timeout =
//   absl::Seconds(30)})); ASSIGN_OR_RETURN(Subprocess registry,
//   Subprocess::Start({"docker-registry", "serve", cfg},
//                                                          {.output_path = log}));
//   RETURN_IF_ERROR(registry.Stop());   // SIGTERM, then SIGKILL after the grace period
//
// Each child runs in its own process group, and Stop() signals the whole group. By default a child
// is also killed when the thread that started it exits (PR_SET_PDEATHSIG), so a crashed test
// leaves no daemons behind; start long-lived children from a long-lived thread.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace naiad {

struct SubprocessOptions {
  // Appended to the current environment ("KEY=value").
  std::vector<std::string> env;
  // Working directory; empty means the current one.
  std::string cwd;
  // Where stdout and stderr go: empty means inherit ours, "/dev/null" discards.
  std::string output_path;
  // Alternatively, a descriptor for stdout and stderr (used when output_path is empty).
  int output_fd = -1;
  // Data written to the child's stdin (then closed). Empty: stdin is /dev/null.
  std::string stdin_data;
  bool kill_on_parent_exit = true;
};

class Subprocess {
 public:
  Subprocess() = default;
  ~Subprocess();  // Stops the child if it is still running.
  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  static absl::StatusOr<Subprocess> Start(const std::vector<std::string>& argv,
                                          const SubprocessOptions& options = {});

  pid_t pid() const { return pid_; }
  bool running();

  // Waits for the child to exit; returns its exit code (128 + signal if killed by a signal).
  // DeadlineExceeded if it is still running after `timeout`.
  absl::StatusOr<int> Wait(absl::Duration timeout = absl::InfiniteDuration());
  // Sends `signal` to the child's process group.
  absl::Status Signal(int signal);
  // SIGTERM, wait up to `grace`, then SIGKILL; returns the exit code.
  absl::StatusOr<int> Stop(absl::Duration grace = absl::Seconds(5));

 private:
  absl::StatusOr<bool> Reap(int options);

  pid_t pid_ = -1;
  int exit_code_ = -1;
};

struct RunOptions {
  absl::Duration timeout = absl::Minutes(10);
  std::vector<std::string> env;
  std::string cwd;
  std::string stdin_data;
};

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr, interleaved as written
};

// Runs a command to completion, capturing its output. DeadlineExceeded (and the child killed)
// if it runs past the timeout. A non-zero exit is not an error here; see RunCommandOk().
absl::StatusOr<RunResult> RunCommand(const std::vector<std::string>& argv,
                                     const RunOptions& options = {});

// Like RunCommand(), but a non-zero exit is an Internal error that names the command, its exit code
// and the tail of its output. Returns the output.
absl::StatusOr<std::string> RunCommandOk(const std::vector<std::string>& argv,
                                         const RunOptions& options = {});

// Joins argv for messages: quotes arguments that contain spaces.
std::string CommandLineForDisplay(const std::vector<std::string>& argv);

}  // namespace naiad
