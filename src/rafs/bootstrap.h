// File: rafs/bootstrap.h
//
// Reads a RAFS v6 bootstrap: the metadata of an image (tree, attributes, xattrs, and for each
// regular file the chunks that hold its data). This is the library the FUSE daemon, `naiad image
// check/inspect/unpack` and the merger use.
//
//   ASSIGN_OR_RETURN(auto boot, Bootstrap::Open("image.boot"));
//   ASSIGN_OR_RETURN(uint64_t nid, boot->Resolve("/usr/bin/python3"));
//   ASSIGN_OR_RETURN(Inode inode, boot->GetInode(nid));
//   ASSIGN_OR_RETURN(std::vector<ChunkRef> chunks, boot->FileChunks(nid));
//
// Open() validates the superblocks and tables; every later access checks its offsets against the
// bootstrap's size, so a corrupt bootstrap yields DataLoss errors, never a crash. A Bootstrap is
// immutable after Open() and safe to use from many threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "base/digest.h"
#include "base/file.h"
#include "rafs/layout.h"

namespace naiad::rafs {

struct Inode {
  uint64_t nid = 0;
  uint64_t ino = 0;
  uint32_t mode = 0;  // type and permission bits, as st_mode
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint64_t size = 0;
  uint64_t mtime = 0;  // compact inodes report the superblock build time
  uint32_t mtime_nsec = 0;
  uint32_t rdev = 0;  // device files: the new-style encoded dev_t from the inode
  DataLayout layout = DataLayout::kFlatPlain;
  uint32_t raw_u = 0;  // i_u as stored
  uint16_t xattr_icount = 0;
  uint32_t inode_size = 0;  // 32 (compact) or 64 (extended)

  bool is_dir() const;
  bool is_regular() const;
  bool is_symlink() const;
};

struct DirEntry {
  std::string name;
  uint64_t nid = 0;
  FileType type = FileType::kUnknown;
};

struct BlobInfo {
  uint32_t index = 0;
  std::string id;  // sha256 hex
  uint32_t chunk_size = 0;
  uint32_t chunk_count = 0;
  Compressor compressor = Compressor::kNone;
  DigestAlgorithm digester = DigestAlgorithm::kBlake3;
  uint32_t features = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint32_t toc_size = 0;
  Compressor ci_compressor = Compressor::kNone;
  uint64_t ci_offset = 0;
  uint64_t ci_compressed_size = 0;
  uint64_t ci_uncompressed_size = 0;
  std::string toc_digest_hex;
};

// One chunk of a regular file.
struct ChunkRef {
  uint64_t file_offset = 0;
  uint32_t blob_index = 0;
  uint32_t ci_index = 0;  // index in the blob's chunk-info array
  uint64_t compressed_offset = 0;
  uint32_t compressed_size = 0;
  uint64_t uncompressed_offset = 0;
  uint32_t uncompressed_size = 0;
  bool compressed = false;
  bool hole = false;  // no data: reads as zeros
  Digest digest;
};

class Bootstrap {
 public:
  // Maps and validates a bootstrap file.
  static absl::StatusOr<std::unique_ptr<Bootstrap>> Open(const std::string& path);
  // Validates a bootstrap held in memory (takes ownership of the bytes).
  static absl::StatusOr<std::unique_ptr<Bootstrap>> FromBytes(std::string bytes);

  const ErofsSuperblock& superblock() const { return sb_; }
  const RafsExtSuperblock& ext() const { return ext_; }
  uint64_t root_nid() const { return sb_.root_nid; }
  uint32_t chunk_size() const { return ext_.chunk_size; }
  Compressor compressor() const;
  DigestAlgorithm digester() const;
  const std::vector<BlobInfo>& blobs() const { return blobs_; }
  const std::vector<uint32_t>& prefetch_nids() const { return prefetch_nids_; }
  std::string_view bytes() const { return data_; }

