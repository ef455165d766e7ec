// `naiad get URL -O FILE`: downloads a URL, with dfget's flags. This is the back-to-source path;
// the swarm path (through the local peer and the scheduler) plugs in here (issue 5).
#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "cli/command.h"
#include "get/downloader.h"
#include "get/progress_bar.h"

namespace naiad::get {
namespace {

struct GetFlags {
  std::string url;
  std::string output;
  std::vector<std::string> headers;
  std::string filter;
  std::string timeout = "0s";
  std::string digest;
  bool quiet = false;
};

absl::StatusOr<DownloadOptions> ToOptions(const GetFlags& flags) {
  DownloadOptions options{.url = flags.url, .output = flags.output};
  for (const std::string& header : flags.headers) {
    size_t colon = header.find(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(
          StrCat("--header \"", header, "\": expected \"Name: value\""));
    }
    std::string_view value = std::string_view(header).substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    RETURN_IF_ERROR(options.headers.Add(header.substr(0, colon), value));
  }
  if (!absl::ParseDuration(flags.timeout, &options.timeout)) {
    return absl::InvalidArgumentError(
        StrCat("--timeout \"", flags.timeout, "\": expected a duration such as 30s or 5m"));
  }
  if (!flags.digest.empty()) {
    ASSIGN_OR_RETURN(options.digest, Digest::Parse(flags.digest));
  }
  return options;
}

absl::Status RunGet(const GetFlags& flags) {
  ASSIGN_OR_RETURN(DownloadOptions options, ToOptions(flags));
  ProgressBar bar(stderr, "origin");
  if (!flags.quiet) options.on_progress = [&](const DownloadProgress& p) { bar.Update(p); };
  net::HttpClient client;
  absl::StatusOr<DownloadResult> result = Download(client, options);
  if (!flags.quiet) bar.Finish();
  RETURN_IF_ERROR(result.status());
  if (!flags.quiet) {
    std::fprintf(stderr, "%s: %s in %s (%s from origin)\n", flags.output.c_str(),
                 FormatBytes(static_cast<double>(result->bytes)).c_str(),
                 absl::FormatDuration(absl::Trunc(result->elapsed, absl::Milliseconds(1))).c_str(),
                 FormatBytes(static_cast<double>(result->bytes)).c_str());
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  CLI::App app("Download a URL to a file (verifying --digest when given).", "naiad get");
  GetFlags flags;
  app.add_option("url", flags.url, "URL to download")->required();
  app.add_option("-O,--output", flags.output, "Destination file")->required();
  app.add_option("-H,--header", flags.headers, "Request header \"Name: value\" (repeatable)");
  app.add_option("-f,--filter", flags.filter,
                 "Query parameters left out of the task identity, '&'-separated");
  app.add_option("-e,--timeout", flags.timeout, "Whole-download timeout (0s: none)");
  app.add_option("--digest", flags.digest, "Expected digest, sha256:<hex> or blake3:<hex>");
  app.add_flag("-q,--quiet", flags.quiet, "No progress output");
  CLI11_PARSE(app, argc, argv);
  return cli::ExitCode("get", RunGet(flags));
}

NAIAD_REGISTER_COMMAND("get", "download a URL to a file, verifying its digest (dfget)", Main,
                       "dfget");

}  // namespace
}  // namespace naiad::get
