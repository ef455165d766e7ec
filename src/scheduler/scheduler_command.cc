// The `naiad scheduler` command line: the swarm's scheduler (Dragonfly's scheduler role), a gRPC
// service on --port plus /metrics and /healthy on --metrics-port. Runs until SIGTERM or SIGINT.
#include <pthread.h>

#include <csignal>
#include <string>

#include "CLI/CLI.hpp"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "cli/command.h"
#include "scheduler/scheduler_service.h"

namespace naiad::scheduler {
namespace {

struct Flags {
  std::string address = "0.0.0.0";
  int port = 8002;
  int metrics_port = 8000;
  std::string host_ttl = "15s";
  std::string lease_timeout = "30s";
  int candidate_parents = 8;
  std::string keepalive_interval = "5s";
  std::string log_level = "info";
};

// A positive Go-style duration ("15s", "500ms", "1m30s").
absl::StatusOr<absl::Duration> ParseFlagDuration(std::string_view flag, const std::string& text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        StrCat(flag, " \"", text, "\": expected a positive duration such as 15s or 500ms"));
  }
  return d;
}

absl::StatusOr<SchedulerServerOptions> ToOptions(const Flags& flags) {
  SchedulerServerOptions options;
  options.address = flags.address;
  options.port = static_cast<uint16_t>(flags.port);
  if (flags.metrics_port == 0) {
    options.metrics_port = std::nullopt;
  } else {
    options.metrics_port = static_cast<uint16_t>(flags.metrics_port);
  }
  ASSIGN_OR_RETURN(options.state.host_ttl, ParseFlagDuration("--host-ttl", flags.host_ttl));
  ASSIGN_OR_RETURN(options.state.lease_timeout,
                   ParseFlagDuration("--lease-timeout", flags.lease_timeout));
  ASSIGN_OR_RETURN(options.keepalive_interval,
                   ParseFlagDuration("--keepalive-interval", flags.keepalive_interval));
  options.state.candidate_parent_limit = flags.candidate_parents;
  if (options.keepalive_interval >= options.state.host_ttl) {
    LogWarn(
        "--keepalive-interval is not shorter than --host-ttl: hosts will expire between "
        "announcements",
        {{"keepalive_interval", flags.keepalive_interval}, {"host_ttl", flags.host_ttl}});
  }
  return options;
}

absl::Status Serve(const Flags& flags) {
  ASSIGN_OR_RETURN(LogLevel level, ParseLogLevel(flags.log_level));
  SetLogLevel(level);
  ASSIGN_OR_RETURN(SchedulerServerOptions options, ToOptions(flags));
  // Block the signals before any thread starts, so that only sigwait() below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ASSIGN_OR_RETURN(std::unique_ptr<SchedulerServer> server,
                   SchedulerServer::Start(std::move(options)));
  int signal = 0;
  sigwait(&signals, &signal);
  LogInfo("signal received, stopping", {{"signal", signal}});
  server->Shutdown();
  return absl::OkStatus();
}

int RunScheduler(int argc, char** argv) {
  CLI::App app("The swarm's scheduler: hosts, tasks, parents and origin leases (gRPC)",
               "naiad scheduler");
  Flags flags;
  app.add_option("--address", flags.address, "Address to listen on (gRPC and metrics)")
      ->capture_default_str();
  app.add_option("--port", flags.port, "gRPC port (0 picks one)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--metrics-port", flags.metrics_port,
                 "Port of GET /metrics and GET /healthy (0 disables)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--host-ttl", flags.host_ttl, "A host silent for this long is dropped")
      ->capture_default_str();
  app.add_option("--lease-timeout", flags.lease_timeout,
                 "An origin lease not fulfilled in this time is handed over")
      ->capture_default_str();
  app.add_option("--candidate-parents", flags.candidate_parents, "Most parents returned to a host")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--keepalive-interval", flags.keepalive_interval,
                 "How often hosts are told to announce themselves")
      ->capture_default_str();
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return cli::ExitCode("scheduler", Serve(flags));
}

NAIAD_REGISTER_COMMAND("scheduler", "the swarm's scheduler: parents and origin leases (gRPC)",
                       RunScheduler, "scheduler");

}  // namespace
}  // namespace naiad::scheduler
