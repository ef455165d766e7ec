// `naiad image inspect`: one-shot queries on a bootstrap, as text or JSON.
#include <sys/stat.h>

#include <functional>
#include <unordered_set>

#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "image/image_command.h"
#include "rafs/bootstrap.h"
#include "rafs/compression.h"

namespace naiad::image {
namespace {

nlohmann::json SuperblockJson(const rafs::Bootstrap& boot) {
  const auto& sb = boot.superblock();
  return {{"magic", absl::StrFormat("0x%08x", sb.magic)},
          {"root_nid", sb.root_nid},
          {"inodes", sb.inos},
          {"meta_blkaddr", sb.meta_blkaddr},
          {"blocks", sb.blocks},
          {"build_time", sb.build_time},
          {"extra_devices", sb.extra_devices},
          {"flags", absl::StrFormat("0x%x", boot.ext().flags)},
          {"chunk_size", boot.chunk_size()},
          {"compressor", std::string(rafs::CompressorName(boot.compressor()))},
          {"digester", std::string(DigestAlgorithmName(boot.digester()))},
          {"bootstrap_size", boot.bytes().size()},
          {"prefetch_entries", boot.prefetch_nids().size()}};
}

nlohmann::json BlobsJson(const rafs::Bootstrap& boot) {
  nlohmann::json blobs = nlohmann::json::array();
  for (const rafs::BlobInfo& b : boot.blobs()) {
    blobs.push_back({{"index", b.index},
                     {"id", b.id},
                     {"chunks", b.chunk_count},
                     {"compressor", std::string(rafs::CompressorName(b.compressor))},
                     {"features", absl::StrFormat("0x%08x", b.features)},
                     {"compressed_size", b.compressed_size},
                     {"uncompressed_size", b.uncompressed_size},
                     {"ci_offset", b.ci_offset},
                     {"toc_digest", b.toc_digest_hex}});
  }
  return blobs;
}

nlohmann::json InodeJson(const rafs::Bootstrap& boot, const rafs::Inode& inode) {
  nlohmann::json j = {
      {"nid", inode.nid},   {"ino", inode.ino},     {"mode", absl::StrFormat("0%o", inode.mode)},
      {"uid", inode.uid},   {"gid", inode.gid},     {"nlink", inode.nlink},
      {"size", inode.size}, {"mtime", inode.mtime}, {"rdev", inode.rdev}};
  if (auto xattrs = boot.Xattrs(inode.nid); xattrs.ok() && !xattrs->empty()) {
    for (const auto& [k, v] : *xattrs) j["xattrs"][k] = v;
  }
  if (inode.is_symlink()) {
    if (auto target = boot.ReadLink(inode.nid); target.ok()) j["symlink"] = *target;
  }
  return j;
}

absl::StatusOr<nlohmann::json> ChunksJson(const rafs::Bootstrap& boot, uint64_t nid) {
  ASSIGN_OR_RETURN(std::vector<rafs::ChunkRef> chunks, boot.FileChunks(nid));
  nlohmann::json out = nlohmann::json::array();
  for (const rafs::ChunkRef& c : chunks) {
    out.push_back({{"file_offset", c.file_offset},
                   {"blob_index", c.blob_index},
                   {"index", c.ci_index},
                   {"compressed_offset", c.compressed_offset},
                   {"compressed_size", c.compressed_size},
                   {"uncompressed_offset", c.uncompressed_offset},
                   {"uncompressed_size", c.uncompressed_size},
                   {"compressed", c.compressed},
                   {"digest", c.digest.Hex()}});
  }
  return out;
}

absl::StatusOr<nlohmann::json> TreeJson(const rafs::Bootstrap& boot) {
  nlohmann::json out = nlohmann::json::array();
  std::unordered_set<uint64_t> dirs;  // directories visited
  rafs::DirectoryClaims claims;       // and the entry blocks they listed
  std::function<absl::Status(uint64_t, const std::string&, int)> walk =
      [&](uint64_t nid, const std::string& path, int depth) -> absl::Status {
    if (depth > 1024) return absl::DataLossError("directory nesting deeper than 1024");
    ASSIGN_OR_RETURN(rafs::Inode inode, boot.GetInode(nid));
    nlohmann::json j = InodeJson(boot, inode);
    j["path"] = path;
    out.push_back(std::move(j));
    if (!inode.is_dir()) return absl::OkStatus();
    // A directory listed twice (a DAG) would be walked once per path: 2^depth of them.
    if (!dirs.insert(nid).second) {
      return absl::DataLossError(
          StrCat("directory inode ", nid, " is reachable twice (at ", path, ")"));
    }
    RETURN_IF_ERROR(claims.Claim(boot, nid, path));
    ASSIGN_OR_RETURN(std::vector<rafs::DirEntry> entries, boot.ReadDir(nid));
    for (const rafs::DirEntry& e : entries) {
      if (e.name == "." || e.name == "..") continue;
      RETURN_IF_ERROR(walk(e.nid, path == "/" ? "/" + e.name : path + "/" + e.name, depth + 1));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(walk(boot.root_nid(), "/", 0));
  return out;
}

std::string TreeText(const nlohmann::json& tree) {
  std::string out;
  for (const auto& e : tree) {
    absl::StrAppendFormat(&out, "%-8s %5d %5d %12d  %s", e["mode"].get<std::string>(),
                          e["uid"].get<int>(), e["gid"].get<int>(), e["size"].get<uint64_t>(),
                          e["path"].get<std::string>());
    if (e.contains("symlink"))
      absl::StrAppendFormat(&out, " -> %s", e["symlink"].get<std::string>());
    out += "\n";
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> Inspect(const InspectFlags& flags) {
  ASSIGN_OR_RETURN(std::string bytes, LoadBootstrapBytes(flags.bootstrap));
  auto opened = rafs::Bootstrap::FromBytes(std::move(bytes));
  if (!opened.ok()) return Annotate(opened.status(), flags.bootstrap);
  const rafs::Bootstrap& boot = **opened;
  nlohmann::json result;
  const std::string& r = flags.request;
  if (r == "summary") {
    result = {{"superblock", SuperblockJson(boot)}, {"blobs", BlobsJson(boot)}};
  } else if (r == "superblock") {
    result = SuperblockJson(boot);
  } else if (r == "blobs") {
    result = BlobsJson(boot);
  } else if (r == "tree") {
    ASSIGN_OR_RETURN(result, TreeJson(boot));
    if (!flags.json) return TreeText(result);
  } else if (r == "stat" || r == "chunks") {
    ASSIGN_OR_RETURN(uint64_t nid, boot.Resolve(flags.path));
    ASSIGN_OR_RETURN(rafs::Inode inode, boot.GetInode(nid));
    if (r == "stat") {
      result = InodeJson(boot, inode);
    } else {
      ASSIGN_OR_RETURN(result, ChunksJson(boot, nid));
    }
  } else if (r == "prefetch") {
    result = boot.prefetch_nids();
  } else {
    return absl::InvalidArgumentError(StrCat(
        "--request ", r, ": expected summary, superblock, blobs, tree, stat, chunks or prefetch"));
  }
  return result.dump(2) + "\n";
}

}  // namespace naiad::image
