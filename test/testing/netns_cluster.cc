#include "test/testing/netns_cluster.h"

#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "test/testing/net_util.h"
#include "test/testing/test_env.h"

namespace naiad::testing {
namespace {

constexpr char kNetnsDir[] = "/var/run/netns";
// Serialises subnet choice and namespace creation between test processes.
constexpr char kLockPath[] = "/tmp/naiad-netns.lock";
constexpr char kIfb[] = "ifb0";
constexpr int kMaxHosts = 250;

// A namespace name this harness created: "nd<pid>c<subnet>-<suffix>".
struct ParsedName {
  pid_t pid = 0;
  int subnet = 0;
};

std::optional<ParsedName> ParseNetnsName(std::string_view name) {
  if (!name.starts_with("nd")) return std::nullopt;
  size_t c = name.find('c');
  size_t dash = name.find('-');
  if (c == std::string_view::npos || dash == std::string_view::npos || c > dash) {
    return std::nullopt;
  }
  ParsedName parsed;
  int pid = 0;
  if (!absl::SimpleAtoi(ToAbsl(name.substr(2, c - 2)), &pid) ||
      !absl::SimpleAtoi(ToAbsl(name.substr(c + 1, dash - c - 1)), &parsed.subnet)) {
    return std::nullopt;
  }
  parsed.pid = pid;
  return parsed;
}

std::vector<std::string> ListNetns() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(kNetnsDir, ec)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

// SIGKILLs every process whose network namespace is `name`; they belong to the harness.
void KillProcessesIn(const std::string& name) {
  absl::StatusOr<RunResult> pids = RunCommand({"ip", "netns", "pids", name});
  if (!pids.ok() || pids->exit_code != 0) return;
  for (absl::string_view line : absl::StrSplit(pids->output, '\n', absl::SkipEmpty())) {
    int pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid > 1 && pid != ::getpid()) ::kill(pid, SIGKILL);
  }
}

absl::Status DeleteNetns(const std::string& name) {
  KillProcessesIn(name);
  return RunCommandOk({"ip", "netns", "del", name}).status();
}

// Holds an exclusive flock on kLockPath for its lifetime.
class NetnsLock {
 public:
  static absl::StatusOr<NetnsLock> Acquire() {
    ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(kLockPath, O_RDWR | O_CREAT, 0644));
    while (::flock(fd.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return ErrnoError(errno, StrCat("flock ", kLockPath));
    }
    return NetnsLock(std::move(fd));
  }

