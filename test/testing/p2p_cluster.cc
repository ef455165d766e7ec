#include "test/testing/p2p_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "test/testing/test_env.h"

namespace naiad::testing {
namespace {

constexpr absl::Duration kStopGrace = absl::Seconds(10);

// The last `bytes` of a file, for messages.
std::string FileTail(const std::string& path, size_t bytes) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return StrCat("(", text.status().ToString(), ")");
  if (text->size() <= bytes) return *std::move(text);
  return StrCat("...", text->substr(text->size() - bytes));
}

// curl's arguments common to every call: quiet but with errors, no proxy from the environment.
std::vector<std::string> CurlBase() { return {"curl", "-sS", "--noproxy", "*"}; }

// The last header block of a `curl -D` dump (earlier ones belong to 1xx answers).
std::string LastHeaderBlock(std::string_view dump) {
  size_t start = 0;
  for (size_t at = dump.find("HTTP/"); at != std::string_view::npos;
       at = dump.find("HTTP/", at + 1)) {
    if (at == 0 || dump[at - 1] == '\n') start = at;
  }
  return std::string(dump.substr(start));
}

int StatusOfHeaderBlock(std::string_view block) {
  // "HTTP/1.1 206 Partial Content"
  std::vector<absl::string_view> parts = absl::StrSplit(ToAbsl(block.substr(0, 64)), ' ');
  int status = 0;
  if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &status)) return status;
  return 0;
}

}  // namespace

absl::StatusOr<double> PrometheusValue(std::string_view text, std::string_view name) {
  double sum = 0;
  bool found = false;
  for (absl::string_view line : absl::StrSplit(ToAbsl(text), '\n', absl::SkipEmpty())) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    if (!absl::StartsWith(line, ToAbsl(name))) continue;
    absl::string_view rest = line.substr(name.size());
    if (rest.empty()) continue;
    if (rest.front() == '{') {
      size_t close = rest.find('}');
      if (close == absl::string_view::npos) continue;
      rest = rest.substr(close + 1);
    } else if (rest.front() != ' ' && rest.front() != '\t') {
      continue;  // a longer name with this one as its prefix
    }
    // "<value> [timestamp]"
    std::vector<absl::string_view> fields =
        absl::StrSplit(absl::StripAsciiWhitespace(rest), absl::ByAnyChar(" \t"), absl::SkipEmpty());
    double value = 0;
    if (fields.empty() || !absl::SimpleAtod(fields[0], &value)) {
      return absl::InvalidArgumentError(StrCat("bad Prometheus sample line \"", line, "\""));
    }
    sum += value;
    found = true;
  }
  if (!found) return absl::NotFoundError(StrCat("no metric ", name));
  return sum;
}

std::optional<std::string> FetchResult::Header(std::string_view name) const {
  for (absl::string_view line : absl::StrSplit(headers, '\n')) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)), ToAbsl(name))) {
      return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  return std::nullopt;
}

std::string FetchResult::Describe() const {
  return StrCat("host ", host, " GET ", url, range.empty() ? "" : StrCat(" [Range ", range, "]"),
                ": curl exit ", curl_exit, ", HTTP ", http_status,
                curl_log.empty() ? "" : StrCat("; curl: ", curl_log));
}

absl::StatusOr<FetchResult> Fetch::Wait(absl::Duration timeout) {
  absl::StatusOr<int> code = process_.Wait(timeout);
  if (!code.ok()) {
    process_.Stop(absl::Seconds(1)).IgnoreError();
    return Annotate(code.status(), result_.Describe());
  }
  result_.curl_exit = *code;
  absl::StatusOr<std::string> dump = ReadFileToString(headers_path_);
  if (dump.ok()) {
    result_.headers = LastHeaderBlock(*dump);
    result_.http_status = StatusOfHeaderBlock(result_.headers);
  }
  absl::StatusOr<std::string> log = ReadFileToString(log_path_);
  if (log.ok()) result_.curl_log = std::string(absl::StripAsciiWhitespace(*log));
  return result_;
}

