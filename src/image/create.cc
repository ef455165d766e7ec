#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "image/image_command.h"
#include "rafs/builder.h"
#include "rafs/compression.h"
#include "rafs/tar_source.h"

namespace naiad::image {
namespace {

absl::StatusOr<std::unique_ptr<rafs::EntrySource>> OpenSource(const CreateFlags& flags) {
  std::string type = flags.type;
  struct stat st;
  bool is_dir =
      flags.source != "-" && ::stat(flags.source.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  if (type.empty()) type = is_dir ? "dir-rafs" : "tar-rafs";
  if (type == "dir-rafs") {
    return rafs::DirectorySource::Create(flags.source);
  }
  if (type == "tar-rafs" || type == "targz-rafs") {
    // The compression is sniffed, so either type accepts tar, tar.gz and tar.zst.
    return rafs::TarSource::Open(flags.source, {.strip_leading_slash = flags.strip_leading_slash});
  }
  return absl::InvalidArgumentError(
      StrCat("--type ", type, ": supported are dir-rafs, tar-rafs and targz-rafs"));
}

absl::StatusOr<std::vector<std::string>> ReadPrefetchList() {
  std::vector<std::string> paths;
  std::string line;
  while (std::getline(std::cin, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) continue;
    if (line.front() != '/') {
      return absl::InvalidArgumentError(
          StrCat("prefetch list: \"", line, "\" is not an absolute path"));
    }
    paths.push_back(line);
  }
  return paths;
}

absl::Status ValidateFlags(const CreateFlags& flags) {
  if (flags.fs_version != "6") {
    return absl::InvalidArgumentError(
        StrCat("--fs-version ", flags.fs_version, ": only RAFS v6 is built"));
  }
  if (flags.blob.empty() == flags.blob_dir.empty()) {
    return absl::InvalidArgumentError("give exactly one of --blob and --blob-dir");
  }
  if (flags.bootstrap.empty() && !flags.blob_inline_meta) {
    return absl::InvalidArgumentError("--bootstrap is required unless --blob-inline-meta is given");
  }
  for (const std::string& feature : flags.features) {
    if (feature != "blob-toc")
      return absl::InvalidArgumentError(StrCat("--features ", feature, ": unknown"));
  }
  if (flags.whiteout_spec != "oci" && flags.whiteout_spec != "overlayfs" &&
      flags.whiteout_spec != "none") {
    return absl::InvalidArgumentError(
        StrCat("--whiteout-spec ", flags.whiteout_spec, ": expected oci, overlayfs or none"));
  }
  if (flags.prefetch_policy != "none" && flags.prefetch_policy != "fs") {
    return absl::InvalidArgumentError(
        StrCat("--prefetch-policy ", flags.prefetch_policy, ": expected fs or none"));
  }
  return absl::OkStatus();
}

absl::StatusOr<rafs::LayerBuildOptions> ToOptions(const CreateFlags& flags) {
  rafs::LayerBuildOptions options;
  ASSIGN_OR_RETURN(uint64_t chunk_size, ParseSize(flags.chunk_size));
  RETURN_IF_ERROR(rafs::ValidateChunkSize(chunk_size));
  options.chunk_size = static_cast<uint32_t>(chunk_size);
  ASSIGN_OR_RETURN(options.compressor, rafs::ParseCompressor(flags.compressor));
  RETURN_IF_ERROR(
      Annotate(rafs::ValidateCompressionLevel(flags.compression_level), "--compression-level"));
  options.compression_level = flags.compression_level;
  ASSIGN_OR_RETURN(options.digester, ParseDigestAlgorithm(flags.digester));
  options.threads = flags.threads > 0
                        ? flags.threads
                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.blob_path = flags.blob;
  options.blob_dir = flags.blob_dir;
  options.inline_bootstrap = flags.blob_inline_meta;
  options.convert_oci_whiteouts = flags.whiteout_spec == "oci";
  for (const std::string& dict : flags.chunk_dict) {
    options.chunk_dicts.push_back(dict.starts_with("bootstrap=") ? dict.substr(10) : dict);
  }
  if (flags.prefetch_policy == "fs") {
    ASSIGN_OR_RETURN(options.prefetch_paths, ReadPrefetchList());
  }
  return options;
}

}  // namespace

absl::StatusOr<uint64_t> ParseSize(const std::string& text) {
  uint64_t value = 0;
  bool ok = text.starts_with("0x") || text.starts_with("0X")
                ? absl::SimpleHexAtoi(ToAbsl(std::string_view(text).substr(2)), &value)
                : absl::SimpleAtoi(ToAbsl(text), &value);
  if (!ok)
    return absl::InvalidArgumentError(StrCat("\"", text, "\" is not a size (decimal or 0x hex)"));
  return value;
}

// A build allocates and frees a chunk-sized buffer or two per chunk, on four threads (reader,
// two workers, writer). With glibc's defaults, big buffers go back to the kernel (mmap, heap
// trimming) and come back as fresh zeroed pages, page-faulted on every reuse: that was a third of
// the build's system time. And each thread's arena keeps what it freed to itself, so the
// bootstrap, built at the end by the main thread, could not reuse what the data phase freed. One
// arena that keeps freed memory fixes both; the pipeline's window bounds what is live at once.
void TuneMallocForBuilds() {
  static const bool kTuned = [] {
    ::mallopt(M_ARENA_MAX, 1);
    ::mallopt(M_MMAP_THRESHOLD, 64 << 20);
    ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
    return true;
  }();
  (void)kTuned;
}

absl::StatusOr<nlohmann::json> Create(const CreateFlags& flags) {
  RETURN_IF_ERROR(ValidateFlags(flags));
  TuneMallocForBuilds();
  ASSIGN_OR_RETURN(rafs::LayerBuildOptions options, ToOptions(flags));
  ASSIGN_OR_RETURN(std::unique_ptr<rafs::EntrySource> source, OpenSource(flags));
  absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(rafs::LayerBuildResult result, rafs::BuildLayer(*source, options));
  if (!flags.bootstrap.empty())
    RETURN_IF_ERROR(WriteFileAtomically(flags.bootstrap, result.bootstrap));
  nlohmann::json out = {{"version", "naiad-image"},
                        {"bootstrap", flags.bootstrap},
                        {"blobs", nlohmann::json::array()},
                        {"stats",
                         {{"files", result.stats.files},
                          {"bytes", result.stats.bytes_in},
                          {"chunks", result.stats.chunks},
                          {"chunks_stored", result.stats.chunks_stored},
                          {"chunks_deduplicated", result.stats.chunks_deduplicated},
                          {"chunks_from_dict", result.stats.chunks_from_dict},
                          {"hole_chunks", result.stats.hole_chunks},
                          {"seconds", absl::ToDoubleSeconds(absl::Now() - start)}}}};
  if (result.blob) {
    out["blobs"].push_back(result.blob->id);
    out["blob_path"] = result.blob_path;
    out["blob_size"] = result.blob->compressed_size;
  }
  if (!flags.output_json.empty())
    RETURN_IF_ERROR(WriteFileAtomically(flags.output_json, out.dump(2) + "\n"));
  return out;
}

}  // namespace naiad::image
