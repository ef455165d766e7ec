#include "rafs/bootstrap.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <tuple>

#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::rafs {
namespace {

constexpr uint32_t kNullBlkaddr = 0xFFFFFFFF;

template <typename T>
T Load(std::string_view bytes, uint64_t offset = 0) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(StrCat("corrupt bootstrap: ", what));
}

bool IsPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

uint64_t AlignUp(uint64_t x, uint64_t alignment) {
  return (x + alignment - 1) / alignment * alignment;
}

std::string FixedString(const char* data, size_t size) {
  return std::string(data, strnlen(data, size));
}

absl::StatusOr<std::string> XattrPrefixName(uint8_t index) {
  switch (static_cast<XattrPrefix>(index)) {
    case XattrPrefix::kNone:
      return std::string();
    case XattrPrefix::kUser:
      return std::string("user.");
    case XattrPrefix::kPosixAclAccess:
      return std::string("system.posix_acl_access");
    case XattrPrefix::kPosixAclDefault:
      return std::string("system.posix_acl_default");
    case XattrPrefix::kTrusted:
      return std::string("trusted.");
    case XattrPrefix::kLustre:
      return std::string("lustre.");
    case XattrPrefix::kSecurity:
      return std::string("security.");
  }
  return Corrupt(StrCat("unknown xattr name index ", index));
}

}  // namespace

bool Inode::is_dir() const { return S_ISDIR(mode); }
bool Inode::is_regular() const { return S_ISREG(mode); }
bool Inode::is_symlink() const { return S_ISLNK(mode); }

uint32_t FileTypeToMode(FileType type) {
  switch (type) {
    case FileType::kRegular:
      return S_IFREG;
    case FileType::kDirectory:
      return S_IFDIR;
    case FileType::kCharDevice:
      return S_IFCHR;
    case FileType::kBlockDevice:
      return S_IFBLK;
    case FileType::kFifo:
      return S_IFIFO;
    case FileType::kSocket:
      return S_IFSOCK;
    case FileType::kSymlink:
      return S_IFLNK;
    default:
      return 0;
  }
}

FileType FileTypeFromMode(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return FileType::kRegular;
    case S_IFDIR:
      return FileType::kDirectory;
    case S_IFCHR:
      return FileType::kCharDevice;
    case S_IFBLK:
      return FileType::kBlockDevice;
    case S_IFIFO:
      return FileType::kFifo;
    case S_IFSOCK:
      return FileType::kSocket;
    case S_IFLNK:
      return FileType::kSymlink;
    default:
      return FileType::kUnknown;
  }
}

absl::StatusOr<std::unique_ptr<Bootstrap>> Bootstrap::Open(const std::string& path) {
  ASSIGN_OR_RETURN(MappedFile map, MappedFile::Open(path));
  std::unique_ptr<Bootstrap> boot(new Bootstrap(std::move(map)));
  RETURN_IF_ERROR(Annotate(boot->Validate(), path));
  return boot;
}

absl::StatusOr<std::unique_ptr<Bootstrap>> Bootstrap::FromBytes(std::string bytes) {
  std::unique_ptr<Bootstrap> boot(new Bootstrap(std::move(bytes)));
  RETURN_IF_ERROR(boot->Validate());
  return boot;
}

absl::StatusOr<std::string_view> Bootstrap::Slice(uint64_t offset, uint64_t size,
                                                  std::string_view what) const {
  if (offset > data_.size() || size > data_.size() - offset) {
    return Corrupt(StrCat(what, " [", offset, ", +", size, ") is outside the bootstrap (",
                          data_.size(), " bytes)"));
  }
  return data_.substr(offset, size);
}