absl::StatusOr<std::unique_ptr<P2pCluster>> P2pCluster::Start(P2pClusterOptions options) {
  if (options.peers < 1) return absl::InvalidArgumentError("a P2pCluster needs a peer");
  std::unique_ptr<P2pCluster> cluster(new P2pCluster(std::move(options)));
  const P2pClusterOptions& o = cluster->options_;
  cluster->naiad_ = o.naiad.empty() ? BuildPath("apps/naiad/naiad") : o.naiad;
  if (cluster->options_.log_level.empty()) {
    const char* level = std::getenv("NAIAD_P2P_LOG_LEVEL");
    cluster->options_.log_level = level != nullptr && *level != '\0' ? level : "info";
  }
  ASSIGN_OR_RETURN(cluster->dir_, CreateOwnedTempDir("naiad-p2p-"));
  ASSIGN_OR_RETURN(cluster->net_, NetnsCluster::Create(cluster->first_peer_host() + o.peers));
  ASSIGN_OR_RETURN(cluster->registry_,
                   RegistryFixture::Start({.address = cluster->Address(kRegistryHost),
                                           .netns_path = cluster->net_->NetnsPath(kRegistryHost)}));
  if (o.scheduler == SchedulerMode::kRunning) RETURN_IF_ERROR(cluster->StartScheduler());
  if (o.seed_peer) RETURN_IF_ERROR(cluster->StartPeer("seed", cluster->seed_host(), true));
  for (int i = 0; i < o.peers; ++i) {
    RETURN_IF_ERROR(cluster->StartPeer(StrCat("peer", i), cluster->peer_host(i), false));
  }
  // The seed and the peers were started together; wait for all of them.
  for (Daemon& daemon : cluster->daemons_) {
    if (daemon.name == "scheduler") continue;
    RETURN_IF_ERROR(cluster->WaitUntilReady(
        daemon, StrCat(cluster->HostUrl(daemon.host, kHealthPort), "/server/ping")));
  }
  return cluster;
}

P2pCluster::~P2pCluster() {
  Stop().IgnoreError();
  registry_.reset();
  net_.reset();
}

std::string P2pCluster::HostUrl(int host, uint16_t port) const {
  return StrCat("http://", Address(host), ":", port);
}

std::string P2pCluster::BlobUrl(int host, std::string_view repo, const Digest& digest) const {
  return StrCat(HostUrl(host, kProxyPort), "/v2/", repo, "/blobs/", digest.ToString());
}

absl::Status P2pCluster::StartScheduler() {
  Daemon daemon{
      .name = "scheduler", .host = kSchedulerHost, .log_path = StrCat(dir(), "/scheduler.log")};
  // --lease-timeout is the default: shorter, a 1 MiB origin fetch slowed by the shaped link
  // (5-12 s seen) loses its lease while still arriving and the piece is fetched twice. A dead
  // holder's leases end with its host TTL anyway.
  std::vector<std::string> argv = {naiad_,
                                   "scheduler",
                                   "--address",
                                   Address(kSchedulerHost),
                                   "--port",
                                   StrCat(kSchedulerPort),
                                   "--metrics-port",
                                   StrCat(kSchedulerMetricsPort),
                                   "--host-ttl",
                                   "3s",
                                   "--lease-timeout",
                                   "30s",
                                   "--keepalive-interval",
                                   "1s",
                                   "--log-level",
                                   options_.log_level};
  ASSIGN_OR_RETURN(daemon.process,
                   net_->Spawn(kSchedulerHost, argv, {.output_path = daemon.log_path}));
  daemons_.push_back(std::move(daemon));
  return WaitUntilReady(daemons_.back(),
                        StrCat(HostUrl(kSchedulerHost, kSchedulerMetricsPort), "/healthy"));
}

std::string P2pCluster::PeerConfig(const std::string& name, int host) const {
  const std::string ip = Address(host);
  std::string yaml = StrCat("dataDir: ", dir(), "/", name, "\n");
  if (options_.seed_style_config) {
    // The seed's charts-config.yaml, dfdaemon.config.proxy, with the registry's URL.
    StrAppend(&yaml, "proxy:\n", "  defaultFilter: 'Expires&Signature&ns'\n", "  security:\n",
              "    insecure: true\n", "  tcpListen:\n", "    listen: 0.0.0.0\n",
              "    port: ", kProxyPort, "\n", "  registryMirror:\n", "    dynamic: true\n",
              "    url: ", registry_->url(), "\n", "  proxies:\n", "  - regx: blobs/sha256.*\n");
  } else {
    StrAppend(&yaml, "proxy:\n", "  tcpListen: {listen: ", ip, ", port: ", kProxyPort, "}\n",
              "  registryMirror: {url: \"", registry_->url(), "\"}\n", "health:\n",
              "  tcpListen: {listen: ", ip, ", port: ", kHealthPort, "}\n");
  }
  StrAppend(&yaml, "upload:\n", "  tcpListen: {listen: ", ip, ", port: ", kUploadPort, "}\n");
  if (options_.scheduler != SchedulerMode::kNone) {
    StrAppend(&yaml, "scheduler:\n", "  netAddrs: [{type: tcp, addr: \"", Address(kSchedulerHost),
              ":", kSchedulerPort, "\"}]\n", "  scheduleTimeout: 2s\n",
              "  keepAliveInterval: 1s\n");
  }
  StrAppend(&yaml, "download:\n", "  prefetch: ", options_.prefetch ? "true" : "false", "\n",
            "  concurrentPieceCount: ", options_.concurrent_piece_count, "\n",
            // The local API socket: never the machine's /run/naiad/peer.sock.
            "  unixSocket: ", dir(), "/", name, ".sock\n", options_.extra_peer_yaml);
  return yaml;
}

