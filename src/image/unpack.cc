// `naiad image unpack`: bootstrap + blobs -> a tar layer. Whiteouts go back to their OCI form
// (".wh.<name>", ".wh..wh..opq"), so `create` of the output rebuilds the same image. Every chunk
// is verified against its digest on the way; the tar appears only once complete.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <unordered_set>

#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "image/image_command.h"
#include "rafs/bootstrap.h"
#include "rafs/chunk_reader.h"
#include "rafs/tree.h"
#include "tar/writer.h"

namespace naiad::image {
namespace {

tar::EntryType TypeOf(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return tar::EntryType::kDirectory;
    case S_IFLNK:
      return tar::EntryType::kSymlink;
    case S_IFCHR:
      return tar::EntryType::kCharDevice;
    case S_IFBLK:
      return tar::EntryType::kBlockDevice;
    case S_IFIFO:
      return tar::EntryType::kFifo;
    default:
      return tar::EntryType::kRegular;
  }
}

class Unpacker {
 public:
  Unpacker(const rafs::Bootstrap& boot, const rafs::LocalChunkReader& reader, tar::Writer& writer)
      : boot_(boot), reader_(reader), writer_(writer) {}

  absl::Status Run() { return Visit(boot_.root_nid(), "", 0); }
  uint64_t entries() const { return entries_; }
  uint64_t skipped_sockets() const { return sockets_; }

 private:
  absl::Status Visit(uint64_t nid, const std::string& path, int depth) {
    if (depth > 1024) return absl::DataLossError("directory nesting deeper than 1024");
    ASSIGN_OR_RETURN(rafs::Inode inode, boot_.GetInode(nid));
    if (S_ISSOCK(inode.mode)) {
      ++sockets_;  // tar cannot hold sockets; neither can OCI layers
      return absl::OkStatus();
    }
    tar::Entry entry = ToEntry(inode, path);
    ASSIGN_OR_RETURN(entry.xattrs, boot_.Xattrs(nid));
    bool opaque = std::erase_if(entry.xattrs,
                                [](const auto& x) { return x.first == rafs::kOpaqueXattr; }) > 0;
    if (inode.is_symlink()) {
      ASSIGN_OR_RETURN(entry.link_target, boot_.ReadLink(nid));
    }
    if (S_ISCHR(inode.mode) && inode.rdev == 0) return EmitWhiteout(path);
    if (inode.is_regular() && inode.nlink > 1) {
      auto [it, first] = first_path_.emplace(nid, path);
      if (!first) {
        entry.type = tar::EntryType::kHardlink;
        entry.size = 0;
        entry.link_target = it->second;
        entry.xattrs.clear();
      }
    }
    RETURN_IF_ERROR(writer_.Begin(entry));
    if (entry.type == tar::EntryType::kRegular && inode.size > 0) {
      RETURN_IF_ERROR(
          reader_.ReadFile(nid, [&](std::string_view data) { return writer_.Write(data); }));
    }
    RETURN_IF_ERROR(writer_.End());
    ++entries_;
    if (!inode.is_dir()) return absl::OkStatus();
    // A directory listed twice (a DAG) would be walked once per path: 2^depth of them.
    if (!dirs_.insert(nid).second) {
      return absl::DataLossError(
          StrCat("directory inode ", nid, " is reachable twice (at ", path, ")"));
    }
    // Nor may two directories list the same entries: each would emit all of them again.
    RETURN_IF_ERROR(claims_.Claim(boot_, nid, StrCat("/", path)));
    if (opaque) RETURN_IF_ERROR(EmitWhiteoutFile(Join(path, rafs::kOpaqueWhiteout)));
    ASSIGN_OR_RETURN(std::vector<rafs::DirEntry> children, boot_.ReadDir(nid));
    for (const rafs::DirEntry& e : children) {
      if (e.name == "." || e.name == "..") continue;
      RETURN_IF_ERROR(Visit(e.nid, Join(path, e.name), depth + 1));
    }
    return absl::OkStatus();
  }

  static std::string Join(const std::string& dir, std::string_view name) {
    return dir.empty() ? std::string(name) : StrCat(dir, "/", name);
  }

  static tar::Entry ToEntry(const rafs::Inode& inode, const std::string& path) {
    tar::Entry e;
    e.path = path;
    e.type = TypeOf(inode.mode);
    e.mode = inode.mode & 07777;
    e.uid = inode.uid;
    e.gid = inode.gid;
    e.size = inode.is_regular() ? inode.size : 0;
    e.mtime = static_cast<int64_t>(inode.mtime);
    e.mtime_nsec = inode.mtime_nsec;
    e.dev_major = (inode.rdev >> 8) & 0xfff;
    e.dev_minor = (inode.rdev & 0xff) | ((inode.rdev >> 12) & 0xfff00);
    return e;
  }

  absl::Status EmitWhiteout(const std::string& path) {
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "" : path.substr(0, slash);
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    return EmitWhiteoutFile(Join(dir, StrCat(rafs::kWhiteoutPrefix, name)));
  }

  absl::Status EmitWhiteoutFile(const std::string& path) {
    tar::Entry e;
    e.path = path;
    e.mode = 0644;
    RETURN_IF_ERROR(writer_.Begin(e));
    ++entries_;
    return writer_.End();
  }

  const rafs::Bootstrap& boot_;
  const rafs::LocalChunkReader& reader_;
  tar::Writer& writer_;
  std::map<uint64_t, std::string> first_path_;
  std::unordered_set<uint64_t> dirs_;  // directories visited
  rafs::DirectoryClaims claims_;
  uint64_t entries_ = 0;
  uint64_t sockets_ = 0;
};

}  // namespace

absl::StatusOr<nlohmann::json> Unpack(const UnpackFlags& flags) {
  if (flags.output.empty()) return absl::InvalidArgumentError("--output is required");
  ASSIGN_OR_RETURN(std::string bytes, LoadBootstrapBytes(flags.bootstrap));
  auto boot = rafs::Bootstrap::FromBytes(std::move(bytes));
  if (!boot.ok()) return Annotate(boot.status(), flags.bootstrap);
  rafs::BlobLocation location{.blob_dir = flags.blob_dir};
  if (!flags.blob.empty()) location.blob_files = {flags.blob};
  ASSIGN_OR_RETURN(auto reader, rafs::LocalChunkReader::Open(**boot, location));

  std::filesystem::path target(flags.output);
  std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  std::string temp = StrCat(dir, "/.", target.filename().string(), ".tmp-XXXXXX");
  int raw = ::mkstemp(temp.data());
  if (raw < 0) return ErrnoError(errno, StrCat("create ", temp));
  UniqueFd fd(raw);
  tar::Writer writer([&](std::string_view data) { return WriteFull(fd.get(), data); });
  Unpacker unpacker(**boot, *reader, writer);
  absl::Status status = unpacker.Run();
  if (status.ok()) status = writer.Finish();
  if (status.ok() && ::fsync(fd.get()) != 0) status = ErrnoError(errno, "fsync");
  fd.Reset();
  if (status.ok() && ::rename(temp.c_str(), flags.output.c_str()) != 0) {
    status = ErrnoError(errno, StrCat("rename to ", flags.output));
  }
  if (!status.ok()) {
    ::unlink(temp.c_str());
    return status;
  }
  return nlohmann::json{{"output", flags.output},
                        {"entries", unpacker.entries()},
                        {"bytes", writer.bytes_written()},
                        {"skipped_sockets", unpacker.skipped_sockets()}};
}

}  // namespace naiad::image
