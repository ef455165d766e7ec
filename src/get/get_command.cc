// `naiad get URL -O FILE` (alias dfget): through the local peer daemon, or from the origin.
#include "get/get_command.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "cli/command.h"
#include "piece/piece_store.h"

namespace naiad::get {
namespace {

// The daemon counts a piece's bytes just after it hands the piece to readers; this is how long
// the final count may lag behind the last byte we received.
constexpr int kFinalTrafficPolls = 10;
constexpr absl::Duration kFinalTrafficPollInterval = absl::Milliseconds(20);

absl::Status ValidateUrl(const std::string& url) {
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = std::string_view(url).substr(7);
  } else if (url.starts_with("https://")) {
    rest = std::string_view(url).substr(8);
  } else {
    return absl::InvalidArgumentError(StrCat("URL \"", url, "\": expected http:// or https://"));
  }
  std::string_view host = rest.substr(0, rest.find_first_of("/?#"));
  if (host.empty()) return absl::InvalidArgumentError(StrCat("URL \"", url, "\": no host"));
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      return absl::InvalidArgumentError(
          StrCat("URL \"", url, "\": spaces and control characters must be percent-encoded"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> SplitFilter(const std::string& filter) {
  return absl::StrSplit(ToAbsl(filter), '&', absl::SkipEmpty());
}

absl::StatusOr<DownloadOptions> ToOptions(const GetFlags& flags) {
  RETURN_IF_ERROR(ValidateUrl(flags.url));
  if (flags.output.empty()) return absl::InvalidArgumentError("-O/--output: no file named");
  DownloadOptions options{.url = flags.url, .output = flags.output};
  for (const std::string& header : flags.headers) {
    size_t colon = header.find(':');
    if (colon == std::string::npos || colon == 0) {
      return absl::InvalidArgumentError(
          StrCat("--header \"", header, "\": expected \"Name: value\""));
    }
    std::string_view value = std::string_view(header).substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    absl::Status added = options.headers.Add(header.substr(0, colon), value);
    if (!added.ok()) return absl::InvalidArgumentError(StrCat("--header: ", added.message()));
  }
  if (flags.filter.find_first_of("\r\n") != std::string::npos) {
    return absl::InvalidArgumentError("--filter: must not contain CR or LF");
  }
  absl::StatusOr<absl::Duration> timeout = ParseTimeout(flags.timeout);
  if (!timeout.ok()) {
    return absl::InvalidArgumentError(StrCat("--timeout ", timeout.status().message()));
  }
  options.timeout = *timeout;
  if (!flags.digest.empty()) {
    absl::StatusOr<Digest> digest = Digest::Parse(flags.digest);
    if (!digest.ok()) {
      return absl::InvalidArgumentError(StrCat("--digest: ", digest.status().message()));
    }
    options.digest = *digest;
  }
  return options;
}

// Downloads through the daemon, tracking where the bytes come from.
class DaemonDownload {
 public:
  DaemonDownload(DaemonClient& daemon, const GetFlags& flags, ProgressBar* bar)
      : daemon_(daemon), flags_(flags), bar_(bar) {}

  absl::StatusOr<GetResult> Run(DownloadOptions options) {
    // The daemon's counters are per task and cumulative: read them before we start, so that an
    // earlier download of the same task is not counted as ours. (The daemon may also leave
    // query parameters of its own out of the identity; then the ids differ and the baseline is
    // unknown.)
    expected_task_id_ = piece::TaskIdForUrl(options.url, SplitFilter(flags_.filter));
    if (absl::StatusOr<TaskTraffic> traffic = daemon_.Traffic(expected_task_id_); traffic.ok()) {
      baseline_ = *traffic;
    }
    options.via = StrCat("the peer daemon at ", daemon_.socket_path());
    options.on_response = [this](const net::HttpResponse& response) { OnResponse(response); };
    options.on_error = [this, url = options.url](const net::HttpResponse& response) {
      return daemon_.DownloadError(url, response);
    };
    if (bar_ != nullptr) {
      options.on_progress = [this](const DownloadProgress& progress) {
        std::optional<TaskTraffic> now = poller_ != nullptr ? poller_->latest() : std::nullopt;
        bar_->Update(progress, SourcesAt(progress.bytes, now));
      };
    }
    net::HttpRequest request = daemon_.DownloadRequest(options.url, options.headers, flags_.filter);
    absl::StatusOr<DownloadResult> download = Download(daemon_.http(), std::move(request), options);
    std::optional<TaskTraffic> last = poller_ != nullptr ? poller_->latest() : std::nullopt;
    poller_.reset();
    RETURN_IF_ERROR(download.status());
    return GetResult{.download = *download,
                     .sources = FinalSources(download->bytes, last),
                     .via_daemon = true,
                     .task_id = task_id_};
  }

 private:
  void OnResponse(const net::HttpResponse& response) {
    task_id_ = response.headers.Get("X-Dragonfly-Task-ID").value_or("");
    complete_ = response.headers.Get("X-Dragonfly-Task-Download-Finished") == "true";
    if (bar_ != nullptr && !complete_ && piece::IsValidTaskId(task_id_)) {
      poller_ = std::make_unique<TrafficPoller>(daemon_, task_id_);
    }
  }

  TaskTraffic Baseline() const {
    return task_id_ == expected_task_id_ ? baseline_.value_or(TaskTraffic{}) : TaskTraffic{};
  }

  ByteSources SourcesAt(uint64_t received, const std::optional<TaskTraffic>& now) const {
    if (complete_) return {.local = received};  // the task was in the daemon's store
    return SourcesFromTraffic(received, now.value_or(Baseline()), Baseline());
  }

  ByteSources FinalSources(uint64_t received, std::optional<TaskTraffic> last) {
    if (complete_ || !piece::IsValidTaskId(task_id_)) return SourcesAt(received, last);
    for (int i = 0; i < kFinalTrafficPolls; ++i) {
      if (i > 0) absl::SleepFor(kFinalTrafficPollInterval);
      absl::StatusOr<TaskTraffic> traffic = daemon_.Traffic(task_id_);
      if (!traffic.ok()) break;
      last = *traffic;
      ByteSources sources = SourcesAt(received, last);
      if (sources.local == 0) break;  // every byte accounted for as fetched
    }
    return SourcesAt(received, last);
  }

  DaemonClient& daemon_;
  const GetFlags& flags_;
  ProgressBar* const bar_;
  std::string expected_task_id_;
  std::optional<TaskTraffic> baseline_;
  // Set from the response's headers (on this thread, inside Download()).
  std::string task_id_;
  bool complete_ = false;
  std::unique_ptr<TrafficPoller> poller_;
};

absl::StatusOr<GetResult> DownloadDirectly(DownloadOptions options, ProgressBar* bar) {
  if (bar != nullptr) {
    options.on_progress = [bar](const DownloadProgress& progress) {
      bar->Update(progress, {.origin = progress.bytes, .direct = true});
    };
  }
  net::HttpClient client;
  ASSIGN_OR_RETURN(DownloadResult download, Download(client, options));
  return GetResult{.download = download, .sources = {.origin = download.bytes, .direct = true}};
}

int Main(int argc, char** argv) {
  CLI::App app("Download a URL to a file through the local peer daemon (verifying --digest).",
               "naiad get");
  GetFlags flags;
  app.add_option("url", flags.url, "URL to download (http or https)")->required();
  app.add_option("-O,--output", flags.output, "Destination file")->required();
  app.add_option("-H,--header", flags.headers,
                 "Request header \"Name: value\" for the origin (repeatable)");
  app.add_option("-f,--filter", flags.filter,
                 "Query parameters left out of the task identity, '&'-separated");
  app.add_option("-e,--timeout", flags.timeout,
                 "Whole-download timeout: a duration (90s, 1h30m) or seconds; 0: none");
  app.add_option("--digest", flags.digest, "Expected digest, sha256:<hex> or blake3:<hex>");
  app.add_option("--daemon-socket,--daemon-sock", flags.daemon_socket,
                 "The local peer daemon's socket (download.unixSocket)")
      ->capture_default_str();
  app.add_flag("--direct", flags.direct, "Download from the origin, never through the daemon");
  app.add_flag("-b,--progress,--show-progress", flags.progress,
               "Show progress even when stderr is not a terminal");
  app.add_flag("--no-progress", flags.no_progress, "Never show progress");
  app.add_flag("-q,--quiet", flags.quiet, "Neither progress nor summary; errors only");
  CLI11_PARSE(app, argc, argv);
  return cli::ExitCode("get", RunGet(flags).status());
}

NAIAD_REGISTER_COMMAND("get", "download a URL through the local peer daemon, verifying it (dfget)",
                       Main, "dfget");

}  // namespace

absl::StatusOr<absl::Duration> ParseTimeout(std::string_view text) {
  std::string trimmed(absl::StripAsciiWhitespace(ToAbsl(text)));
  absl::Duration duration;
  double seconds = 0;
  if (absl::SimpleAtod(trimmed, &seconds) && std::isfinite(seconds)) {
    duration = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(absl::StrReplaceAll(trimmed, {{"\u00b5s", "us"}}), &duration)) {
    return absl::InvalidArgumentError(
        StrCat("\"", text, "\": expected a duration such as 30s, 5m or 1h30m, or seconds"));
  }
  if (duration < absl::ZeroDuration() || duration == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(StrCat("\"", text, "\": must be finite and not negative"));
  }
  return duration;
}

absl::StatusOr<GetResult> RunGet(const GetFlags& flags, std::FILE* messages) {
  ASSIGN_OR_RETURN(DownloadOptions options, ToOptions(flags));
  bool terminal = ::isatty(::fileno(messages)) != 0;
  std::optional<ProgressBar> bar;
  if (!flags.quiet && !flags.no_progress && (terminal || flags.progress)) {
    bar.emplace(messages, terminal);
  }
  ProgressBar* bar_or_null = bar.has_value() ? &*bar : nullptr;

  std::optional<DaemonClient> daemon;
  if (!flags.direct) {
    daemon.emplace(flags.daemon_socket);
    absl::Status reachable = daemon->Connectable();
    if (!reachable.ok()) {
      // Only an absent or dead daemon means "download it yourself"; a daemon that answers with
      // an error is an error.
      if (absl::IsNotFound(reachable) || absl::IsUnavailable(reachable)) {
        std::fprintf(messages, "naiad get: no peer daemon at %s; downloading from the origin\n",
                     flags.daemon_socket.c_str());
      } else {
        std::fprintf(messages,
                     "naiad get: cannot use the peer daemon at %s (%s); downloading from the "
                     "origin\n",
                     flags.daemon_socket.c_str(), std::string(reachable.message()).c_str());
      }
      daemon.reset();
    }
  }
  absl::StatusOr<GetResult> result =
      daemon.has_value() ? DaemonDownload(*daemon, flags, bar_or_null).Run(std::move(options))
                         : DownloadDirectly(std::move(options), bar_or_null);
  if (bar.has_value()) bar->Finish();
  RETURN_IF_ERROR(result.status());
  if (!flags.quiet) {
    std::fprintf(messages, "%s\n",
                 FormatSummary(flags.output, result->download, result->sources).c_str());
  }
  std::fflush(messages);
  return result;
}

}  // namespace naiad::get
