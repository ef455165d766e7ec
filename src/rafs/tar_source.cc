#include "rafs/tar_source.h"

#include <sys/stat.h>
#include <unistd.h>

#include "base/status_macros.h"
#include "tar/compression.h"

namespace naiad::rafs {
namespace {

uint32_t FileTypeBits(tar::EntryType type) {
  switch (type) {
    case tar::EntryType::kRegular:
    case tar::EntryType::kHardlink:
      return S_IFREG;
    case tar::EntryType::kDirectory:
      return S_IFDIR;
    case tar::EntryType::kSymlink:
      return S_IFLNK;
    case tar::EntryType::kCharDevice:
      return S_IFCHR;
    case tar::EntryType::kBlockDevice:
      return S_IFBLK;
    case tar::EntryType::kFifo:
      return S_IFIFO;
  }
  return S_IFREG;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TarSource>> TarSource::Open(const std::string& path,
                                                           const tar::ReaderOptions& options) {
  std::unique_ptr<tar::InputStream> stream;
  if (path == "-") {
    ASSIGN_OR_RETURN(stream, tar::OpenLayer(std::make_unique<tar::FileInputStream>(
                                 UniqueFd(::dup(0)), "stdin")));
  } else {
    ASSIGN_OR_RETURN(stream, tar::OpenLayer(path));
  }
  return FromStream(std::move(stream), options);
}

absl::StatusOr<std::unique_ptr<TarSource>> TarSource::FromStream(
    std::unique_ptr<tar::InputStream> stream, const tar::ReaderOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<tar::Reader> reader,
                   tar::Reader::Create(std::move(stream), options));
  return std::unique_ptr<TarSource>(new TarSource(std::move(reader)));
}

absl::StatusOr<std::optional<SourceEntry>> TarSource::Next() {
  ASSIGN_OR_RETURN(std::optional<tar::Entry> entry, reader_->Next());
  if (!entry) return std::nullopt;
  SourceEntry out;
  out.path = std::move(entry->path);
  out.mode = FileTypeBits(entry->type) | entry->mode;
  out.uid = entry->uid;
  out.gid = entry->gid;
  out.mtime = entry->mtime < 0 ? 0 : static_cast<uint64_t>(entry->mtime);
  out.mtime_nsec = entry->mtime_nsec;
  out.rdev_major = entry->dev_major;
  out.rdev_minor = entry->dev_minor;
  out.size = entry->size;
  out.xattrs = std::move(entry->xattrs);
  if (entry->type == tar::EntryType::kSymlink) out.symlink = std::move(entry->link_target);
  if (entry->type == tar::EntryType::kHardlink) out.hardlink_to = std::move(entry->link_target);
  return out;
}

absl::StatusOr<size_t> TarSource::Read(char* buf, size_t size) { return reader_->Read(buf, size); }

absl::StatusOr<bool> TarSource::SkipHole(uint64_t size) {
  if (size == 0 || reader_->HoleAhead() < size) return false;
  RETURN_IF_ERROR(reader_->SkipHole(size));
  return true;
}

}  // namespace naiad::rafs
