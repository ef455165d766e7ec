// File: get/downloader.h
//
// Downloads one URL to a file, the back-to-source path of `naiad get`: the body streams into a
// temporary file beside the output while it is hashed, and only a complete download whose digest
// matches (when one is given) is renamed into place. A failed or interrupted download leaves no
// output file behind.
//
//   DownloadOptions options{.url = url, .output = "/tmp/blob", .digest = want};
//   ASSIGN_OR_RETURN(DownloadResult result, Download(client, options));
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/digest.h"
#include "net/http_client.h"

namespace naiad::get {

struct DownloadProgress {
  uint64_t bytes = 0;
  std::optional<uint64_t> total;  // from Content-Length, when the server sent one
  absl::Duration elapsed;
};

struct DownloadOptions {
  std::string url;
  std::string output;
  net::HttpHeaders headers;
  // Verified over the whole body; a mismatch is DataLoss and no output is written.
  std::optional<Digest> digest;
  absl::Duration timeout = absl::ZeroDuration();
  // Called from the downloading thread as bytes arrive (at most every 100 ms, and at the end).
  std::function<void(const DownloadProgress&)> on_progress;
};

struct DownloadResult {
  uint64_t bytes = 0;
  Digest sha256;
  absl::Duration elapsed;
};

absl::StatusOr<DownloadResult> Download(net::HttpClient& client, const DownloadOptions& options);

}  // namespace naiad::get