absl::Status Bootstrap::Validate() {
  if (data_.size() < kDeviceTableOffset) {
    return Corrupt(StrCat("only ", data_.size(), " bytes, too small for the superblocks"));
  }
  sb_ = Load<ErofsSuperblock>(data_, kSuperblockOffset);
  ext_ = Load<RafsExtSuperblock>(data_, kExtSuperblockOffset);
  if (sb_.magic != kErofsMagic) return Corrupt(StrCat("bad EROFS magic 0x", absl::Hex(sb_.magic)));
  if ((sb_.feature_compat & kFeatureCompatRafsV6) == 0) {
    return Corrupt("not a RAFS v6 image (feature_compat lacks the RAFS v6 bit)");
  }
  if (sb_.blkszbits != kBlockSizeBits) {
    return absl::UnimplementedError(
        StrCat("block size 2^", sb_.blkszbits, " (tarfs mode) is not supported"));
  }
  if ((sb_.feature_incompat & ~kRafsV6Incompat) != 0) {
    return Corrupt(StrCat("unknown incompatible features 0x", absl::Hex(sb_.feature_incompat)));
  }
  if (sb_.extra_devices > kMaxBlobs)
    return Corrupt(StrCat(sb_.extra_devices, " blobs, at most 254"));
  if (!IsPowerOfTwo(ext_.chunk_size) || ext_.chunk_size < kMinChunkSize ||
      ext_.chunk_size > kMaxChunkSize) {
    return Corrupt(
        StrCat("chunk size ", ext_.chunk_size, " is not a power of two in [4 KiB, 16 MiB]"));
  }
  if (std::popcount(ext_.flags & kFlagCompressionMask) != 1) return Corrupt("compression flags");
  if (std::popcount(ext_.flags & kFlagHashMask) != 1) return Corrupt("digest flags");
  if (uint64_t{sb_.meta_blkaddr} * kBlockSize >= data_.size())
    return Corrupt("meta_blkaddr beyond end");
  RETURN_IF_ERROR(LoadBlobTable());
  RETURN_IF_ERROR(LoadChunkTable());
  RETURN_IF_ERROR(LoadPrefetchTable());
  ASSIGN_OR_RETURN(Inode root, GetInode(sb_.root_nid));
  if (!root.is_dir()) return Corrupt("root inode is not a directory");
  return absl::OkStatus();
}

absl::Status Bootstrap::LoadBlobTable() {
  if (ext_.blob_table_size % sizeof(BlobTableEntry) != 0) return Corrupt("blob table size");
  ASSIGN_OR_RETURN(std::string_view table,
                   Slice(ext_.blob_table_offset, ext_.blob_table_size, "blob table"));
  uint32_t count = ext_.blob_table_size / sizeof(BlobTableEntry);
  if (count != sb_.extra_devices) {
    return Corrupt(
        StrCat("blob table has ", count, " entries, superblock says ", sb_.extra_devices));
  }
  for (uint32_t i = 0; i < count; ++i) {
    auto entry = Load<BlobTableEntry>(table, uint64_t{i} * sizeof(BlobTableEntry));
    BlobInfo blob;
    blob.index = i;
    blob.id = FixedString(entry.blob_id, sizeof(entry.blob_id));
    if (blob.id.size() != 64) return Corrupt(StrCat("blob ", i, " id is not 64 hex digits"));
    if (entry.blob_index != i)
      return Corrupt(StrCat("blob ", i, " says it is blob ", entry.blob_index));
    if (entry.compressor > 3 || entry.ci_compressor > 3)
      return Corrupt(StrCat("blob ", i, " compressor"));
    if (entry.digester > 1) return Corrupt(StrCat("blob ", i, " digester"));
    blob.chunk_size = entry.chunk_size;
    blob.chunk_count = entry.chunk_count;
    blob.compressor = static_cast<Compressor>(entry.compressor);
    blob.digester = entry.digester == 0 ? DigestAlgorithm::kBlake3 : DigestAlgorithm::kSha256;
    blob.features = entry.features;
    blob.compressed_size = entry.compressed_size;
    blob.uncompressed_size = entry.uncompressed_size;
    blob.toc_size = entry.toc_size;
    blob.ci_compressor = static_cast<Compressor>(entry.ci_compressor);
    blob.ci_offset = entry.ci_offset;
    blob.ci_compressed_size = entry.ci_compressed_size;
    blob.ci_uncompressed_size = entry.ci_uncompressed_size;
    blob.toc_digest_hex =
        HexEncode(std::string_view(reinterpret_cast<const char*>(entry.toc_digest), 32));
    blobs_.push_back(std::move(blob));
  }
  return absl::OkStatus();
}

