#include "get/progress_bar.h"

#include <unistd.h>

#include "absl/strings/str_format.h"

namespace naiad::get {

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

std::string FormatProgress(const DownloadProgress& progress, std::string_view source) {
  double seconds = absl::ToDoubleSeconds(progress.elapsed);
  double rate = seconds > 0 ? static_cast<double>(progress.bytes) / seconds : 0;
  std::string line = FormatBytes(static_cast<double>(progress.bytes));
  if (progress.total && *progress.total > 0) {
    double fraction = static_cast<double>(progress.bytes) / static_cast<double>(*progress.total);
    absl::StrAppendFormat(&line, " / %s  %5.1f%%",
                          FormatBytes(static_cast<double>(*progress.total)), 100 * fraction);
  }
  absl::StrAppendFormat(&line, "  %s/s", FormatBytes(rate));
  if (progress.total && rate > 0 && *progress.total >= progress.bytes) {
    double eta = static_cast<double>(*progress.total - progress.bytes) / rate;
    absl::StrAppendFormat(&line, "  ETA %.0fs", eta);
  }
  absl::StrAppendFormat(&line, "  from %s", std::string(source));
  return line;
}

ProgressBar::ProgressBar(FILE* out, std::string source)
    : out_(out), source_(std::move(source)), terminal_(::isatty(::fileno(out)) != 0) {}

void ProgressBar::Update(const DownloadProgress& progress) {
  std::string line = FormatProgress(progress, source_);
  if (terminal_) {
    std::fprintf(out_, "\r\033[K%s", line.c_str());
    std::fflush(out_);
    return;
  }
  absl::Time now = absl::Now();
  if (now - last_line_ >= absl::Seconds(5)) {
    last_line_ = now;
    std::fprintf(out_, "%s\n", line.c_str());
  }
}

void ProgressBar::Finish() {
  if (terminal_) std::fprintf(out_, "\n");
}

}  // namespace naiad::get