absl::Status P2pCluster::StartPeer(const std::string& name, int host, bool seed) {
  const std::string config_path = StrCat(dir(), "/", name, ".yaml");
  RETURN_IF_ERROR(WriteFileAtomically(config_path, PeerConfig(name, host)));
  Daemon daemon{
      .name = name, .host = host, .seed = seed, .log_path = StrCat(dir(), "/", name, ".log")};
  RETURN_IF_ERROR(SpawnPeer(daemon));
  daemons_.push_back(std::move(daemon));
  return absl::OkStatus();
}

absl::Status P2pCluster::SpawnPeer(Daemon& daemon) {
  std::vector<std::string> argv = {naiad_,           "peer",
                                   "--config",       StrCat(dir(), "/", daemon.name, ".yaml"),
                                   "--hostname",     daemon.name,
                                   "--advertise-ip", Address(daemon.host),
                                   "--log-level",    options_.log_level};
  if (daemon.seed) argv.push_back("--seed");
  // A restarted daemon appends to the log of its earlier life (output files are opened with
  // O_APPEND).
  ASSIGN_OR_RETURN(daemon.process,
                   net_->Spawn(daemon.host, argv, {.output_path = daemon.log_path}));
  return absl::OkStatus();
}

absl::Status P2pCluster::Restart(int host) {
  Daemon* daemon = DaemonOn(host, /*scheduler=*/false);
  if (daemon == nullptr) return absl::NotFoundError(StrCat("no peer on host ", host));
  if (daemon->process.running()) {
    return absl::FailedPreconditionError(StrCat(daemon->name, " is still running"));
  }
  RETURN_IF_ERROR(SpawnPeer(*daemon));
  daemon->killed = false;
  return WaitUntilReady(*daemon, StrCat(HostUrl(host, kHealthPort), "/server/ping"));
}

