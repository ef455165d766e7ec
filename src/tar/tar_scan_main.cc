// tar_scan: reads a layer (tar, tar.gz or tar.zst) with naiad::tar::Reader the way
// `naiad image create` does, and prints what it found and how fast. For debugging layers and
// measuring reader throughput.
//
//   tar_scan [-v] LAYER...      # -v lists every entry
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "base/status_macros.h"
#include "tar/compression.h"
#include "tar/reader.h"

namespace naiad::tar {
namespace {

absl::Status Scan(const std::string& path, bool verbose) {
  const auto start = std::chrono::steady_clock::now();
  Compression compression = Compression::kNone;
  ASSIGN_OR_RETURN(auto layer, OpenLayer(path, &compression));
  ASSIGN_OR_RETURN(auto reader, Reader::Create(std::move(layer)));
  auto buffer = std::make_unique_for_overwrite<char[]>(size_t{1} << 20);
  uint64_t entries = 0;
  uint64_t content = 0;
  for (;;) {
    ASSIGN_OR_RETURN(std::optional<Entry> entry, reader->Next());
    if (!entry) break;
    ++entries;
    for (;;) {
      ASSIGN_OR_RETURN(size_t n, reader->Read(buffer.get(), size_t{1} << 20));
      if (n == 0) break;
      content += n;
    }
    if (verbose) {
      std::printf("%-12s %06o %u/%u %12llu %s%s%s\n",
                  std::string(EntryTypeName(entry->type)).c_str(), entry->mode, entry->uid,
                  entry->gid, static_cast<unsigned long long>(entry->size), entry->path.c_str(),
                  entry->link_target.empty() ? "" : " -> ", entry->link_target.c_str());
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double tar_mb = static_cast<double>(reader->offset()) / 1e6;
  std::printf("%s: %s, %llu entries, %.1f MB content, %.1f MB tar stream, %.2f s, %.0f MB/s\n",
              path.c_str(), std::string(CompressionName(compression)).c_str(),
              static_cast<unsigned long long>(entries), static_cast<double>(content) / 1e6, tar_mb,
              seconds, tar_mb / seconds);
  return absl::OkStatus();
}

}  // namespace
}  // namespace naiad::tar

int main(int argc, char** argv) {
  bool verbose = false;
  int failures = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "-v") == 0) {
      verbose = true;
      continue;
    }
    absl::Status status = naiad::tar::Scan(argv[i], verbose);
    if (!status.ok()) {
      std::fprintf(stderr, "%s: %s\n", argv[i], std::string(status.ToString()).c_str());
      ++failures;
    }
  }
  return failures == 0 ? 0 : 1;
}