 private:
  explicit NetnsLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// The lowest subnet no live namespace of this harness uses.
absl::StatusOr<int> ChooseSubnet() {
  std::set<int> used;
  for (const std::string& name : ListNetns()) {
    if (auto parsed = ParseNetnsName(name)) used.insert(parsed->subnet);
  }
  for (int subnet = 1; subnet <= 254; ++subnet) {
    if (!used.contains(subnet)) return subnet;
  }
  return absl::ResourceExhaustedError("all 254 cluster subnets are in use");
}

std::string RateArg(double mbit) {
  return StrCat(static_cast<int64_t>(std::llround(mbit * 1000)), "kbit");
}

}  // namespace

std::vector<std::string> TbfCommand(const std::string& netns, const std::string& device,
                                    double mbit) {
  double bytes_per_second = mbit * 1e6 / 8;
  int64_t burst = std::max<int64_t>(64 * 1024, std::llround(bytes_per_second * 0.02));
  return {"tc",  "-n",   netns,         "qdisc", "replace",     "dev",     device, "root",
          "tbf", "rate", RateArg(mbit), "burst", StrCat(burst), "latency", "50ms"};
}

void NetnsCluster::RemoveStaleNamespaces() {
  for (const std::string& name : ListNetns()) {
    std::optional<ParsedName> parsed = ParseNetnsName(name);
    if (!parsed || ProcessAlive(parsed->pid)) continue;
    LogInfo("removing stale network namespace", {{"name", name}});
    absl::Status status = DeleteNetns(name);
    if (!status.ok()) LogWarn("could not remove namespace", {{"error", status.ToString()}});
  }
}

absl::StatusOr<std::unique_ptr<NetnsCluster>> NetnsCluster::Create(int hosts) {
  if (hosts < 1 || hosts > kMaxHosts) {
    return absl::InvalidArgumentError(StrCat("host count must be 1..", kMaxHosts));
  }
  ASSIGN_OR_RETURN(NetnsLock lock, NetnsLock::Acquire());
  RemoveStaleNamespaces();
  ASSIGN_OR_RETURN(int subnet, ChooseSubnet());
  std::unique_ptr<NetnsCluster> cluster(
      new NetnsCluster(subnet, StrCat("nd", ::getpid(), "c", subnet)));
  absl::Status status = cluster->Build(hosts);
  if (!status.ok()) {
    cluster->Destroy().IgnoreError();
    return Annotate(status, "creating the network namespace cluster");
  }
  return cluster;
}

absl::Status NetnsCluster::Build(int hosts) {
  const std::string br = BridgeNetns();
  RETURN_IF_ERROR(RunCommandOk({"ip", "netns", "add", br}).status());
  bridge_created_ = true;
  RETURN_IF_ERROR(RunCommandOk({"ip", "-n", br, "link", "add", "br0", "type", "bridge"}).status());
  RETURN_IF_ERROR(RunCommandOk({"ip", "-n", br, "link", "set", "br0", "up"}).status());
  for (int i = 0; i < hosts; ++i) RETURN_IF_ERROR(AddHost(i));
  return absl::OkStatus();
}

absl::Status NetnsCluster::AddHost(int i) {
  const std::string br = BridgeNetns();
  const std::string host = StrCat(prefix_, "-h", i);
  const std::string port = StrCat("p", i);  // the bridge-side end, inside the bridge namespace
  RETURN_IF_ERROR(RunCommandOk({"ip", "netns", "add", host}).status());
  hosts_.push_back(host);
  // Created from inside the bridge namespace with the peer placed straight into the host's, so
  // neither end ever exists in the root namespace.
  RETURN_IF_ERROR(RunCommandOk({"ip", "-n", br, "link", "add", port, "type", "veth", "peer", "name",
                                kInterface, "netns", host})
                      .status());
  RETURN_IF_ERROR(
      RunCommandOk({"ip", "-n", br, "link", "set", port, "master", "br0", "up"}).status());
  RETURN_IF_ERROR(
      RunCommandOk({"ip", "-n", host, "addr", "add", Address(i) + "/24", "dev", kInterface})
          .status());
  RETURN_IF_ERROR(RunCommandOk({"ip", "-n", host, "link", "set", kInterface, "up"}).status());
  return RunCommandOk({"ip", "-n", host, "link", "set", "lo", "up"}).status();
}

NetnsCluster::~NetnsCluster() {
  absl::Status status = Destroy();
  if (!status.ok()) LogWarn("destroying cluster", {{"error", status.ToString()}});
}

absl::Status NetnsCluster::Destroy() {
  absl::Status result;
  for (const std::string& host : hosts_) result.Update(DeleteNetns(host));
  hosts_.clear();
  if (bridge_created_) result.Update(DeleteNetns(BridgeNetns()));
  bridge_created_ = false;
  return result;
}

std::string NetnsCluster::Address(int i) const { return StrCat("10.77.", subnet_, ".", i + 1); }

std::string NetnsCluster::NetnsPath(int i) const { return StrCat(kNetnsDir, "/", hosts_[i]); }

std::vector<std::string> NetnsCluster::Wrap(int i, const std::vector<std::string>& argv) const {
  std::vector<std::string> wrapped = {"nsenter", StrCat("--net=", NetnsPath(i)), "--"};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

absl::StatusOr<RunResult> NetnsCluster::Exec(int i, const std::vector<std::string>& argv,
                                             const RunOptions& options) const {
  return RunCommand(Wrap(i, argv), options);
}

absl::StatusOr<std::string> NetnsCluster::ExecOk(int i, const std::vector<std::string>& argv,
                                                 const RunOptions& options) const {
  return RunCommandOk(Wrap(i, argv), options);
}

absl::StatusOr<Subprocess> NetnsCluster::Spawn(int i, const std::vector<std::string>& argv,
                                               const SubprocessOptions& options) const {
  return Subprocess::Start(Wrap(i, argv), options);
}

absl::Status NetnsCluster::RunIn(int i, absl::FunctionRef<absl::Status()> fn) const {
  return RunInNetns(NetnsPath(i), fn);
}

absl::Status NetnsCluster::SetEgressLimit(int i, double mbit) {
  return RunCommandOk(TbfCommand(hosts_[i], kInterface, mbit)).status();
}

absl::Status NetnsCluster::SetIngressLimit(int i, double mbit) {
  const std::string& ns = hosts_[i];
  // Ingress traffic cannot be queued, so it is redirected to an ifb device and shaped on the
  // way out of that.
  absl::StatusOr<RunResult> probe = RunCommand({"ip", "-n", ns, "link", "show", kIfb});
  if (!probe.ok() || probe->exit_code != 0) {
    RETURN_IF_ERROR(RunCommandOk({"ip", "-n", ns, "link", "add", kIfb, "type", "ifb"}).status());
  }
  RETURN_IF_ERROR(RunCommandOk({"ip", "-n", ns, "link", "set", kIfb, "up"}).status());
  RETURN_IF_ERROR(RunCommandOk(TbfCommand(ns, kIfb, mbit)).status());
  // Re-adding the ingress qdisc drops any filter an earlier call left.
  RunCommand({"tc", "-n", ns, "qdisc", "del", "dev", kInterface, "ingress"}).IgnoreError();
  RETURN_IF_ERROR(RunCommandOk({"tc", "-n", ns, "qdisc", "add", "dev", kInterface, "handle",
                                "ffff:", "ingress"})
                      .status());
  return RunCommandOk({"tc",       "-n",       ns,      "filter",   "add",    "dev",
                       kInterface, "parent",   "ffff:", "protocol", "all",    "u32",
                       "match",    "u32",      "0",     "0",        "action", "mirred",
                       "egress",   "redirect", "dev",   kIfb})
      .status();
}

absl::Status NetnsCluster::ClearLimits(int i) {
  const std::string& ns = hosts_[i];
  // Each may legitimately be absent; the check below is what matters.
  RunCommand({"tc", "-n", ns, "qdisc", "del", "dev", kInterface, "root"}).IgnoreError();
  RunCommand({"tc", "-n", ns, "qdisc", "del", "dev", kInterface, "ingress"}).IgnoreError();
  RunCommand({"tc", "-n", ns, "qdisc", "del", "dev", kIfb, "root"}).IgnoreError();
  ASSIGN_OR_RETURN(std::string qdiscs, RunCommandOk({"tc", "-n", ns, "qdisc", "show"}));
  if (qdiscs.find("tbf") != std::string::npos || qdiscs.find("ingress") != std::string::npos) {
    return absl::InternalError(StrCat("limits still present in ", ns, ":\n", qdiscs));
  }
  return absl::OkStatus();
}

}  // namespace naiad::testing
