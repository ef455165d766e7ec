#include "base/crash_testing.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::testing {
namespace {

std::string DescribeExit(int wstatus) {
  if (WIFEXITED(wstatus)) return StrCat("exited with ", WEXITSTATUS(wstatus));
  if (WIFSIGNALED(wstatus)) return StrCat("died of signal ", WTERMSIG(wstatus));
  return "stopped";
}

}  // namespace

absl::Status ForkAndKill(const std::function<void(const std::function<void()>& ready)>& child,
                         absl::Duration delay_after_ready) {
  int ready_pipe[2];
  if (::pipe(ready_pipe) != 0) return ErrnoError(errno, "pipe");
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError(errno, "fork");
  if (pid == 0) {
    ::close(ready_pipe[0]);
    const int fd = ready_pipe[1];
    child([fd] {
      if (::write(fd, "x", 1) != 1) ::_exit(100);
    });
    ::_exit(101);  // the child returned: it should have worked until killed
  }
  ::close(ready_pipe[1]);
  char started = 0;
  ssize_t n = ::read(ready_pipe[0], &started, 1);
  ::close(ready_pipe[0]);
  if (n == 1) {
    absl::SleepFor(delay_after_ready);
    ::kill(pid, SIGKILL);
  }
  int wstatus = 0;
  if (::waitpid(pid, &wstatus, 0) != pid) return ErrnoError(errno, "waitpid");
  if (n != 1) return absl::InternalError(StrCat("child ", DescribeExit(wstatus), " before ready"));
  if (!WIFSIGNALED(wstatus) || WTERMSIG(wstatus) != SIGKILL) {
    return absl::InternalError(StrCat("child ", DescribeExit(wstatus), " before it was killed"));
  }
  return absl::OkStatus();
}

}  // namespace naiad::testing
