// File: test/testing/netns_cluster.h
//
// A cluster of N "hosts" for end-to-end tests: each host is a network namespace with one veth
// interface (eth0) plugged into a bridge that lives in a namespace of its own. The root
// namespace's network is never touched: no interface, address or route is added there, and the
// hosts have no route out of their /24, so nothing a test runs can reach the machine's own
// services or the internet.
//
//   ASSIGN_OR_RETURN(auto cluster, NetnsCluster::Create(3));
//   ASSIGN_OR_RETURN(Subprocess server,
//                    cluster->Spawn(0, {"naiad_test_fileserver", "--dir", dir,
//                                       "--address", cluster->Address(0), "--port", "8080"}));
//   RETURN_IF_ERROR(cluster->SetEgressLimit(0, /*mbit=*/100));
//   ASSIGN_OR_RETURN(RunResult r,
//                    cluster->Exec(1, {"curl", "-sf", "-o", out, url_on_host_0}));
//
// Hosts are indexed 0..N-1; host i has the address 10.77.<subnet>.<i+1>/24, where `subnet` is
// chosen per cluster so that several clusters (in one process or several) get distinct ranges.
//
// Namespace names carry the creating pid ("nd<pid>c<subnet>-h<i>", "nd<pid>c<subnet>-br"), so
// Create() first deletes namespaces left behind by runs whose process is gone (a crashed test),
// killing whatever still runs in them. The destructor kills every process still running inside
// the cluster's namespaces (daemons from Spawn() included) and deletes the namespaces.
//
// Programs run inside a host through `nsenter --net=<path>` rather than `ip netns exec`: the
// latter makes a private mount namespace and remounts /sys, which hides FUSE mounts from the rest
// of the machine and breaks runc's cgroup lookup.
//
// Shaping: SetEgressLimit() puts a token bucket (tbf) on the host's eth0; SetIngressLimit()
// redirects the host's incoming traffic to an ifb device and shapes that. netem is not available
// on the CI kernel, so there is no delay or loss emulation here.
//
// Thread-compatible: use one cluster from one thread at a time (Spawn() children are tied to the
// thread that starts them, see base/subprocess.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/subprocess.h"

namespace naiad::testing {

class NetnsCluster {
 public:
  // Creates `hosts` hosts (1..250) joined by one bridge. Removes stale namespaces first.
  static absl::StatusOr<std::unique_ptr<NetnsCluster>> Create(int hosts);

  ~NetnsCluster();
  NetnsCluster(const NetnsCluster&) = delete;
  NetnsCluster& operator=(const NetnsCluster&) = delete;

  int host_count() const { return static_cast<int>(hosts_.size()); }
  // The third octet of this cluster's 10.77.<subnet>.0/24.
  int subnet() const { return subnet_; }
  // "10.77.<subnet>.<i+1>"
  std::string Address(int i) const;
  // The namespace's name ("nd<pid>c<subnet>-h<i>") and its path under /var/run/netns.
  const std::string& NetnsName(int i) const { return hosts_[i]; }
  std::string NetnsPath(int i) const;
  // The host's interface on the bridge.
  static constexpr const char* kInterface = "eth0";

  // `argv` prefixed with `nsenter --net=<path> --`, to run it inside host i.
  std::vector<std::string> Wrap(int i, const std::vector<std::string>& argv) const;
  // Runs a command inside host i to completion (see naiad::RunCommand).
  absl::StatusOr<RunResult> Exec(int i, const std::vector<std::string>& argv,
                                 const RunOptions& options = {}) const;
  // Like Exec() but a non-zero exit is an error (see naiad::RunCommandOk).
  absl::StatusOr<std::string> ExecOk(int i, const std::vector<std::string>& argv,
                                     const RunOptions& options = {}) const;
  // Starts a long-running process inside host i.
  absl::StatusOr<Subprocess> Spawn(int i, const std::vector<std::string>& argv,
                                   const SubprocessOptions& options = {}) const;
  // Runs `fn` in this process on a thread inside host i's namespace (see RunInNetns()).
  absl::Status RunIn(int i, absl::FunctionRef<absl::Status()> fn) const;

  // Limits what host i sends to `mbit` Mbit/s (10^6 bit/s). Replaces an earlier egress limit.
  absl::Status SetEgressLimit(int i, double mbit);
  // Limits what host i receives to `mbit` Mbit/s. Replaces an earlier ingress limit.
  absl::Status SetIngressLimit(int i, double mbit);
  // Removes both limits from host i.
  absl::Status ClearLimits(int i);

  // Kills what runs inside the namespaces and deletes them. Idempotent; the destructor calls it.
  absl::Status Destroy();

  // Deletes namespaces named by this harness whose creating process is gone. Create() calls it.
  static void RemoveStaleNamespaces();

 private:
  NetnsCluster(int subnet, std::string prefix) : subnet_(subnet), prefix_(std::move(prefix)) {}

  absl::Status Build(int hosts);
  absl::Status AddHost(int i);
  std::string BridgeNetns() const { return prefix_ + "-br"; }

  int subnet_;
  std::string prefix_;              // "nd<pid>c<subnet>"
  std::vector<std::string> hosts_;  // namespace names, index = host
  bool bridge_created_ = false;
};

// A tbf command line shaping `device` to `mbit`, with a burst large enough for accurate shaping
// at that rate (about 20 ms of traffic, at least 64 KiB so one GSO packet fits). Exposed for tests.
std::vector<std::string> TbfCommand(const std::string& netns, const std::string& device,
                                    double mbit);

}  // namespace naiad::testing
