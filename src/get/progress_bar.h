// File: get/progress_bar.h
//
// What `naiad get` prints on stderr: a progress line (bytes, rate, ETA and where the bytes came
// from) while it downloads, and a summary line at the end.
//
//   ProgressBar bar(stderr, /*redraw=*/isatty(STDERR_FILENO));
//   options.on_progress = [&](const DownloadProgress& p) { bar.Update(p, SourcesNow(p)); };
//   ...
//   bar.Finish();
//   fprintf(stderr, "%s\n", FormatSummary(output, result, sources).c_str());
//
// On a terminal the bar redraws one line; otherwise it prints a line at most every few seconds,
// so logs of CI jobs stay short. Not thread-safe: one thread updates it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "get/downloader.h"

namespace naiad::get {

// Where a download's bytes came from.
struct ByteSources {
  uint64_t origin = 0;  // fetched from the origin (by the peer daemon, or by us when direct)
  uint64_t peers = 0;   // fetched by the peer daemon from other peers
  uint64_t local = 0;   // already in the peer daemon's store
  bool direct = false;  // downloaded by `naiad get` itself, not through a peer daemon

  friend bool operator==(const ByteSources&, const ByteSources&) = default;
};

// "origin 3.0 MiB · peers 1.0 MiB · local 0 B"; a direct download: "origin 3.0 MiB (direct)".
std::string FormatSources(const ByteSources& sources);

// "48.0 MiB / 256.0 MiB  18.7%  12.0 MiB/s  ETA 17s  origin 40.0 MiB · peers 8.0 MiB · local 0 B"
std::string FormatProgress(const DownloadProgress& progress, const ByteSources& sources);

// "blob: 256.0 MiB in 3.2s (80.0 MiB/s); origin 256.0 MiB · peers 0 B · local 0 B"
std::string FormatSummary(std::string_view output, const DownloadResult& result,
                          const ByteSources& sources);

// "1.5 GiB", "12.0 MiB", "512 B".
std::string FormatBytes(double bytes);

class ProgressBar {
 public:
  // `redraw`: `out` is a terminal; the line is redrawn in place.
  ProgressBar(FILE* out, bool redraw);
  void Update(const DownloadProgress& progress, const ByteSources& sources);
  // Ends the line (when redrawing).
  void Finish();

 private:
  FILE* out_;
  bool redraw_;
  bool drawn_ = false;
  absl::Time last_line_ = absl::InfinitePast();
};

}  // namespace naiad::get