absl::Status Bootstrap::LoadChunkTable() {
  if (ext_.chunk_table_size % sizeof(ChunkInfo) != 0) return Corrupt("chunk table size");
  ASSIGN_OR_RETURN(std::string_view table,
                   Slice(ext_.chunk_table_offset, ext_.chunk_table_size, "chunk table"));
  uint64_t count = ext_.chunk_table_size / sizeof(ChunkInfo);
  chunk_by_ci_.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    auto info = Load<ChunkInfo>(table, i * sizeof(ChunkInfo));
    if (info.blob_index >= blobs_.size()) {
      return Corrupt(StrCat("chunk record ", i, " names blob ", info.blob_index));
    }
    chunk_by_ci_.emplace((uint64_t{info.blob_index} << 32) | info.index, static_cast<uint32_t>(i));
  }
  return absl::OkStatus();
}

absl::Status Bootstrap::LoadPrefetchTable() {
  if (ext_.prefetch_table_offset == 0 || ext_.prefetch_table_size == 0) return absl::OkStatus();
  if (ext_.prefetch_table_size % 4 != 0) return Corrupt("prefetch table size");
  ASSIGN_OR_RETURN(std::string_view table,
                   Slice(ext_.prefetch_table_offset, ext_.prefetch_table_size, "prefetch table"));
  for (uint64_t off = 0; off < table.size(); off += 4)
    prefetch_nids_.push_back(Load<uint32_t>(table, off));
  return absl::OkStatus();
}

Compressor Bootstrap::compressor() const {
  if (ext_.flags & kFlagCompressionZstd) return Compressor::kZstd;
  if (ext_.flags & kFlagCompressionLz4) return Compressor::kLz4Block;
  if (ext_.flags & kFlagCompressionGzip) return Compressor::kGzip;
  return Compressor::kNone;
}

DigestAlgorithm Bootstrap::digester() const {
  return (ext_.flags & kFlagHashSha256) ? DigestAlgorithm::kSha256 : DigestAlgorithm::kBlake3;
}

uint64_t Bootstrap::InodeOffset(uint64_t nid) const {
  return uint64_t{sb_.meta_blkaddr} * kBlockSize + nid * kInodeSlotSize;
}

absl::StatusOr<Inode> Bootstrap::GetInode(uint64_t nid) const {
  if (nid > (uint64_t{1} << 48)) return Corrupt(StrCat("nid ", nid, " out of range"));
  uint64_t offset = InodeOffset(nid);
  ASSIGN_OR_RETURN(std::string_view compact,
                   Slice(offset, sizeof(CompactInode), StrCat("inode ", nid)));
  Inode inode;
  inode.nid = nid;
  uint16_t format = Load<uint16_t>(compact);
  uint16_t layout = (format >> kInodeDataLayoutShift) & 0x7;
  if (layout != 0 && layout != 2 && layout != 4) {
    return Corrupt(StrCat("inode ", nid, " has data layout ", layout));
  }
  inode.layout = static_cast<DataLayout>(layout);
  if (format & kInodeLayoutExtended) {
    ASSIGN_OR_RETURN(std::string_view raw,
                     Slice(offset, sizeof(ExtendedInode), StrCat("inode ", nid)));
    auto e = Load<ExtendedInode>(raw);
    inode = {
        nid,     e.ino,        e.mode, e.uid,        e.gid, e.nlink,        e.size,
        e.mtime, e.mtime_nsec, 0,      inode.layout, e.u,   e.xattr_icount, sizeof(ExtendedInode)};
  } else {
    auto c = Load<CompactInode>(compact);
    inode = {nid,
             c.ino,
             c.mode,
             c.uid,
             c.gid,
             c.nlink,
             c.size,
             sb_.build_time,
             sb_.build_time_nsec,
             0,
             inode.layout,
             c.u,
             c.xattr_icount,
             sizeof(CompactInode)};
  }
  if (S_ISCHR(inode.mode) || S_ISBLK(inode.mode)) inode.rdev = inode.raw_u;
  if (inode.layout == DataLayout::kChunkBased && !inode.is_regular()) {
    return Corrupt(StrCat("inode ", nid, ": chunk-based layout on a non-regular file"));
  }
  return inode;
}

