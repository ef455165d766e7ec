// naiad_bench_image_prepare: gets a cached test image for bench/image/run and describes it.
//
//   naiad_bench_image_prepare --recipe python
//   {"layout_dir": "...", "rootfs_dir": "...", "unpacked_bytes": 549160840, ...}
//
// Calls TestImages::Get(), which builds the image the first time (debootstrap, minutes; needs
// root) and afterwards reads it from /var/cache/naiad-test. Prints one JSON object on stdout;
// logs go to stderr. Exits 1 with the error on stderr if the image cannot be had.
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "nlohmann/json.hpp"
#include "test/testing/test_images.h"

namespace naiad::bench {
namespace {

int Main(int argc, char** argv) {
  CLI::App app{"Gets a cached test image for the image-format benchmark"};
  std::string recipe = "python";
  app.add_option("--recipe", recipe, "Test image recipe (base, python, node, ruby, golang)");
  CLI11_PARSE(app, argc, argv);

  absl::StatusOr<testing::TestImage> image = testing::TestImages::Get(recipe);
  if (!image.ok()) {
    std::fprintf(stderr, "naiad_bench_image_prepare: %s\n", image.status().ToString().c_str());
    return 1;
  }
  nlohmann::json layers = nlohmann::json::array();
  for (const testing::ImageLayer& layer : image->layers) {
    layers.push_back(
        {{"digest", layer.digest}, {"size", layer.size}, {"media_type", layer.media_type}});
  }
  nlohmann::json out = {{"name", image->name},
                        {"dir", image->dir},
                        {"layout_dir", image->layout_dir},
                        {"tag", image->tag},
                        {"rootfs_dir", image->rootfs_dir},
                        {"manifest_digest", image->manifest_digest},
                        {"unpacked_bytes", image->unpacked_bytes},
                        {"built", image->built},
                        {"build_seconds", image->build_seconds},
                        {"layers", layers}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

}  // namespace
}  // namespace naiad::bench

int main(int argc, char** argv) { return naiad::bench::Main(argc, argv); }
