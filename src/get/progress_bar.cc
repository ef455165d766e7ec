#include "get/progress_bar.h"

#include "absl/strings/str_format.h"

namespace naiad::get {
namespace {

constexpr std::string_view kDot = " \u00b7 ";  // " · "

std::string Rate(uint64_t bytes, absl::Duration elapsed) {
  double seconds = absl::ToDoubleSeconds(elapsed);
  double rate = seconds > 0 ? static_cast<double>(bytes) / seconds : 0;
  return FormatBytes(rate) + "/s";
}

}  // namespace

std::string FormatBytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrFormat("%.0f B", bytes);
  return absl::StrFormat("%.1f %s", bytes, kUnits[unit]);
}

std::string FormatSources(const ByteSources& sources) {
  if (sources.direct) {
    return absl::StrFormat("origin %s (direct)", FormatBytes(static_cast<double>(sources.origin)));
  }
  return absl::StrFormat("origin %s%speers %s%slocal %s",
                         FormatBytes(static_cast<double>(sources.origin)), kDot,
                         FormatBytes(static_cast<double>(sources.peers)), kDot,
                         FormatBytes(static_cast<double>(sources.local)));
}

std::string FormatProgress(const DownloadProgress& progress, const ByteSources& sources) {
  double seconds = absl::ToDoubleSeconds(progress.elapsed);
  double rate = seconds > 0 ? static_cast<double>(progress.bytes) / seconds : 0;
  std::string line = FormatBytes(static_cast<double>(progress.bytes));
  if (progress.total && *progress.total > 0) {
    double fraction = static_cast<double>(progress.bytes) / static_cast<double>(*progress.total);
    absl::StrAppendFormat(&line, " / %s  %5.1f%%",
                          FormatBytes(static_cast<double>(*progress.total)), 100 * fraction);
  }
  absl::StrAppendFormat(&line, "  %s", Rate(progress.bytes, progress.elapsed));
  if (progress.total && rate > 0 && *progress.total >= progress.bytes) {
    double eta = static_cast<double>(*progress.total - progress.bytes) / rate;
    absl::StrAppendFormat(&line, "  ETA %.0fs", eta);
  }
  absl::StrAppendFormat(&line, "  %s", FormatSources(sources));
  return line;
}

std::string FormatSummary(std::string_view output, const DownloadResult& result,
                          const ByteSources& sources) {
  return absl::StrFormat("%s: %s in %s (%s); %s", std::string(output),
                         FormatBytes(static_cast<double>(result.bytes)),
                         absl::FormatDuration(absl::Trunc(result.elapsed, absl::Milliseconds(1))),
                         Rate(result.bytes, result.elapsed), FormatSources(sources));
}

ProgressBar::ProgressBar(FILE* out, bool redraw) : out_(out), redraw_(redraw) {}

void ProgressBar::Update(const DownloadProgress& progress, const ByteSources& sources) {
  std::string line = FormatProgress(progress, sources);
  if (redraw_) {
    std::fprintf(out_, "\r\033[K%s", line.c_str());
    std::fflush(out_);
    drawn_ = true;
    return;
  }
  absl::Time now = absl::Now();
  if (now - last_line_ >= absl::Seconds(5)) {
    last_line_ = now;
    std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
  }
}

void ProgressBar::Finish() {
  if (redraw_ && drawn_) {
    std::fprintf(out_, "\r\033[K");
    std::fflush(out_);
  }
}

}  // namespace naiad::get