uint64_t Bootstrap::XattrAreaSize(const Inode& inode) const {
  return inode.xattr_icount == 0 ? 0 : sizeof(XattrIbodyHeader) + (inode.xattr_icount - 1) * 4ull;
}

absl::StatusOr<std::string_view> Bootstrap::InodeData(const Inode& inode) const {
  if (inode.layout == DataLayout::kChunkBased) {
    return absl::InvalidArgumentError(StrCat("inode ", inode.nid, " keeps its data in blobs"));
  }
  if (inode.size > (uint64_t{1} << 32)) return Corrupt(StrCat("inode ", inode.nid, " inline size"));
  uint64_t block_bytes =
      inode.layout == DataLayout::kFlatInline ? inode.size / kBlockSize * kBlockSize : inode.size;
  uint64_t tail = inode.size - block_bytes;
  if (tail == 0)
    return Slice(uint64_t{inode.raw_u} * kBlockSize, block_bytes,
                 StrCat("data of inode ", inode.nid));
  uint64_t tail_offset = InodeOffset(inode.nid) + inode.inode_size + XattrAreaSize(inode);
  if (block_bytes == 0) return Slice(tail_offset, tail, StrCat("inline data of inode ", inode.nid));
  // Full blocks and an inline tail are not contiguous: directories this large use plain layout
  // in our builder; reading them would need a copy, which this view-based API avoids.
  return absl::UnimplementedError(StrCat("inode ", inode.nid, ": inline tail after full blocks"));
}

absl::StatusOr<std::vector<DirEntry>> Bootstrap::ReadDir(uint64_t dir_nid) const {
  ASSIGN_OR_RETURN(Inode dir, GetInode(dir_nid));
  if (!dir.is_dir())
    return absl::FailedPreconditionError(StrCat("inode ", dir_nid, " is not a directory"));
  ASSIGN_OR_RETURN(std::string_view data, InodeData(dir));
  std::vector<DirEntry> entries;
  for (uint64_t block_start = 0; block_start < data.size(); block_start += kBlockSize) {
    std::string_view block = data.substr(block_start, kBlockSize);
    if (block.size() < sizeof(Dirent))
      return Corrupt(StrCat("directory ", dir_nid, " block too small"));
    uint16_t first_nameoff = Load<Dirent>(block).nameoff;
    if (first_nameoff < sizeof(Dirent) || first_nameoff % sizeof(Dirent) != 0 ||
        first_nameoff > block.size()) {
      return Corrupt(StrCat("directory ", dir_nid, " first name offset ", first_nameoff));
    }
    size_t count = first_nameoff / sizeof(Dirent);
    for (size_t i = 0; i < count; ++i) {
      auto d = Load<Dirent>(block, i * sizeof(Dirent));
      size_t end =
          i + 1 < count ? Load<Dirent>(block, (i + 1) * sizeof(Dirent)).nameoff : block.size();
      if (d.nameoff < first_nameoff || end > block.size() || end < d.nameoff) {
        return Corrupt(StrCat("directory ", dir_nid, " name offsets"));
      }
      std::string_view name = block.substr(d.nameoff, end - d.nameoff);
      name = name.substr(0, name.find('\0'));
      if (name.empty() || name.size() > kMaxNameLength)
        return Corrupt(StrCat("directory ", dir_nid, " name length"));
      entries.push_back({std::string(name), d.nid, static_cast<FileType>(d.file_type)});
    }
  }
  return entries;
}

