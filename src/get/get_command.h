// File: get/get_command.h
//
// `naiad get URL -O FILE` (alias `dfget`, with dfget's flags): downloads a URL to a file through
// the local peer daemon (`naiad peer`'s unix socket, so the bytes come from the swarm and the
// origin serves each byte about once per cluster), or straight from the origin when no daemon
// runs there or with --direct. The file appears only when it is complete and matches --digest.
//
//   naiad get https://example.com/model.bin -O /data/model.bin --digest sha256:...
//       --header "Authorization: Bearer ..." --filter "Expires&Signature"
//
// On stderr: a notice when there is no daemon, a progress line (a terminal, or --progress)
// with where the bytes come from, and a summary line. RunGet() is the command over parsed flags,
// so tests call it in-process. See docs/design/get.md.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "get/daemon_client.h"
#include "get/downloader.h"
#include "get/progress_bar.h"

namespace naiad::get {

struct GetFlags {
  std::string url;
  std::string output;
  std::vector<std::string> headers;  // "Name: value"
  std::string filter;                // "a&b": query parameters left out of the task identity
  std::string timeout = "0";         // a Go duration ("90s", "1h30m") or seconds; 0: none
  std::string digest;                // "sha256:<hex>" or "blake3:<hex>"
  std::string daemon_socket = kDefaultDaemonSocket;
  bool direct = false;       // never use the daemon
  bool progress = false;     // a progress line even when stderr is not a terminal
  bool no_progress = false;  // never a progress line
  bool quiet = false;        // neither progress nor summary (errors only)
};

struct GetResult {
  DownloadResult download;
  ByteSources sources;
  bool via_daemon = false;
  std::string task_id;  // the daemon's, when via_daemon
};

// Downloads as the flags say, writing the notice, progress and summary to `messages`.
absl::StatusOr<GetResult> RunGet(const GetFlags& flags, std::FILE* messages = stderr);

// A Go duration ("1h30m", "500ms", "2.5s") or a number of seconds ("30", "0.5").
absl::StatusOr<absl::Duration> ParseTimeout(std::string_view text);

}  // namespace naiad::get
