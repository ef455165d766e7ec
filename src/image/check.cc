// `naiad image check`: validates a bootstrap's structure and every chunk reference, and with
// blobs, every chunk's bytes against its digest. The first problem found is the error, named
// precisely (which inode, which chunk, which limit).
#include <sys/stat.h>

#include <map>
#include <set>
#include <unordered_set>

#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "image/image_command.h"
#include "rafs/bootstrap.h"
#include "rafs/chunk_reader.h"

namespace naiad::image {
namespace {

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(StrCat("corrupt bootstrap: ", what));
}

struct Counts {
  uint64_t dirs = 0, files = 0, symlinks = 0, others = 0, chunks = 0, bytes = 0;
};

class Checker {
 public:
  explicit Checker(const rafs::Bootstrap& boot) : boot_(boot) {}

  absl::Status Run() {
    RETURN_IF_ERROR(CheckDir(boot_.root_nid(), boot_.root_nid(), "/"));
    for (uint32_t nid : boot_.prefetch_nids()) {
      if (!visited_.contains(nid))
        return Corrupt(StrCat("prefetch table names inode ", nid, ", which is not in the tree"));
    }
    return absl::OkStatus();
  }

  const Counts& counts() const { return counts_; }
  const std::set<std::pair<uint32_t, uint32_t>>& chunks() const { return chunk_keys_; }
  const std::vector<rafs::ChunkRef>& unique_chunks() const { return unique_chunks_; }

 private:
  absl::Status CheckDir(uint64_t nid, uint64_t parent, const std::string& path) {
    if (!dirs_.insert(nid).second)
      return Corrupt(StrCat("directory ", path, " (inode ", nid, ") is linked twice"));
    if (dirs_.size() > 10'000'000) return Corrupt("more than 10 million directories");
    RETURN_IF_ERROR(claims_.Claim(boot_, nid, path));
    ++counts_.dirs;
    visited_.insert(nid);
    ASSIGN_OR_RETURN(std::vector<rafs::DirEntry> entries, boot_.ReadDir(nid));
    std::string previous;
    bool has_dot = false, has_dotdot = false;
    for (size_t i = 0; i < entries.size(); ++i) {
      const rafs::DirEntry& e = entries[i];
      if (i > 0 && e.name <= previous)
        return Corrupt(StrCat("directory ", path, ": names not sorted at \"", e.name, "\""));
      previous = e.name;
      if (e.name.find('/') != std::string::npos)
        return Corrupt(StrCat("directory ", path, ": a name contains '/'"));
      if (e.name == ".") {
        has_dot = true;
        if (e.nid != nid)
          return Corrupt(StrCat("directory ", path, ": \".\" points to inode ", e.nid));
        continue;
      }
      if (e.name == "..") {
        has_dotdot = true;
        if (e.nid != parent)
          return Corrupt(StrCat("directory ", path, ": \"..\" points to inode ", e.nid));
        continue;
      }
      RETURN_IF_ERROR(CheckEntry(e, nid, path == "/" ? "/" + e.name : path + "/" + e.name));
    }
    if (!has_dot || !has_dotdot)
      return Corrupt(StrCat("directory ", path, " lacks \".\" or \"..\""));
    return absl::OkStatus();
  }

  absl::Status CheckEntry(const rafs::DirEntry& e, uint64_t dir, const std::string& path) {
    ASSIGN_OR_RETURN(rafs::Inode inode, boot_.GetInode(e.nid));
    if (rafs::FileTypeFromMode(inode.mode) != e.type) {
      return Corrupt(StrCat(path, ": directory entry type ", static_cast<int>(e.type),
                            " disagrees with inode mode 0", absl::Hex(inode.mode)));
    }
    RETURN_IF_ERROR(boot_.Xattrs(e.nid).status());
    if (inode.is_dir()) return CheckDir(e.nid, dir, path);
    bool first_visit = visited_.insert(e.nid).second;
    if (inode.is_symlink()) {
      ASSIGN_OR_RETURN(std::string target, boot_.ReadLink(e.nid));
      if (target.empty()) return Corrupt(StrCat(path, ": empty symlink target"));
      counts_.symlinks += first_visit;
      return absl::OkStatus();
    }
    if (!inode.is_regular()) {
      counts_.others += first_visit;
      return absl::OkStatus();
    }
    if (!first_visit) return absl::OkStatus();
    ++counts_.files;
    counts_.bytes += inode.size;
    return CheckChunks(e.nid, inode, path);
  }