  absl::StatusOr<Inode> GetInode(uint64_t nid) const;
  // Directory entries in on-disk order, including "." and "..".
  absl::StatusOr<std::vector<DirEntry>> ReadDir(uint64_t dir_nid) const;
  // Where the data of a directory or symlink lies in the bootstrap: [offset, offset + size).
  absl::StatusOr<std::pair<uint64_t, uint64_t>> DataExtent(uint64_t nid) const;
  // The entry named `name` in a directory; NotFound if there is none.
  absl::StatusOr<DirEntry> Lookup(uint64_t dir_nid, std::string_view name) const;
  // Walks an absolute path ("/a/b"); symlinks are not followed.
  absl::StatusOr<uint64_t> Resolve(std::string_view path) const;
  absl::StatusOr<std::string> ReadLink(uint64_t nid) const;
  // Extended attributes as (full name, value), in on-disk order.
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Xattrs(uint64_t nid) const;
  // The chunks of a regular file in file order, with the inode's single-index quirk expanded.
  absl::StatusOr<std::vector<ChunkRef>> FileChunks(uint64_t nid) const;
  // All records of the chunk-info table.
  std::vector<ChunkInfo> ChunkTable() const;
  // The distinct chunks of one blob that the chunk table references, by compressed offset
  // (file_offset is 0: a chunk may belong to many files). For prefetch and read amplification.
  std::vector<ChunkRef> BlobChunks(uint32_t blob_index) const;
  // BlobChunks() of every blob, by blob index, in one pass over the table.
  std::vector<std::vector<ChunkRef>> ChunksByBlob() const;

 private:
  explicit Bootstrap(std::string owned) : owned_(std::move(owned)), data_(owned_) {}
  explicit Bootstrap(MappedFile map) : map_(std::move(map)), data_(map_.data()) {}

  absl::Status Validate();
  absl::Status LoadBlobTable();
  absl::Status LoadChunkTable();
  absl::Status LoadPrefetchTable();
  // A bounds-checked view of [offset, offset + size) of the bootstrap.
  absl::StatusOr<std::string_view> Slice(uint64_t offset, uint64_t size,
                                         std::string_view what) const;
  uint64_t InodeOffset(uint64_t nid) const;
  // Inline data (directory blocks, symlink targets) of a non-chunked inode.
  absl::StatusOr<std::string_view> InodeData(const Inode& inode) const;
  uint64_t XattrAreaSize(const Inode& inode) const;
  ChunkRef RefFromInfo(const ChunkInfo& info) const;
  absl::StatusOr<std::vector<ChunkRef>> ExpandChunkIndex(const ChunkIndex& index,
                                                         uint64_t file_offset,
                                                         uint64_t length) const;

  std::string owned_;
  MappedFile map_;
  std::string_view data_;
  ErofsSuperblock sb_{};
  RafsExtSuperblock ext_{};
  std::vector<BlobInfo> blobs_;
  std::vector<uint32_t> prefetch_nids_;
  // (blob index, ci index) -> position in the chunk table.
  std::unordered_map<uint64_t, uint32_t> chunk_by_ci_;
};

// The directory data that a walk of a bootstrap's tree has listed so far. In a valid bootstrap
// every directory has entry blocks of its own. A crafted one can point thousands of directory
// inodes at one big block, so that a walker (check, unpack, merge, inspect) lists the same
// entries again for each of them: work and output quadratic in the bootstrap's size, while
// per-directory limits all hold. Walkers claim each directory before listing it, and a claim on
// bytes already claimed is DataLoss: every byte of directory data is then listed at most once
// per walk, and a walk's work is linear in the size of the bootstrap.
class DirectoryClaims {
 public:
  // `path` names the directory in the error.
  absl::Status Claim(const Bootstrap& boot, uint64_t dir_nid, std::string_view path);

 private:
  struct Claimed {
    uint64_t end;
    uint64_t nid;
  };
  std::map<uint64_t, Claimed> claimed_;  // by start offset; disjoint
};

// "drwxr-xr-x"-style type letter for a mode, and FileType from a mode.
FileType FileTypeFromMode(uint32_t mode);
// A chunk-table record as a ChunkRef (file_offset 0).
ChunkRef ChunkRefFromInfo(const ChunkInfo& info, DigestAlgorithm digester);

// The S_IFMT bits of a file type (0 for kUnknown).
uint32_t FileTypeToMode(FileType type);

}  // namespace naiad::rafs
