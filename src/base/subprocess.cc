#include "base/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_join.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"

extern char** environ;

namespace naiad {
namespace {

// Everything the child does between fork() and exec() must be async-signal-safe, so the argument
// and environment arrays are built before forking.
struct ExecPlan {
  std::vector<std::string> argv_storage;
  std::vector<std::string> env_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;

  ExecPlan(const std::vector<std::string>& args, const std::vector<std::string>& extra_env)
      : argv_storage(args) {
    for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
    env_storage.insert(env_storage.end(), extra_env.begin(), extra_env.end());
    for (auto& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);
  }
};

[[noreturn]] void ChildFail(int error_pipe) {
  int error = errno;
  ssize_t ignored = ::write(error_pipe, &error, sizeof(error));
  (void)ignored;
  ::_exit(127);
}

// Forks and execs. `stdin_fd` and `output_fd` (-1: inherit) become the child's stdin and its
// stdout+stderr. Reports an exec failure (e.g. no such program) as an error in the parent.
absl::StatusOr<pid_t> ForkExec(const std::vector<std::string>& args,
                               const std::vector<std::string>& env, const std::string& cwd,
                               int stdin_fd, int output_fd, bool kill_on_parent_exit) {
  if (args.empty()) return absl::InvalidArgumentError("empty command line");
  ExecPlan plan(args, env);
  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(error_pipe[0]);
    ::close(error_pipe[1]);
    return ErrnoError(errno, "fork");
  }
  if (pid == 0) {
    ::close(error_pipe[0]);
    ::setpgid(0, 0);
    if (kill_on_parent_exit) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (stdin_fd >= 0 && ::dup2(stdin_fd, STDIN_FILENO) < 0) ChildFail(error_pipe[1]);
    if (output_fd >= 0) {
      if (::dup2(output_fd, STDOUT_FILENO) < 0 || ::dup2(output_fd, STDERR_FILENO) < 0) {
        ChildFail(error_pipe[1]);
      }
    }
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ChildFail(error_pipe[1]);
    ::execvpe(plan.argv[0], plan.argv.data(), plan.envp.data());
    ChildFail(error_pipe[1]);
  }
  ::close(error_pipe[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(error_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(error_pipe[0]);
  if (n == sizeof(child_errno)) {
    ::waitpid(pid, nullptr, 0);
    return ErrnoError(child_errno, StrCat("start ", CommandLineForDisplay(args)));
  }
  return pid;
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Writes `data` into a pipe whose read end becomes the child's stdin. Small inputs only (the pipe
// buffer, 64 KiB); larger ones belong in a file.
absl::StatusOr<UniqueFd> StdinPipe(const std::string& data) {
  if (data.size() > 60 * 1024) return absl::InvalidArgumentError("stdin_data over 60 KiB");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  RETURN_IF_ERROR(WriteFull(write_end.get(), data));
  return read_end;
}

absl::StatusOr<UniqueFd> OpenStdin(const std::string& data) {
  if (data.empty()) return UniqueFd::Open("/dev/null", O_RDONLY);
  return StdinPipe(data);
}

}  // namespace

std::string CommandLineForDisplay(const std::vector<std::string>& argv) {
  return absl::StrJoin(argv, " ", [](std::string* out, const std::string& arg) {
    if (arg.find_first_of(" \t'\"") == std::string::npos && !arg.empty()) {
      out->append(arg);
    } else {
      StrAppend(out, "'", arg, "'");
    }
  });
}

Subprocess::~Subprocess() {
  if (pid_ > 0) Stop(absl::Seconds(2)).IgnoreError();
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), exit_code_(other.exit_code_) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) Stop(absl::Seconds(2)).IgnoreError();
    pid_ = std::exchange(other.pid_, -1);
    exit_code_ = other.exit_code_;
  }
  return *this;
}

absl::StatusOr<Subprocess> Subprocess::Start(const std::vector<std::string>& argv,
                                             const SubprocessOptions& options) {
  ASSIGN_OR_RETURN(UniqueFd stdin_fd, OpenStdin(options.stdin_data));
  UniqueFd output_fd;
  int child_output = options.output_fd;
  if (!options.output_path.empty()) {
    ASSIGN_OR_RETURN(output_fd,
                     UniqueFd::Open(options.output_path, O_WRONLY | O_CREAT | O_APPEND, 0644));
    child_output = output_fd.get();
  }
  Subprocess process;
  ASSIGN_OR_RETURN(process.pid_, ForkExec(argv, options.env, options.cwd, stdin_fd.get(),
                                          child_output, options.kill_on_parent_exit));
  return process;
}

absl::StatusOr<bool> Subprocess::Reap(int options) {
  if (pid_ <= 0) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, options);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ErrnoError(errno, StrCat("waitpid ", pid_));
  if (r == 0) return false;
  exit_code_ = DecodeWaitStatus(status);
  pid_ = -1;
  return true;
}

