#include "rafs/chunk_reader.h"

#include <fcntl.h>

#include "base/status_macros.h"
#include "base/strings.h"
#include "rafs/compression.h"

namespace naiad::rafs {

absl::StatusOr<std::unique_ptr<LocalChunkReader>> LocalChunkReader::Open(
    const Bootstrap& boot, const BlobLocation& location) {
  std::vector<UniqueFd> fds;
  for (const BlobInfo& blob : boot.blobs()) {
    std::string path;
    if (blob.index < location.blob_files.size()) {
      path = location.blob_files[blob.index];
    } else if (!location.blob_dir.empty()) {
      path = StrCat(location.blob_dir, "/", blob.id);
    } else {
      return absl::InvalidArgumentError(
          StrCat("no file given for blob ", blob.index, " (", blob.id, ")"));
    }
    ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(path, O_RDONLY));
    fds.push_back(std::move(fd));
  }
  return std::unique_ptr<LocalChunkReader>(new LocalChunkReader(boot, std::move(fds)));
}

absl::StatusOr<std::string> LocalChunkReader::Read(const ChunkRef& chunk) const {
  if (chunk.hole) return std::string(chunk.uncompressed_size, '\0');
  if (chunk.blob_index >= fds_.size())
    return absl::DataLossError(StrCat("chunk names blob ", chunk.blob_index));
  std::string raw(chunk.compressed_size, '\0');
  RETURN_IF_ERROR(Annotate(
      PreadFull(fds_[chunk.blob_index].get(), raw, chunk.compressed_offset),
      StrCat("reading chunk ", chunk.ci_index, " of blob ", boot_.blobs()[chunk.blob_index].id)));
  Compressor compressor =
      chunk.compressed ? boot_.blobs()[chunk.blob_index].compressor : Compressor::kNone;
  ASSIGN_OR_RETURN(std::string data, Decompress(compressor, raw, chunk.uncompressed_size));
  if (Digest::Of(chunk.digest.algorithm, data) != chunk.digest) {
    return absl::DataLossError(StrCat(
        "chunk ", chunk.ci_index, " of blob ", boot_.blobs()[chunk.blob_index].id, " at offset ",
        chunk.compressed_offset, " does not match its digest ", chunk.digest.ToString()));
  }
  return data;
}

absl::Status LocalChunkReader::ReadFile(
    uint64_t nid, const std::function<absl::Status(std::string_view)>& sink) const {
  ASSIGN_OR_RETURN(Inode inode, boot_.GetInode(nid));
  ASSIGN_OR_RETURN(std::vector<ChunkRef> chunks, boot_.FileChunks(nid));
  uint64_t done = 0;
  for (const ChunkRef& chunk : chunks) {
    ASSIGN_OR_RETURN(std::string data, Read(chunk));
    uint64_t take = std::min<uint64_t>(data.size(), inode.size - done);
    RETURN_IF_ERROR(sink(std::string_view(data).substr(0, take)));
    done += take;
  }
  if (done != inode.size) {
    return absl::DataLossError(
        StrCat("inode ", nid, ": chunks hold ", done, " bytes, size is ", inode.size));
  }
  return absl::OkStatus();
}

}  // namespace naiad::rafs