absl::StatusOr<std::pair<uint64_t, uint64_t>> Bootstrap::DataExtent(uint64_t nid) const {
  ASSIGN_OR_RETURN(Inode inode, GetInode(nid));
  ASSIGN_OR_RETURN(std::string_view data, InodeData(inode));
  return std::make_pair(static_cast<uint64_t>(data.data() - data_.data()),
                        static_cast<uint64_t>(data.size()));
}

absl::Status DirectoryClaims::Claim(const Bootstrap& boot, uint64_t dir_nid,
                                    std::string_view path) {
  ASSIGN_OR_RETURN(auto extent, boot.DataExtent(dir_nid));
  auto [start, size] = extent;
  if (size == 0) return absl::OkStatus();
  uint64_t end = start + size;
  // The claim that starts last at or before `end`, if any, is the only one that can overlap:
  // claims are disjoint, so any earlier one ends before it starts.
  auto next = claimed_.lower_bound(end);
  if (next != claimed_.begin()) {
    auto prev = std::prev(next);
    if (prev->second.end > start) {
      uint64_t from = std::max(start, prev->first);
      uint64_t to = std::min(end, prev->second.end);
      return Corrupt(StrCat("directory ", path, " (inode ", dir_nid,
                            ") shares its entries with directory inode ", prev->second.nid,
                            " (bootstrap bytes [", from, ", ", to,
                            ")): directory data must not be shared"));
    }
  }
  claimed_.emplace_hint(next, start, Claimed{end, dir_nid});
  return absl::OkStatus();
}

absl::StatusOr<DirEntry> Bootstrap::Lookup(uint64_t dir_nid, std::string_view name) const {
  ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ReadDir(dir_nid));
  for (DirEntry& entry : entries) {
    if (entry.name == name) return std::move(entry);
  }
  return absl::NotFoundError(StrCat("no entry \"", name, "\" in directory inode ", dir_nid));
}

absl::StatusOr<uint64_t> Bootstrap::Resolve(std::string_view path) const {
  uint64_t nid = root_nid();
  while (!path.empty()) {
    size_t start = path.find_first_not_of('/');
    if (start == std::string_view::npos) break;
    path.remove_prefix(start);
    size_t end = path.find('/');
    std::string_view part = path.substr(0, end);
    auto entry = Lookup(nid, part);
    if (!entry.ok()) return Annotate(entry.status(), StrCat("resolving ", part));
    nid = entry->nid;
    path.remove_prefix(end == std::string_view::npos ? path.size() : end);
  }
  return nid;
}

