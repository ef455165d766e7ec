#include "test/testing/fs_mount.h"

#include <signal.h>
#include <sys/mount.h>

#include <fstream>
#include <sstream>

#include "base/status_macros.h"
#include "base/strings.h"
#include "net/http_client.h"
#include "test/testing/test_env.h"

namespace naiad::testing {

bool IsMounted(const std::string& path) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    if (mount_point == path) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<FsMount>> FsMount::Start(FsMountOptions options) {
  std::unique_ptr<FsMount> mount(new FsMount());
  ASSIGN_OR_RETURN(mount->dir_, CreateOwnedTempDir("naiad-fs-"));
  const std::string& dir = mount->dir_.path();
  mount->mountpoint_ = options.mountpoint.empty() ? StrCat(dir, "/mnt") : options.mountpoint;
  RETURN_IF_ERROR(CreateDirectories(mount->mountpoint_));
  mount->apisock_ = StrCat(dir, "/api.sock");
  mount->log_path_ = StrCat(dir, "/naiad-fs.log");
  std::string config_path = StrCat(dir, "/config.json");
  RETURN_IF_ERROR(WriteFileAtomically(config_path, options.config.dump(2)));

  std::vector<std::string> argv;
  if (!options.netns_path.empty()) argv = {"nsenter", StrCat("--net=", options.netns_path), "--"};
  for (const std::string& arg :
       {options.naiad.empty() ? BuildPath("apps/naiad/naiad") : options.naiad, std::string("fs"),
        std::string("--config"), config_path, std::string("--bootstrap"), options.bootstrap,
        std::string("--mountpoint"), mount->mountpoint_, std::string("--apisock"), mount->apisock_,
        std::string("--log-level"),
        options.log_level.empty() ? std::string("debug") : options.log_level}) {
    argv.push_back(arg);
  }
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  ASSIGN_OR_RETURN(mount->process_, Subprocess::Start(argv, {.output_path = mount->log_path_}));
  absl::Time deadline = absl::Now() + options.ready_timeout;
  while (true) {
    absl::StatusOr<nlohmann::json> info = mount->Api("/api/v1/daemon");
    if (info.ok() && (*info)["state"] == "RUNNING" && IsMounted(mount->mountpoint_)) break;
    if (!mount->process_.running()) {
      return absl::FailedPreconditionError(
          StrCat("naiad fs exited before mounting; its log:\n", mount->Log()));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          StrCat("naiad fs did not mount within the timeout; its log:\n", mount->Log()));
    }
    // Often: benchmarks time the start of a mount through this (a poll is one small request on
    // a unix socket).
    absl::SleepFor(absl::Milliseconds(2));
  }
  return mount;
}

FsMount::~FsMount() {
  if (process_.running()) Kill();
  if (!mountpoint_.empty() && IsMounted(mountpoint_)) umount2(mountpoint_.c_str(), MNT_DETACH);
}

std::string FsMount::Log() const {
  absl::StatusOr<std::string> log = ReadFileToString(log_path_);
  return log.ok() ? *log : StrCat("(no log: ", log.status().ToString(), ")");
}

absl::StatusOr<std::string> FsMount::ApiText(const std::string& path) const {
  net::HttpClient client({.timeout = absl::Seconds(10), .unix_socket_path = apisock_});
  ASSIGN_OR_RETURN(net::HttpResponse response, client.Get(StrCat("http://localhost", path)));
  if (response.status != 200) {
    return absl::UnavailableError(StrCat("GET ", path, ": HTTP ", response.status));
  }
  return response.body;
}

absl::StatusOr<nlohmann::json> FsMount::Api(const std::string& path) const {
  ASSIGN_OR_RETURN(std::string body, ApiText(path));
  nlohmann::json json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::DataLossError(StrCat("GET ", path, ": not JSON: ", body));
  return json;
}

bool FsMount::running() { return process_.running(); }

absl::Status FsMount::Stop() {
  ASSIGN_OR_RETURN(int code, process_.Stop(absl::Seconds(20)));
  if (code != 0) return absl::InternalError(StrCat("naiad fs exited with ", code, ":\n", Log()));
  if (IsMounted(mountpoint_)) {
    return absl::InternalError(StrCat("still mounted after SIGTERM: ", mountpoint_));
  }
  return absl::OkStatus();
}

void FsMount::Kill() {
  process_.Signal(SIGKILL).IgnoreError();
  process_.Wait(absl::Seconds(10)).IgnoreError();
  if (IsMounted(mountpoint_)) umount2(mountpoint_.c_str(), MNT_DETACH);
}

}  // namespace naiad::testing
