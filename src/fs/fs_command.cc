// The `naiad fs` command line (alias `nydusd`): flag for flag with upstream nydusd's FUSE mode,
// so existing unit files and scripts keep working.
#include <pthread.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <thread>

#include "CLI/CLI.hpp"
#include "base/logging.h"
#include "base/strings.h"
#include "cli/command.h"
#include "fs/daemon.h"

namespace naiad::fs {
namespace {

struct Flags {
  DaemonOptions daemon;
  std::string log_level = "info";
  std::string log_file;
  std::string supervisor;
  std::string failover_policy = "resend";
  std::string virtual_mountpoint;
  std::string log_rotation_size;
  uint64_t rlimit_nofile = 1000000;
  bool upgrade = false;
};

void AddFlags(CLI::App& app, Flags& f) {
  DaemonOptions& d = f.daemon;
  app.add_option("--config,-C", d.config_path, "nydusd JSON config")->required();
  app.add_option("--bootstrap,-B", d.bootstrap, "The image's bootstrap (image.boot)")->required();
  app.add_option("--mountpoint,-M", d.mountpoint, "Where to mount the image")->required();
  app.add_option("--apisock,-A", d.apisock, "Serve the HTTP API on this unix socket");
  app.add_option("--id", d.id, "Daemon id reported by the API");
  app.add_option("--thread-num,--fuse-threads,-T", d.threads, "FUSE worker threads")
      ->check(CLI::Range(1, 1024));
  app.add_option("--log-level,-l", f.log_level, "trace, debug, info, warn, error");
  app.add_option("--log-file,-L", f.log_file, "Log here instead of stderr");
  app.add_option("--log-rotation-size", f.log_rotation_size, "Accepted for compatibility");
  app.add_option("--rlimit-nofile", f.rlimit_nofile, "Open file limit to set (0: leave)");
  app.add_option("--supervisor", f.supervisor, "Accepted for compatibility (no hot upgrade)");
  app.add_option("--failover-policy", f.failover_policy, "Accepted for compatibility");
  app.add_option("--virtual-mountpoint,-m", f.virtual_mountpoint, "Accepted; must be /");
  app.add_flag("--upgrade", f.upgrade, "Not supported");
  app.add_option("--registry-host", d.registry_host,
                 "Naiad: registry host:port when the config has none");
  app.add_option("--registry-repo", d.registry_repo,
                 "Naiad: repository (library/python) when the config has none");
  app.add_option("--registry-scheme", d.registry_scheme, "Naiad: http or https");
}

// Raises the open-file limit to `want`, or as far as the hard limit allows.
void RaiseOpenFileLimit(uint64_t want) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= want) return;
  rlimit raised{want, std::max<rlim_t>(want, limit.rlim_max)};
  if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return;
  raised = {std::min<rlim_t>(want, limit.rlim_max), limit.rlim_max};
  if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
    LogWarn("could not raise RLIMIT_NOFILE", {{"error", ErrnoError(errno, "setrlimit")}});
  } else if (raised.rlim_cur < want) {
    LogDebug("RLIMIT_NOFILE raised to the hard limit", {{"limit", raised.rlim_cur}});
  }
}

absl::Status Prepare(const Flags& f) {
  ASSIGN_OR_RETURN(LogLevel level, ParseLogLevel(f.log_level));
  SetLogLevel(level);
  if (!f.log_file.empty()) RETURN_IF_ERROR(SetLogFile(f.log_file));
  if (f.upgrade) return absl::UnimplementedError("--upgrade (hot upgrade) is not supported");
  if (!f.virtual_mountpoint.empty() && f.virtual_mountpoint != "/") {
    return absl::UnimplementedError("--virtual-mountpoint other than / is not supported");
  }
  if (!f.supervisor.empty()) LogWarn("--supervisor is ignored: Naiad has no hot upgrade");
  if (f.rlimit_nofile > 0) RaiseOpenFileLimit(f.rlimit_nofile);
  return absl::OkStatus();
}

absl::Status Serve(const Flags& f) {
  RETURN_IF_ERROR(Prepare(f));
  // Termination signals are taken by one thread (blocked before any other thread starts, so
  // every thread inherits the mask); it unmounts, which ends Run().
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGUSR1);  // sent by us to release the thread once Run() returns
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ASSIGN_OR_RETURN(std::unique_ptr<Daemon> daemon, Daemon::Start(f.daemon));
  std::thread signal_thread([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    if (signal == SIGUSR1) return;  // Run() ended by itself: the thread is released
    LogInfo("signal received, unmounting", {{"signal", signal}});
    daemon->Exit();
  });
  absl::Status status = daemon->Run();
  pthread_kill(signal_thread.native_handle(), SIGUSR1);
  signal_thread.join();
  LogInfo("unmounted", {{"mountpoint", f.daemon.mountpoint}});
  return status;
}

int RunFs(int argc, char** argv) {
  CLI::App app("Mount a RAFS image with FUSE, reading its data on demand", "naiad fs");
  Flags flags;
  AddFlags(app, flags);
  // nydusd's `nydusd fuse --config ...` form.
  if (argc > 1 && std::string_view(argv[1]) == "fuse") {
    --argc;
    ++argv;
  }
  CLI11_PARSE(app, argc, argv);
  return cli::ExitCode("fs", Serve(flags));
}

NAIAD_REGISTER_COMMAND("fs", "mount an image with FUSE, lazily (nydusd)", RunFs, "nydusd");

}  // namespace
}  // namespace naiad::fs