absl::Status P2pCluster::WaitUntilReady(Daemon& daemon, const std::string& url) {
  std::vector<std::string> probe = CurlBase();
  for (const char* arg : {"-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2"}) {
    probe.push_back(arg);
  }
  probe.push_back(url);
  const absl::Time deadline = absl::Now() + options_.ready_timeout;
  while (true) {
    absl::StatusOr<RunResult> result =
        net_->Exec(daemon.host, probe, {.timeout = absl::Seconds(10)});
    if (result.ok() && result->exit_code == 0 && result->output == "200") {
      return absl::OkStatus();
    }
    if (!daemon.process.running()) {
      return absl::FailedPreconditionError(StrCat(daemon.name, " on host ", daemon.host,
                                                  " exited before answering ", url,
                                                  "; its output:\n", Tail(daemon, 8000)));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(StrCat(
          daemon.name, " on host ", daemon.host, " did not answer ", url, " within ",
          absl::FormatDuration(options_.ready_timeout), "; its output:\n", Tail(daemon, 8000)));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

absl::StatusOr<Fetch> P2pCluster::StartFetch(int host, const std::string& url,
                                             const FetchOptions& options) {
  const std::string base = StrCat(dir(), "/fetch", next_fetch_++);
  Fetch fetch;
  fetch.result_.host = host;
  fetch.result_.url = url;
  fetch.result_.range = options.range;
  fetch.result_.body_path = base + ".body";
  fetch.headers_path_ = base + ".headers";
  fetch.log_path_ = base + ".log";
  std::vector<std::string> argv = CurlBase();
  for (const std::string& arg :
       {std::string("--max-time"), StrCat(absl::ToInt64Seconds(options.timeout)), std::string("-o"),
        fetch.result_.body_path, std::string("-D"), fetch.headers_path_}) {
    argv.push_back(arg);
  }
  if (!options.range.empty()) {
    argv.push_back("-H");
    argv.push_back(StrCat("Range: ", options.range));
  }
  argv.push_back(url);
  ASSIGN_OR_RETURN(fetch.process_, net_->Spawn(host, argv, {.output_path = fetch.log_path_}));
  return fetch;
}

absl::StatusOr<std::string> P2pCluster::HttpGet(int host, const std::string& url) const {
  std::vector<std::string> argv = CurlBase();
  for (const char* arg : {"-f", "--max-time", "10"}) argv.push_back(arg);
  argv.push_back(url);
  return net_->ExecOk(host, argv, {.timeout = absl::Seconds(20)});
}

absl::StatusOr<double> P2pCluster::PeerMetric(int host, std::string_view name) const {
  ASSIGN_OR_RETURN(std::string text, HttpGet(host, StrCat(HostUrl(host, kHealthPort), "/metrics")));
  return PrometheusValue(text, name);
}

absl::StatusOr<double> P2pCluster::SchedulerMetric(std::string_view name) const {
  ASSIGN_OR_RETURN(
      std::string text,
      HttpGet(kSchedulerHost, StrCat(HostUrl(kSchedulerHost, kSchedulerMetricsPort), "/metrics")));
  return PrometheusValue(text, name);
}

bool P2pCluster::PeerHealthy(int host) const {
  return HttpGet(host, StrCat(HostUrl(host, kHealthPort), "/server/ping")).ok();
}

P2pCluster::Daemon* P2pCluster::DaemonOn(int host, bool scheduler) {
  for (Daemon& daemon : daemons_) {
    if (daemon.host == host && (daemon.name == "scheduler") == scheduler) return &daemon;
  }
  return nullptr;
}

absl::Status P2pCluster::Kill(int host) {
  Daemon* daemon = DaemonOn(host, /*scheduler=*/false);
  if (daemon == nullptr) return absl::NotFoundError(StrCat("no peer on host ", host));
  daemon->killed = true;
  RETURN_IF_ERROR(daemon->process.Signal(SIGKILL));
  return daemon->process.Wait(absl::Seconds(10)).status();
}

absl::Status P2pCluster::KillScheduler() {
  Daemon* daemon = DaemonOn(kSchedulerHost, /*scheduler=*/true);
  if (daemon == nullptr) return absl::NotFoundError("no scheduler");
  daemon->killed = true;
  RETURN_IF_ERROR(daemon->process.Signal(SIGKILL));
  return daemon->process.Wait(absl::Seconds(10)).status();
}

bool P2pCluster::Running(int host) {
  Daemon* daemon = DaemonOn(host, /*scheduler=*/false);
  return daemon != nullptr && daemon->process.running();
}

std::string P2pCluster::Tail(const Daemon& daemon, size_t bytes) const {
  return FileTail(daemon.log_path, bytes);
}

std::string P2pCluster::Logs(size_t bytes_per_daemon) const {
  std::string out;
  for (const Daemon& daemon : daemons_) {
    StrAppend(&out, "==== ", daemon.name, " on host ", daemon.host, " (", Address(daemon.host),
              "), ", daemon.log_path, daemon.killed ? ", killed by the test" : "", " ====\n",
              Tail(daemon, bytes_per_daemon), "\n");
  }
  if (registry_ != nullptr) {
    StrAppend(&out, "==== registry (", registry_->log_path(), ") ====\n",
              registry_->LogTail(bytes_per_daemon), "\n");
  }
  return out;
}

absl::Status P2pCluster::CopyLogsTo(const std::string& dir) const {
  RETURN_IF_ERROR(CreateDirectories(dir));
  for (const Daemon& daemon : daemons_) {
    ASSIGN_OR_RETURN(std::string log, ReadFileToString(daemon.log_path));
    RETURN_IF_ERROR(WriteFileAtomically(StrCat(dir, "/", daemon.name, ".log"), log));
  }
  if (registry_ != nullptr) {
    ASSIGN_OR_RETURN(std::string log, ReadFileToString(registry_->log_path()));
    RETURN_IF_ERROR(WriteFileAtomically(StrCat(dir, "/registry.log"), log));
  }
  return absl::OkStatus();
}

absl::Status P2pCluster::Stop() {
  std::vector<std::string> problems;
  // The peers first, at once (their keepalive says goodbye to the scheduler), then the scheduler.
  for (bool scheduler : {false, true}) {
    std::vector<Daemon*> stopping;
    for (Daemon& daemon : daemons_) {
      if (daemon.stopped || (daemon.name == "scheduler") != scheduler) continue;
      daemon.stopped = true;
      if (daemon.killed) continue;
      if (!daemon.process.running()) {
        absl::StatusOr<int> code = daemon.process.Wait(absl::ZeroDuration());
        problems.push_back(StrCat(daemon.name, " had exited by itself (exit ",
                                  code.ok() ? StrCat(*code) : code.status().ToString(), ")"));
        continue;
      }
      daemon.process.Signal(SIGTERM).IgnoreError();
      stopping.push_back(&daemon);
    }
    for (Daemon* daemon : stopping) {
      absl::StatusOr<int> code = daemon->process.Wait(kStopGrace);
      if (!code.ok()) {
        daemon->process.Signal(SIGKILL).IgnoreError();
        daemon->process.Wait(absl::Seconds(5)).IgnoreError();
        problems.push_back(StrCat(daemon->name, " did not exit within ",
                                  absl::FormatDuration(kStopGrace), " of SIGTERM"));
      } else if (*code != 0) {
        problems.push_back(StrCat(daemon->name, " exited with ", *code, " on SIGTERM"));
      }
    }
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InternalError(StrCat("stopping the swarm: ", absl::StrJoin(problems, "; ")));
}

}  // namespace naiad::testing