absl::StatusOr<std::string> Bootstrap::ReadLink(uint64_t nid) const {
  ASSIGN_OR_RETURN(Inode inode, GetInode(nid));
  if (!inode.is_symlink())
    return absl::InvalidArgumentError(StrCat("inode ", nid, " is not a symlink"));
  ASSIGN_OR_RETURN(std::string_view target, InodeData(inode));
  return std::string(target);
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Bootstrap::Xattrs(
    uint64_t nid) const {
  ASSIGN_OR_RETURN(Inode inode, GetInode(nid));
  std::vector<std::pair<std::string, std::string>> xattrs;
  uint64_t size = XattrAreaSize(inode);
  if (size == 0) return xattrs;
  ASSIGN_OR_RETURN(std::string_view area, Slice(InodeOffset(nid) + inode.inode_size, size,
                                                StrCat("xattrs of inode ", nid)));
  auto header = Load<XattrIbodyHeader>(area);
  uint64_t pos = sizeof(XattrIbodyHeader) + uint64_t{header.shared_count} * 4;
  while (pos + sizeof(XattrEntry) <= area.size()) {
    auto entry = Load<XattrEntry>(area, pos);
    uint64_t body = pos + sizeof(XattrEntry);
    if (body + entry.name_len + entry.value_size > area.size()) {
      return Corrupt(StrCat("xattr entry of inode ", nid, " overruns its area"));
    }
    ASSIGN_OR_RETURN(std::string prefix, XattrPrefixName(entry.name_index));
    xattrs.emplace_back(prefix + std::string(area.substr(body, entry.name_len)),
                        std::string(area.substr(body + entry.name_len, entry.value_size)));
    pos = AlignUp(body + entry.name_len + entry.value_size, 4);
  }
  return xattrs;
}

namespace {

// By compressed offset, each chunk-info index once.
void SortAndDeduplicate(std::vector<ChunkRef>& chunks) {
  std::sort(chunks.begin(), chunks.end(), [](const ChunkRef& a, const ChunkRef& b) {
    return std::tie(a.compressed_offset, a.ci_index) < std::tie(b.compressed_offset, b.ci_index);
  });
  auto same = [](const ChunkRef& a, const ChunkRef& b) { return a.ci_index == b.ci_index; };
  chunks.erase(std::unique(chunks.begin(), chunks.end(), same), chunks.end());
}

}  // namespace

ChunkRef Bootstrap::RefFromInfo(const ChunkInfo& info) const {
  return ChunkRefFromInfo(info, digester());
}

ChunkRef ChunkRefFromInfo(const ChunkInfo& info, DigestAlgorithm digester) {
  ChunkRef ref{.blob_index = info.blob_index,
               .ci_index = info.index,
               .compressed_offset = info.compressed_offset,
               .compressed_size = info.compressed_size,
               .uncompressed_offset = info.uncompressed_offset,
               .uncompressed_size = info.uncompressed_size,
               .compressed = (info.flags & kChunkCompressed) != 0};
  ref.digest.algorithm = digester;
  std::memcpy(ref.digest.bytes.data(), info.digest, 32);
  return ref;
}

absl::StatusOr<std::vector<ChunkRef>> Bootstrap::ExpandChunkIndex(const ChunkIndex& index,
                                                                  uint64_t file_offset,
                                                                  uint64_t length) const {
  std::vector<ChunkRef> chunks;
  if (index.blkaddr == kNullBlkaddr) {
    for (uint64_t off = 0; off < length; off += ext_.chunk_size) {
      chunks.push_back({.file_offset = file_offset + off,
                        .uncompressed_size = static_cast<uint32_t>(
                            std::min<uint64_t>(ext_.chunk_size, length - off)),
                        .hole = true});
    }
    return chunks;
  }
  uint32_t device = index.blob_ci_hi & 0xff;
  if (device == 0 || device > blobs_.size())
    return Corrupt(StrCat("chunk index names device ", device));
  uint32_t blob = device - 1;
  uint32_t ci = index.blob_ci_lo | (static_cast<uint32_t>(index.blob_ci_hi >> 8) << 16);
  for (uint64_t off = 0; off < length; off += ext_.chunk_size, ++ci) {
    auto it = chunk_by_ci_.find((uint64_t{blob} << 32) | ci);
    if (it == chunk_by_ci_.end()) {
      return Corrupt(StrCat("chunk ", ci, " of blob ", blob, " is missing from the chunk table"));
    }
    auto info =
        Load<ChunkInfo>(data_, ext_.chunk_table_offset + uint64_t{it->second} * sizeof(ChunkInfo));
    if (off == 0 && info.uncompressed_offset != uint64_t{index.blkaddr} * kBlockSize) {
      return Corrupt(StrCat("chunk ", ci, " of blob ", blob,
                            ": index and chunk table disagree on its offset"));
    }
    ChunkRef ref = RefFromInfo(info);
    ref.file_offset = file_offset + off;
    chunks.push_back(ref);
  }
  return chunks;
}

absl::StatusOr<std::vector<ChunkRef>> Bootstrap::FileChunks(uint64_t nid) const {
  ASSIGN_OR_RETURN(Inode inode, GetInode(nid));
  if (!inode.is_regular())
    return absl::InvalidArgumentError(StrCat("inode ", nid, " is not a file"));
  if (inode.size == 0) return std::vector<ChunkRef>();
  if (inode.layout != DataLayout::kChunkBased)
    return Corrupt(StrCat("file inode ", nid, " is not chunk-based"));
  if ((inode.raw_u & kChunkFormatIndexes) == 0)
    return Corrupt(StrCat("inode ", nid, " chunk format"));
  uint32_t bits = kBlockSizeBits + (inode.raw_u & kChunkFormatBlkbitsMask);
  if (bits > 63) return Corrupt(StrCat("inode ", nid, " chunk size bits"));
  uint64_t inode_chunk = uint64_t{1} << bits;
  if (inode_chunk < ext_.chunk_size)
    return Corrupt(StrCat("inode ", nid, " chunk smaller than the image's"));
  uint64_t count = inode.size / inode_chunk + (inode.size % inode_chunk != 0);
  // Callers get one ChunkRef per image chunk. Indexes of image-chunk size pay for theirs with
  // index bytes; an index covering several image chunks (the whole-file form) covers distinct
  // records of the chunk table, so such a file never has more chunks than the table holds.
  // Without this bound one hole index could make a few bytes demand billions of ChunkRefs.
  uint64_t image_chunks = inode.size / ext_.chunk_size + (inode.size % ext_.chunk_size != 0);
  if (image_chunks > std::max<uint64_t>(count, ext_.chunk_table_size / sizeof(ChunkInfo))) {
    return Corrupt(StrCat("inode ", nid, ": ", image_chunks, " chunks of ", ext_.chunk_size,
                          " bytes from ", count, " chunk indexes"));
  }
  uint64_t index_offset = AlignUp(InodeOffset(nid) + inode.inode_size + XattrAreaSize(inode), 8);
  ASSIGN_OR_RETURN(std::string_view indexes, Slice(index_offset, count * sizeof(ChunkIndex),
                                                   StrCat("chunk indexes of inode ", nid)));
  std::vector<ChunkRef> chunks;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t file_offset = i * inode_chunk;
    ASSIGN_OR_RETURN(
        std::vector<ChunkRef> part,
        ExpandChunkIndex(Load<ChunkIndex>(indexes, i * sizeof(ChunkIndex)), file_offset,
                         std::min(inode_chunk, inode.size - file_offset)));
    chunks.insert(chunks.end(), part.begin(), part.end());
  }
  return chunks;
}

