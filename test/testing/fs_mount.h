// File: test/testing/fs_mount.h
//
// Runs the real `naiad fs` binary for a test: writes its config, starts it with an API socket,
// waits until the image is mounted and the API answers, and takes it down again (SIGTERM, or
// kill -9 to test crash recovery). The mount is always gone after Stop(), Kill() or destruction.
//
//   ASSERT_OK_AND_ASSIGN(auto mount, FsMount::Start({.config = config_json,
//                                                    .bootstrap = boot_path}));
//   ... read files under mount->mountpoint() ...
//   ASSERT_OK_AND_ASSIGN(nlohmann::json backend, mount->Api("/api/v1/metrics/backend"));
//   ASSERT_OK(mount->Stop());
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/file.h"
#include "base/subprocess.h"
#include "nlohmann/json.hpp"

namespace naiad::testing {

struct FsMountOptions {
  nlohmann::json config;  // the nydusd JSON config
  std::string bootstrap;
  std::string mountpoint;  // empty: a fresh directory
  std::vector<std::string> extra_args;
  std::string netns_path;  // run inside this network namespace (nsenter --net)
  std::string naiad;       // the binary; empty: the one in this build tree
  std::string log_level;   // naiad fs --log-level; empty: debug
  absl::Duration ready_timeout = absl::Seconds(30);
};

class FsMount {
 public:
  static absl::StatusOr<std::unique_ptr<FsMount>> Start(FsMountOptions options);
  ~FsMount();

  const std::string& mountpoint() const { return mountpoint_; }
  const std::string& log_path() const { return log_path_; }
  std::string Log() const;  // the daemon's output so far (for failure messages)

  // GET an API path over the unix socket: JSON, or the raw body.
  absl::StatusOr<nlohmann::json> Api(const std::string& path) const;
  absl::StatusOr<std::string> ApiText(const std::string& path) const;

  // SIGTERM; the daemon must exit 0 and leave nothing mounted.
  absl::Status Stop();
  // SIGKILL, then the stale mount is detached (as a supervisor would).
  void Kill();
  bool running();

 private:
  FsMount() = default;

  TempDir dir_;
  std::string mountpoint_;
  std::string apisock_;
  std::string log_path_;
  Subprocess process_;
};

// Whether `path` is a mount point (listed in /proc/self/mountinfo).
bool IsMounted(const std::string& path);

}  // namespace naiad::testing
