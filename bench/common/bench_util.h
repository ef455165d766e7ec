// File: bench/common/bench_util.h
//
// What the benchmark drivers (bench/*/…_main.cc) share: logging with the benchmark's tag, the
// SIGINT/SIGTERM flag, the machine-state helpers every timed run uses (drop the page cache, wait
// for other load to settle, CPU seconds other processes used during a run), running a command
// with its output in a log, and contender (a) of bench/lazy and bench/seed-path: an OCI pull with
// skopeo, tar -xzf of every layer and the command in a chroot.
//
//   SetLogTag("bench/seed-path");
//   InstallInterruptHandlers();
//   RETURN_IF_ERROR(DropCaches());
//   WaitQuiet(/*max_wait=*/60);
//   OtherCpu other;
//   ASSIGN_OR_RETURN(OciStart oci, OciPullUnpackRun(cluster, host, ref, tag, {"python3", "-V"},
//                                                   dir + "/layout", dir + "/rootfs", log));
//   Log(StrCat("pulled in ", oci.pull_s, " s; others used ", other.Seconds(), " CPU s"));
//
// Never asserts times: benchmarks measure and report (see bench/README.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/subprocess.h"

namespace naiad::testing {
class NetnsCluster;
}

namespace naiad::bench {

using Clock = std::chrono::steady_clock;

// Log() lines read "[<tag> HH:MM:SS] msg" on stderr.
void SetLogTag(std::string tag);
void Log(const std::string& msg);

// Seconds since `start`.
double Since(Clock::time_point start);

// SIGINT and SIGTERM set a flag (the run scripts forward theirs to the driver); long waits
// check it and stop with Cancelled.
void InstallInterruptHandlers();
bool Interrupted();
absl::Status CheckInterrupted();

// sync, then echo 3 > /proc/sys/vm/drop_caches.
absl::Status DropCaches();
// CPU seconds all cores spent busy since boot (/proc/stat without idle and iowait).
double BusySeconds();
// CPU seconds of our reaped descendants plus ourselves.
double OwnCpuSeconds();
// The cores are shared: waits (up to max_wait) until other processes use under 10% of them.
void WaitQuiet(double max_wait);

// Measures the CPU that processes other than ours used during a timed run.
class OtherCpu {
 public:
  OtherCpu() : busy_(BusySeconds()), own_(OwnCpuSeconds()) {}
  // Call after every process of the run has been reaped.
  double Seconds() const;

 private:
  double busy_;
  double own_;
};

// Waits for `process`, checking for SIGINT/SIGTERM; kills it on interruption or timeout.
absl::StatusOr<int> WaitInterruptible(Subprocess& process, absl::Duration timeout);

// The last `bytes` of a file ("" if unreadable), for messages.
std::string Tail(const std::string& path, size_t bytes = 3000);

// Runs argv to completion with its output appended to `log`; a non-zero exit is an error.
absl::Status RunLogged(const std::vector<std::string>& argv, const std::string& log,
                       absl::Duration timeout = absl::Minutes(20));

// Runs `command` chrooted into `root` with its output in `log` + ".cmd"; returns the output's
// last line (an error if the command fails).
absl::StatusOr<std::string> ChrootRun(const std::string& root,
                                      const std::vector<std::string>& command,
                                      const std::string& log);

// The command a test image's container starts: python3 -V, node --version, ...
absl::StatusOr<std::vector<std::string>> CommandFor(const std::string& recipe);

// Contender (a), OCIv1: `skopeo copy --src-tls-verify=false docker://<ref> oci:<layout>:<tag>`
// inside the cluster's `host` (layers fetched in parallel), `tar --numeric-owner -xzf` of each
// layer of the pulled manifest in order onto `rootfs` (which must exist and be empty), then
// `chroot <rootfs> <command>`. Times from the start of skopeo to the command's exit. The layout
// and the tree are left for the caller to remove.
struct OciStart {
  double pull_s = 0;
  double unpack_s = 0;
  double cmd_s = 0;
  double wall_s = 0;
  std::string output;  // the command's last line of output
};
absl::StatusOr<OciStart> OciPullUnpackRun(const testing::NetnsCluster& cluster, int host,
                                          const std::string& ref, const std::string& tag,
                                          const std::vector<std::string>& command,
                                          const std::string& layout, const std::string& rootfs,
                                          const std::string& log);

}  // namespace naiad::bench
