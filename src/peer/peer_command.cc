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
  bool seed = false;
  std::vector<std::string> schedulers;
  int upload_port = -1;
  std::string hostname;
  std::string advertise_ip;
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
  if (flags.upload_port >= 0) config.upload.tcp_listen.port = flags.upload_port;
  if (flags.seed) config.seed_peer.enable = true;
  if (!flags.schedulers.empty()) {
    config.scheduler.net_addrs.clear();
    for (const std::string& addr : flags.schedulers) {
      config.scheduler.net_addrs.push_back({.type = "tcp", .addr = addr});
    }
  }
  if (!flags.hostname.empty()) config.host.hostname = flags.hostname;
  if (!flags.advertise_ip.empty()) config.host.advertise_ip = flags.advertise_ip;
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
  app.add_option("--upload-port", flags.upload_port,
                 "Piece upload port (overrides upload.tcpListen.port)")
      ->check(CLI::Range(0, 65535));
  app.add_flag("--seed", flags.seed, "Seed peer: fetch tasks from the origin when asked");
  app.add_option("--scheduler", flags.schedulers,
                 "Scheduler host:port (repeatable; overrides scheduler.netAddrs)");
  app.add_option("--hostname", flags.hostname, "Host name to announce (overrides host.hostname)");
  app.add_option("--advertise-ip", flags.advertise_ip,
                 "Address other peers reach this one at (overrides host.advertiseIP)");
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error");
  CLI11_PARSE(app, argc, argv);
  return cli::ExitCode("peer", Serve(flags));
}

NAIAD_REGISTER_COMMAND("peer", "per-node peer daemon: registry mirror proxy (dfdaemon)", RunPeer,
                       "dfdaemon");

}  // namespace
}  // namespace naiad::peer