  absl::Status CheckChunks(uint64_t nid, const rafs::Inode& inode, const std::string& path) {
    ASSIGN_OR_RETURN(std::vector<rafs::ChunkRef> chunks, boot_.FileChunks(nid));
    uint64_t covered = 0;
    for (const rafs::ChunkRef& c : chunks) {
      ++counts_.chunks;
      if (c.file_offset != covered)
        return Corrupt(
            StrCat(path, ": chunk at file offset ", c.file_offset, ", expected ", covered));
      covered += c.uncompressed_size;
      if (c.hole) continue;
      const rafs::BlobInfo& blob = boot_.blobs()[c.blob_index];
      if (c.ci_index >= blob.chunk_count) {
        return Corrupt(StrCat(path, ": chunk ", c.ci_index, " beyond blob ", blob.index, "'s ",
                              blob.chunk_count, " chunks"));
      }
      if (c.uncompressed_size == 0 || c.uncompressed_size > boot_.chunk_size()) {
        return Corrupt(
            StrCat(path, ": chunk ", c.ci_index, " has uncompressed size ", c.uncompressed_size));
      }
      if (c.uncompressed_offset + c.uncompressed_size > blob.uncompressed_size) {
        return Corrupt(StrCat(path, ": chunk ", c.ci_index, " ends past blob ", blob.index,
                              "'s uncompressed size"));
      }
      if (blob.compressed_size > 0 &&
          c.compressed_offset + c.compressed_size > blob.compressed_size) {
        return Corrupt(StrCat(path, ": chunk ", c.ci_index, " ends past blob ", blob.index,
                              "'s size ", blob.compressed_size));
      }
      if (!c.compressed && c.compressed_size != c.uncompressed_size) {
        return Corrupt(
            StrCat(path, ": uncompressed chunk ", c.ci_index, " has two different sizes"));
      }
      if (chunk_keys_.emplace(c.blob_index, c.ci_index).second) unique_chunks_.push_back(c);
    }
    if (covered < inode.size || covered - inode.size >= boot_.chunk_size()) {
      return Corrupt(StrCat(path, ": chunks cover ", covered, " bytes, the file has ", inode.size));
    }
    return absl::OkStatus();
  }

  const rafs::Bootstrap& boot_;
  std::unordered_set<uint64_t> dirs_;
  rafs::DirectoryClaims claims_;  // no two directories list the same entries
  std::unordered_set<uint64_t> visited_;
  std::set<std::pair<uint32_t, uint32_t>> chunk_keys_;
  std::vector<rafs::ChunkRef> unique_chunks_;
  Counts counts_;
};

}  // namespace

absl::StatusOr<nlohmann::json> Check(const CheckFlags& flags) {
  ASSIGN_OR_RETURN(std::string bytes, LoadBootstrapBytes(flags.bootstrap));
  auto boot = rafs::Bootstrap::FromBytes(std::move(bytes));
  if (!boot.ok()) return Annotate(boot.status(), flags.bootstrap);
  Checker checker(**boot);
  RETURN_IF_ERROR(Annotate(checker.Run(), flags.bootstrap));
  nlohmann::json report = {{"version", "naiad-image"}, {"bootstrap", flags.bootstrap}};
  const Counts& c = checker.counts();
  report["inodes"] = (*boot)->superblock().inos;
  report["directories"] = c.dirs;
  report["files"] = c.files;
  report["symlinks"] = c.symlinks;
  report["other"] = c.others;
  report["bytes"] = c.bytes;
  report["chunks"] = c.chunks;
  report["distinct_chunks"] = checker.chunks().size();
  report["blobs"] = nlohmann::json::array();
  for (const rafs::BlobInfo& blob : (*boot)->blobs()) {
    report["blobs"].push_back({{"id", blob.id},
                               {"chunks", blob.chunk_count},
                               {"compressed_size", blob.compressed_size},
                               {"uncompressed_size", blob.uncompressed_size}});
  }
  if (!flags.blob_dir.empty() || !flags.blobs.empty()) {
    ASSIGN_OR_RETURN(auto reader,
                     rafs::LocalChunkReader::Open(**boot, {flags.blob_dir, flags.blobs}));
    for (const rafs::ChunkRef& chunk : checker.unique_chunks()) {
      RETURN_IF_ERROR(reader->Read(chunk).status());
    }
    report["verified_chunks"] = checker.unique_chunks().size();
  }
  if (!flags.output_json.empty())
    RETURN_IF_ERROR(WriteFileAtomically(flags.output_json, report.dump(2) + "\n"));
  return report;
}

}  // namespace naiad::image