std::vector<ChunkInfo> Bootstrap::ChunkTable() const {
  std::vector<ChunkInfo> table(ext_.chunk_table_size / sizeof(ChunkInfo));
  std::memcpy(table.data(), data_.data() + ext_.chunk_table_offset,
              table.size() * sizeof(ChunkInfo));
  return table;
}

std::vector<ChunkRef> Bootstrap::BlobChunks(uint32_t blob_index) const {
  std::vector<ChunkRef> chunks;
  for (const ChunkInfo& info : ChunkTable()) {
    if (info.blob_index == blob_index) chunks.push_back(RefFromInfo(info));
  }
  SortAndDeduplicate(chunks);
  return chunks;
}

std::vector<std::vector<ChunkRef>> Bootstrap::ChunksByBlob() const {
  std::vector<std::vector<ChunkRef>> chunks(blobs_.size());
  const std::vector<ChunkInfo> table = ChunkTable();
  // chunk_count comes from the bootstrap: never reserve more than the table holds.
  for (const BlobInfo& blob : blobs_) {
    chunks[blob.index].reserve(std::min<size_t>(blob.chunk_count, table.size()));
  }
  for (const ChunkInfo& info : table) chunks[info.blob_index].push_back(RefFromInfo(info));
  for (std::vector<ChunkRef>& blob : chunks) SortAndDeduplicate(blob);
  return chunks;
}

}  // namespace naiad::rafs
