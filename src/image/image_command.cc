// The `naiad image` command line (alias `nydus-image`), flag for flag with upstream nydus-image
// where it has one.
#include "image/image_command.h"

#include <cstdio>
#include <iostream>

#include "CLI/CLI.hpp"
#include "base/strings.h"
#include "cli/command.h"

namespace naiad::image {
namespace {

int Report(std::string_view sub, const absl::StatusOr<nlohmann::json>& result) {
  if (result.ok()) std::cout << result->dump(2) << "\n";
  return cli::ExitCode(StrCat("image ", sub), result.status());
}

void AddCreate(CLI::App& app, CreateFlags& f, std::function<int()>& run) {
  CLI::App* c =
      app.add_subcommand("create", "Build a RAFS v6 image (blob + bootstrap) from a layer");
  c->add_option("SOURCE", f.source, "Layer tar (plain, gzip, zstd; - for stdin) or directory")
      ->required();
  c->add_option("-t,--type", f.type, "dir-rafs, tar-rafs or targz-rafs (default: by SOURCE)");
  c->add_option("-B,--bootstrap", f.bootstrap, "Write the bootstrap here");
  c->add_option("-b,--blob", f.blob, "Write the data blob here");
  c->add_option("-D,--blob-dir", f.blob_dir,
                "Write the data blob into this directory, named by its id");
  c->add_option("-v,--fs-version", f.fs_version, "RAFS version (only 6)");
  c->add_option("--compressor", f.compressor, "zstd, lz4_block or none");
  c->add_option("--compression-level", f.compression_level,
                "zstd level for chunk data, 1 (fastest) to 19 (smallest); default 3, as upstream")
      ->capture_default_str();
  c->add_option("--chunk-size", f.chunk_size, "Power of two, 0x1000..0x1000000");
  c->add_option("--digester", f.digester, "blake3 or sha256");
  c->add_option("--chunk-dict", f.chunk_dict,
                "bootstrap=<path>: reuse the chunks of an earlier image");
  c->add_flag("--blob-inline-meta,--inline-bootstrap", f.blob_inline_meta,
              "Embed the bootstrap in the blob");
  c->add_option("--features", f.features, "blob-toc (always on)")->delimiter(',');
  c->add_option("--prefetch-policy", f.prefetch_policy, "fs: prefetch list on stdin; none");
  c->add_option("--whiteout-spec", f.whiteout_spec, "oci, overlayfs or none");
  c->add_option("-J,--output-json", f.output_json, "Write a JSON report here");
  c->add_option("--threads", f.threads, "Hashing/compression threads (default: all cores)");
  c->add_flag("--strip-leading-slash", f.strip_leading_slash,
              "Accept absolute paths in tar layers");
  c->callback([&] { run = [&] { return Report("create", Create(f)); }; });
}

void AddMerge(CLI::App& app, MergeFlags& f, std::function<int()>& run) {
  CLI::App* c = app.add_subcommand("merge", "Merge layer bootstraps (bottom first) into one image");
  c->add_option("SOURCE", f.sources, "Layer bootstraps, or blobs with inline bootstraps")
      ->required();
  c->add_option("-B,--bootstrap", f.bootstrap, "Write the merged bootstrap here")->required();
  c->add_option("--blob-digests", f.blob_digests, "Layer digests (comma separated): the blob ids");
  c->add_option("--blob-sizes", f.blob_sizes, "Blob sizes (comma separated)");
  c->add_option("--blob-toc-digests", f.blob_toc_digests, "TOC digests (comma separated)");
  c->add_option("--blob-toc-sizes", f.blob_toc_sizes, "TOC sizes (comma separated)");
  c->add_option("--prefetch-policy", f.prefetch_policy, "fs or none");
  c->add_option("-J,--output-json", f.output_json, "Write a JSON report here");
  c->callback([&] { run = [&] { return Report("merge", Merge(f)); }; });
}

void AddCheck(CLI::App& app, CheckFlags& f, std::function<int()>& run) {
  CLI::App* c = app.add_subcommand("check", "Validate a bootstrap, and with blobs every chunk");
  c->add_option("BOOTSTRAP", f.bootstrap, "Bootstrap (or blob with inline bootstrap)")->required();
  c->add_option("-D,--blob-dir", f.blob_dir, "Directory of blobs named by id");
  c->add_option("-b,--blob", f.blobs, "Blob files in blob-table order");
  c->add_option("-J,--output-json", f.output_json, "Write a JSON report here");
  c->add_flag("-v,--verbose", f.verbose, "More output");
  c->callback([&] { run = [&] { return Report("check", Check(f)); }; });
}

void AddInspect(CLI::App& app, InspectFlags& f, std::function<int()>& run) {
  CLI::App* c =
      app.add_subcommand("inspect", "Show a bootstrap's superblock, blobs, tree, inodes, chunks");
  c->add_option("BOOTSTRAP", f.bootstrap, "Bootstrap (or blob with inline bootstrap)")->required();
  c->add_option("-R,--request", f.request,
                "summary, superblock, blobs, tree, stat, chunks, prefetch");
  c->add_option("-p,--path", f.path, "Path for stat and chunks");
  c->add_flag("--json", f.json, "JSON output for tree");
  c->callback([&] {
    run = [&] {
      absl::StatusOr<std::string> out = Inspect(f);
      if (out.ok()) std::cout << *out;
      return cli::ExitCode("image inspect", out.status());
    };
  });
}

void AddUnpack(CLI::App& app, UnpackFlags& f, std::function<int()>& run) {
  CLI::App* c = app.add_subcommand("unpack", "Turn an image back into a tar layer");
  c->add_option("BOOTSTRAP", f.bootstrap, "Bootstrap (or blob with inline bootstrap)")->required();
  c->add_option("-o,--output", f.output, "Tar file to write")->required();
  c->add_option("-b,--blob", f.blob, "The blob (single-blob images)");
  c->add_option("-D,--blob-dir", f.blob_dir, "Directory of blobs named by id");
  c->callback([&] { run = [&] { return Report("unpack", Unpack(f)); }; });
}

int Main(int argc, char** argv) {
  CLI::App app("Build and read RAFS v6 (Nydus) images.", "naiad image");
  app.require_subcommand(1);
  CreateFlags create;
  MergeFlags merge;
  CheckFlags check;
  InspectFlags inspect;
  UnpackFlags unpack;
  std::function<int()> run;
  AddCreate(app, create, run);
  AddMerge(app, merge, run);
  AddCheck(app, check, run);
  AddInspect(app, inspect, run);
  AddUnpack(app, unpack, run);
  CLI11_PARSE(app, argc, argv);
  return run ? run() : 2;
}

NAIAD_REGISTER_COMMAND("image",
                       "build, merge, check, inspect and unpack RAFS v6 images (nydus-image)", Main,
                       "nydus-image");

}  // namespace
}  // namespace naiad::image
