#include "bench/common/bench_util.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <fstream>

#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "nlohmann/json.hpp"
#include "test/testing/netns_cluster.h"

namespace naiad::bench {
namespace {

std::atomic<bool> g_interrupted{false};
void OnSignal(int /*signal*/) { g_interrupted = true; }

std::string& LogTag() {
  static std::string* tag = new std::string("bench");
  return *tag;
}

}  // namespace

void SetLogTag(std::string tag) { LogTag() = std::move(tag); }

void Log(const std::string& msg) {
  std::time_t now = std::time(nullptr);
  char stamp[16];
  std::strftime(stamp, sizeof(stamp), "%H:%M:%S", std::localtime(&now));
  std::fprintf(stderr, "[%s %s] %s\n", LogTag().c_str(), stamp, msg.c_str());
  std::fflush(stderr);
}

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void InstallInterruptHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

bool Interrupted() { return g_interrupted; }

absl::Status CheckInterrupted() {
  return g_interrupted ? absl::CancelledError("interrupted") : absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Machine state

absl::Status DropCaches() {
  ::sync();
  std::ofstream out("/proc/sys/vm/drop_caches");
  out << "3\n";
  out.close();
  if (!out) return absl::InternalError("cannot write /proc/sys/vm/drop_caches");
  return absl::OkStatus();
}

double BusySeconds() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  std::vector<double> ticks(8, 0);
  stat >> cpu;
  for (double& t : ticks) stat >> t;
  double busy = 0;
  for (size_t i = 0; i < ticks.size(); ++i) {
    if (i != 3 && i != 4) busy += ticks[i];
  }
  return busy / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double OwnCpuSeconds() {
  double total = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage u{};
    ::getrusage(who, &u);
    total += static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
             static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  }
  return total;
}

void WaitQuiet(double max_wait) {
  Clock::time_point start = Clock::now();
  long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  bool said = false;
  while (!g_interrupted) {
    double before = BusySeconds();
    ::usleep(1000 * 1000);
    double busy = (BusySeconds() - before) / static_cast<double>(cores);
    if (busy < 0.10) return;
    if (Since(start) > max_wait) {
      Log(StrCat("machine still ", static_cast<int>(busy * 100), "% busy after ", max_wait,
                 " s; timing anyway"));
      return;
    }
    if (!said)
      Log(StrCat("waiting for other load to settle (", static_cast<int>(busy * 100), "% busy)"));
    said = true;
  }
}

double OtherCpu::Seconds() const {
  return std::max(0.0, (BusySeconds() - busy_) - (OwnCpuSeconds() - own_));
}

// ---------------------------------------------------------------------------------------------
// Processes

absl::StatusOr<int> WaitInterruptible(Subprocess& process, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<int> code = process.Wait(absl::Milliseconds(2));
    if (code.ok()) return code;
    if (!absl::IsDeadlineExceeded(code.status())) return code.status();
    if (g_interrupted || absl::Now() > deadline) {
      process.Stop(absl::Seconds(2)).IgnoreError();
      RETURN_IF_ERROR(CheckInterrupted());
      return absl::DeadlineExceededError("command timed out");
    }
  }
}

std::string Tail(const std::string& path, size_t bytes) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return "";
  return text->size() > bytes ? text->substr(text->size() - bytes) : *text;
}

absl::Status RunLogged(const std::vector<std::string>& argv, const std::string& log,
                       absl::Duration timeout) {
  {
    std::ofstream out(log, std::ios::app);
    out << "$ " << CommandLineForDisplay(argv) << "\n";
  }
  ASSIGN_OR_RETURN(Subprocess p, Subprocess::Start(argv, {.output_path = log}));
  ASSIGN_OR_RETURN(int code, WaitInterruptible(p, timeout));
  if (code != 0) {
    return absl::InternalError(StrCat(CommandLineForDisplay(argv), " exited with ", code, "; log ",
                                      log, ":\n", Tail(log)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ChrootRun(const std::string& root,
                                      const std::vector<std::string>& command,
                                      const std::string& log) {
  std::vector<std::string> argv = {"chroot", root};
  argv.insert(argv.end(), command.begin(), command.end());
  std::string out = log + ".cmd";
  RETURN_IF_ERROR(RunLogged(argv, out, absl::Minutes(10)));
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(out));
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return lines.empty() ? std::string() : lines.back();
}

absl::StatusOr<std::vector<std::string>> CommandFor(const std::string& recipe) {
  if (recipe == "python") return std::vector<std::string>{"python3", "-V"};
  if (recipe == "node") return std::vector<std::string>{"node", "--version"};
  if (recipe == "ruby") return std::vector<std::string>{"ruby", "--version"};
  if (recipe == "golang") return std::vector<std::string>{"go", "version"};
  if (recipe == "base") return std::vector<std::string>{"bash", "--version"};
  return absl::InvalidArgumentError(StrCat("no command known for image ", recipe));
}

// ---------------------------------------------------------------------------------------------
// OCIv1

absl::StatusOr<OciStart> OciPullUnpackRun(const testing::NetnsCluster& cluster, int host,
                                          const std::string& ref, const std::string& tag,
                                          const std::vector<std::string>& command,
                                          const std::string& layout, const std::string& rootfs,
                                          const std::string& log) {
  OciStart result;
  Clock::time_point start = Clock::now();
  RETURN_IF_ERROR(
      RunLogged(cluster.Wrap(host, {"skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                    StrCat("docker://", ref), StrCat("oci:", layout, ":", tag)}),
                log));
  result.pull_s = Since(start);
  // The layers, bottom first, from the manifest that was pulled.
  ASSIGN_OR_RETURN(std::string index_text, ReadFileToString(layout + "/index.json"));
  nlohmann::json index = nlohmann::json::parse(index_text, nullptr, false);
  if (index.is_discarded() || index["manifests"].empty())
    return absl::DataLossError(StrCat("bad index.json in ", layout));
  std::string manifest_digest = index["manifests"][0]["digest"];
  ASSIGN_OR_RETURN(std::string manifest_text,
                   ReadFileToString(StrCat(layout, "/blobs/sha256/", manifest_digest.substr(7))));
  nlohmann::json manifest = nlohmann::json::parse(manifest_text, nullptr, false);
  if (manifest.is_discarded()) return absl::DataLossError("bad manifest");
  Clock::time_point unpack_start = Clock::now();
  for (const nlohmann::json& layer : manifest["layers"]) {
    std::string digest = layer["digest"];
    RETURN_IF_ERROR(RunLogged({"tar", "--numeric-owner", "-xzf",
                               StrCat(layout, "/blobs/sha256/", digest.substr(7)), "-C", rootfs},
                              log));
  }
  result.unpack_s = Since(unpack_start);
  Clock::time_point cmd_start = Clock::now();
  ASSIGN_OR_RETURN(result.output, ChrootRun(rootfs, command, log));
  result.cmd_s = Since(cmd_start);
  result.wall_s = Since(start);
  return result;
}

}  // namespace naiad::bench
