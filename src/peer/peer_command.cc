// The `naiad peer` command line: the per-node daemon (dfdaemon's role), configured by a
// dfdaemon-style YAML file.
#include <pthread.h>

#include <csignal>
#include <thread>

#include "CLI/CLI.hpp"
#include "base/logging.h"
#include "base/strings.h"
#include "cli/command.h"
#include "peer/peer.h"

namespace naiad::peer {
namespace {

struct Flags {
  std::string config_path;
  std::string data_dir;
  int port = -1;
  int health_port = -1;
  std::string log_level = "info";
};

absl::Status Serve(const Flags& flags) {
  ASSIGN_OR_RETURN(LogLevel level, ParseLogLevel(flags.log_level));
  SetLogLevel(level);
  PeerConfig config;
  if (!flags.config_path.empty()) {
    ASSIGN_OR_RETURN(config, LoadPeerConfig(flags.config_path));
  }
  if (!flags.data_dir.empty()) config.data_dir = flags.data_dir;
  if (flags.port >= 0) config.proxy.tcp_listen.port = flags.port;
  if (flags.health_port >= 0) config.health.tcp_listen.port = flags.health_port;
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ASSIGN_OR_RETURN(std::unique_ptr<Peer> peer, Peer::Start(config));
  int signal = 0;
  sigwait(&signals, &signal);
  LogInfo("signal received, stopping", {{"signal", signal}});
  peer->Stop();
  return absl::OkStatus();
}

int RunPeer(int argc, char** argv) {
  CLI::App app("The per-node peer daemon: registry mirror proxy and piece store", "naiad peer");
  Flags flags;
  app.add_option("--config,-c", flags.config_path, "dfdaemon-style YAML config");
  app.add_option("--data-dir", flags.data_dir, "Where tasks are stored (overrides dataDir)");
  app.add_option("--port", flags.port, "Proxy port (overrides proxy.tcpListen.port)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--health-port", flags.health_port,
                 "Health/metrics port (overrides health.tcpListen.port)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error");
  CLI11_PARSE(app, argc, argv);
  return cli::ExitCode("peer", Serve(flags));
}

NAIAD_REGISTER_COMMAND("peer", "per-node peer daemon: registry mirror proxy (dfdaemon)", RunPeer,
                       "dfdaemon");

}  // namespace
}  // namespace naiad::peer