bool Subprocess::running() {
  auto reaped = Reap(WNOHANG);
  return reaped.ok() && !*reaped;
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  absl::Duration poll_interval = absl::Milliseconds(1);
  while (true) {
    ASSIGN_OR_RETURN(bool done, Reap(timeout == absl::InfiniteDuration() ? 0 : WNOHANG));
    if (done) return exit_code_;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(StrCat("process ", pid_, " still running"));
    }
    absl::SleepFor(poll_interval);
    poll_interval = std::min(poll_interval * 2, absl::Milliseconds(50));
  }
}

absl::Status Subprocess::Signal(int signal) {
  if (pid_ <= 0) return absl::FailedPreconditionError("process is not running");
  if (::kill(-pid_, signal) != 0 && ::kill(pid_, signal) != 0) {
    return ErrnoError(errno, StrCat("kill ", pid_));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Subprocess::Stop(absl::Duration grace) {
  if (pid_ <= 0) return exit_code_;
  Signal(SIGTERM).IgnoreError();
  auto code = Wait(grace);
  if (code.ok()) return code;
  Signal(SIGKILL).IgnoreError();
  return Wait();
}

absl::StatusOr<RunResult> RunCommand(const std::vector<std::string>& argv,
                                     const RunOptions& options) {
  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  UniqueFd read_end(out_pipe[0]);
  UniqueFd write_end(out_pipe[1]);
  SubprocessOptions start_options;
  start_options.env = options.env;
  start_options.cwd = options.cwd;
  start_options.stdin_data = options.stdin_data;
  start_options.output_fd = write_end.get();
  ASSIGN_OR_RETURN(Subprocess process, Subprocess::Start(argv, start_options));
  write_end.Reset();
  RunResult result;
  absl::Time deadline = absl::Now() + options.timeout;
  char buf[16 * 1024];
  while (true) {
    int wait_ms =
        static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    struct pollfd pfd = {read_end.get(), POLLIN, 0};
    int ready = ::poll(&pfd, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      process.Stop(absl::Seconds(1)).IgnoreError();
      return absl::DeadlineExceededError(StrCat(CommandLineForDisplay(argv), ": timed out after ",
                                                absl::FormatDuration(options.timeout)));
    }
    ssize_t n = ::read(read_end.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  ASSIGN_OR_RETURN(result.exit_code,
                   process.Wait(std::max(deadline - absl::Now(), absl::Seconds(1))));
  return result;
}

absl::StatusOr<std::string> RunCommandOk(const std::vector<std::string>& argv,
                                         const RunOptions& options) {
  ASSIGN_OR_RETURN(RunResult result, RunCommand(argv, options));
  if (result.exit_code != 0) {
    std::string_view tail = result.output;
    if (tail.size() > 2000) tail = tail.substr(tail.size() - 2000);
    return absl::InternalError(
        StrCat(CommandLineForDisplay(argv), ": exit code ", result.exit_code, ": ", tail));
  }
  return std::move(result.output);
}

}  // namespace naiad
