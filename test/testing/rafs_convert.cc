#include "test/testing/rafs_convert.h"

#include <fcntl.h>

#include "absl/strings/str_join.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "test/testing/test_env.h"

namespace naiad::testing {

absl::StatusOr<nlohmann::json> RunJsonCommand(const std::vector<std::string>& argv) {
  ASSIGN_OR_RETURN(std::string out, RunCommandOk(argv, {.timeout = absl::Minutes(20)}));
  size_t brace = out.find('{');
  if (brace == std::string::npos) {
    return absl::InternalError(StrCat("no JSON from ", CommandLineForDisplay(argv)));
  }
  nlohmann::json json = nlohmann::json::parse(out.substr(brace), nullptr, false);
  if (json.is_discarded()) {
    return absl::InternalError(StrCat("bad JSON from ", CommandLineForDisplay(argv)));
  }
  return json;
}

absl::StatusOr<RafsImage> ConvertToRafs(const TestImage& image, const std::string& work_dir,
                                        std::string naiad) {
  if (naiad.empty()) naiad = BuildPath("apps/naiad/naiad");
  RafsImage rafs;
  std::string blobs = StrCat(work_dir, "/blobs");
  RETURN_IF_ERROR(CreateDirectories(blobs));
  std::vector<std::string> layer_boots;
  for (size_t i = 0; i < image.layers.size(); ++i) {
    std::string source =
        StrCat(image.layout_dir, "/blobs/sha256/", image.layers[i].digest.substr(7));
    std::string boot = StrCat(work_dir, "/layer", i, ".boot");
    ASSIGN_OR_RETURN(
        nlohmann::json out,
        RunJsonCommand({naiad, "image", "create", source, "-t", "targz-rafs", "-D", blobs,
                        "--blob-inline-meta", "--features", "blob-toc", "-B", boot}));
    std::string blob_path = out["blob_path"];
    ASSIGN_OR_RETURN(Digest digest, Digest::Sha256OfFile(blob_path));
    rafs.blob_paths.push_back(blob_path);
    rafs.blob_digests.push_back(digest.ToString());
    rafs.blob_sizes.push_back(out["blob_size"].get<uint64_t>());
    rafs.layer_reports.push_back(std::move(out));
    layer_boots.push_back(boot);
  }
  rafs.bootstrap = StrCat(work_dir, "/image.boot");
  std::vector<std::string> merge = {naiad,
                                    "image",
                                    "merge",
                                    "-B",
                                    rafs.bootstrap,
                                    "--blob-digests",
                                    absl::StrJoin(rafs.blob_digests, ",")};
  merge.insert(merge.end(), layer_boots.begin(), layer_boots.end());
  RETURN_IF_ERROR(RunJsonCommand(merge).status());
  return rafs;
}

absl::StatusOr<std::unique_ptr<ConvertedTestImage>> ConvertTestImage(std::string_view recipe,
                                                                     std::string_view dir_prefix) {
  auto converted = std::make_unique<ConvertedTestImage>();
  ASSIGN_OR_RETURN(converted->image, TestImages::Get(std::string(recipe)));
  ASSIGN_OR_RETURN(converted->dir, CreateOwnedTempDir(dir_prefix));
  ASSIGN_OR_RETURN(converted->rafs, ConvertToRafs(converted->image, converted->dir.path()));
  for (uint64_t size : converted->rafs.blob_sizes) converted->blob_bytes += size;
  return converted;
}

}  // namespace naiad::testing
