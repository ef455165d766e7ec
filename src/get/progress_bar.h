// File: get/progress_bar.h
//
// The progress line of `naiad get`: bytes, rate, ETA and where the bytes came from. On a
// terminal it redraws one line; otherwise it prints a line at most every few seconds, so logs of
// CI jobs stay short.
#pragma once

#include <cstdio>
#include <string>

#include "get/downloader.h"

namespace naiad::get {

// Renders "  48.0 MiB / 256.0 MiB  18.7%  12.0 MiB/s  ETA 17s  from origin".
std::string FormatProgress(const DownloadProgress& progress, std::string_view source);

// "1.5 GiB", "12.0 MiB", "512 B".
std::string FormatBytes(double bytes);

class ProgressBar {
 public:
  ProgressBar(FILE* out, std::string source);
  void Update(const DownloadProgress& progress);
  // Ends the line (on a terminal).
  void Finish();

 private:
  FILE* out_;
  std::string source_;
  bool terminal_;
  absl::Time last_line_ = absl::InfinitePast();
};

}  // namespace naiad::get
