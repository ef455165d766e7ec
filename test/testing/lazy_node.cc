#include "test/testing/lazy_node.h"

#include <sys/mount.h>

#include <filesystem>
#include <set>

#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "base/test_files.h"
#include "cache/chunk_map.h"
#include "piece/piece_store.h"
#include "rafs/bootstrap.h"

namespace naiad::testing {

absl::StatusOr<nlohmann::json> SeedNydusdConfig(const SeedConfigFill& fill) {
  const std::string path = SourcePath("src/fs/testdata/seed-nydusd-config.json");
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return absl::DataLossError(StrCat(path, " is not JSON"));
  nlohmann::json& backend = config["device"]["backend"]["config"];
  backend["host"] = fill.registry;
  backend["repo"] = fill.repo;
  backend["scheme"] = "http";
  for (nlohmann::json& mirror : backend["mirrors"]) {
    mirror["headers"]["X-Dragonfly-Registry"] = StrCat("http://", fill.registry);
  }
  config["device"]["cache"]["config"]["work_dir"] = fill.work_dir;
  if (!fill.fs_prefetch) config["fs_prefetch"]["enable"] = false;
  return config;
}

absl::StatusOr<std::unique_ptr<LazyNode>> LazyNode::Start(LazyNodeOptions options) {
  std::unique_ptr<LazyNode> node(new LazyNode());
  ASSIGN_OR_RETURN(node->mount_, FsMount::Start({.config = std::move(options.config),
                                                 .bootstrap = options.bootstrap,
                                                 .netns_path = options.netns_path,
                                                 .naiad = options.naiad,
                                                 .log_level = options.log_level}));
  for (const char* sub : {"/upper", "/work", "/merged"}) {
    RETURN_IF_ERROR(CreateDirectories(options.dir + sub));
  }
  std::string merged = options.dir + "/merged";
  std::string overlay = StrCat("lowerdir=", node->mount_->mountpoint(), ",upperdir=", options.dir,
                               "/upper,workdir=", options.dir, "/work");
  if (::mount("overlay", merged.c_str(), "overlay", 0, overlay.c_str()) != 0) {
    return ErrnoError(errno, StrCat("mount overlay on ", node->mount_->mountpoint()));
  }
  node->merged_ = merged;
  return node;
}

LazyNode::~LazyNode() { Stop().IgnoreError(); }

absl::StatusOr<std::string> LazyNode::Run(const std::vector<std::string>& argv) {
  if (merged_.empty()) return absl::FailedPreconditionError("the node is stopped");
  std::vector<std::string> chroot = {"chroot", merged_};
  chroot.insert(chroot.end(), argv.begin(), argv.end());
  return RunCommandOk(chroot);
}

absl::StatusOr<LazyNode::Sources> LazyNode::BackendSources() const {
  ASSIGN_OR_RETURN(nlohmann::json backend, mount_->Api("/api/v1/metrics/backend"));
  Sources sources;
  for (const nlohmann::json& source : backend["sources"]) {
    const std::string name = source.value("source", "");
    const uint64_t bytes = source.value("bytes", uint64_t{0});
    (name.starts_with("mirror:") ? sources.mirror : sources.origin) += bytes;
  }
  return sources;
}

absl::Status LazyNode::Stop() {
  absl::Status status;
  if (!merged_.empty()) {
    if (::umount2(merged_.c_str(), MNT_DETACH) != 0) {
      status.Update(ErrnoError(errno, StrCat("umount ", merged_)));
    }
    merged_.clear();
  }
  if (mount_ != nullptr && mount_->running()) status.Update(mount_->Stop());
  return status;
}

absl::StatusOr<ChunkUnion> UnionOfCachedChunks(const std::string& bootstrap,
                                               const std::vector<std::string>& cache_dirs,
                                               uint64_t piece_size_override) {
  ASSIGN_OR_RETURN(std::unique_ptr<rafs::Bootstrap> boot, rafs::Bootstrap::Open(bootstrap));
  const std::vector<std::vector<rafs::ChunkRef>> by_blob = boot->ChunksByBlob();
  ChunkUnion result;
  for (const rafs::BlobInfo& blob : boot->blobs()) {
    if (blob.chunk_count == 0) continue;
    std::vector<bool> held(blob.chunk_count, false);
    for (const std::string& dir : cache_dirs) {
      const std::string path = StrCat(dir, "/", blob.id, ".blob.data.chunk_map");
      if (!std::filesystem::exists(path)) continue;
      ASSIGN_OR_RETURN(std::unique_ptr<cache::ChunkMap> map,
                       cache::ChunkMap::Open(path, blob.chunk_count));
      for (uint32_t i = 0; i < blob.chunk_count; ++i) held[i] = held[i] || map->IsReady(i);
    }
    const uint64_t piece_size =
        piece_size_override != 0 ? piece_size_override : piece::PieceSizeFor(blob.compressed_size);
    std::set<uint64_t> pieces;
    for (const rafs::ChunkRef& chunk : by_blob[blob.index]) {
      // ChunksByBlob lists each chunk once, however many files use it.
      if (chunk.hole || chunk.ci_index >= held.size() || !held[chunk.ci_index]) continue;
      ++result.chunks;
      result.chunk_bytes += chunk.compressed_size;
      const uint64_t end = chunk.compressed_offset + chunk.compressed_size;
      for (uint64_t p = chunk.compressed_offset / piece_size; p * piece_size < end; ++p) {
        pieces.insert(p);
      }
    }
    for (uint64_t p : pieces) {
      result.piece_bytes += std::min(piece_size, blob.compressed_size - p * piece_size);
    }
  }
  return result;
}

}  // namespace naiad::testing
