#include "rafs/bootstrap_writer.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <iterator>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::rafs {
namespace {

constexpr uint64_t kBlobSegmentAlignment = 2 << 20;  // flat-device mapping of blobs

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

template <typename T>
void Store(std::string& out, uint64_t offset, const T& value) {
  std::memcpy(out.data() + offset, &value, sizeof(T));
}

template <size_t N>
void CopyId(char (&dest)[N], const std::string& id) {
  std::memset(dest, 0, N);
  std::memcpy(dest, id.data(), std::min(N, id.size()));
}

// Splits an xattr name into an EROFS prefix index and the remaining suffix.
std::pair<uint8_t, std::string_view> XattrPrefixOf(std::string_view name) {
  static constexpr std::pair<XattrPrefix, std::string_view> kPrefixes[] = {
      {XattrPrefix::kPosixAclAccess, "system.posix_acl_access"},
      {XattrPrefix::kPosixAclDefault, "system.posix_acl_default"},
      {XattrPrefix::kUser, "user."},
      {XattrPrefix::kTrusted, "trusted."},
      {XattrPrefix::kSecurity, "security."},
  };
  for (const auto& [index, prefix] : kPrefixes) {
    if (name.starts_with(prefix)) return {static_cast<uint8_t>(index), name.substr(prefix.size())};
  }
  return {0, name};
}

// The size of the inline xattr area that holds `xattrs`; InvalidArgument if one does not fit.
absl::StatusOr<uint32_t> XattrAreaSize(const Xattrs& xattrs) {
  if (xattrs.empty()) return 0;
  uint64_t size = sizeof(XattrIbodyHeader);
  for (const auto& [name, value] : xattrs) {
    auto [index, suffix] = XattrPrefixOf(name);
    if (suffix.size() > 255 || value.size() > 65535) {
      return absl::InvalidArgumentError(StrCat("xattr \"", name, "\" is too long for EROFS"));
    }
    size = AlignUp(size + sizeof(XattrEntry) + suffix.size() + value.size(), 4);
  }
  // i_xattr_icount is 16 bits: the area is 12 + 4 * (icount - 1) bytes.
  if (size > sizeof(XattrIbodyHeader) + 4 * uint64_t{0xfffe}) {
    return absl::InvalidArgumentError(StrCat("xattrs of ", size, " bytes, more than EROFS holds"));
  }
  return static_cast<uint32_t>(size);
}

// Writes the inline xattr area of `xattrs` (XattrAreaSize() bytes, zeroed) at `out`.
void EncodeXattrs(const Xattrs& xattrs, char* out) {
  uint64_t pos = sizeof(XattrIbodyHeader);  // the header stays zero: no shared xattrs
  for (const auto& [name, value] : xattrs) {
    auto [index, suffix] = XattrPrefixOf(name);
    XattrEntry entry{static_cast<uint8_t>(suffix.size()), index,
                     static_cast<uint16_t>(value.size())};
    std::memcpy(out + pos, &entry, sizeof(entry));
    char* at = std::copy(suffix.begin(), suffix.end(), out + pos + sizeof(entry));
    std::copy(value.begin(), value.end(), at);
    pos = AlignUp(pos + sizeof(entry) + suffix.size() + value.size(), 4);
  }
}

// One inode of the bootstrap while the tree is laid out: 48 bytes, since a layer may hold
// millions. Its nid follows from its offset; its directory entries are listed again when needed.
struct Record {
  const TreeInode* inode = nullptr;
  uint64_t offset = 0;     // of the inode in the bootstrap
  uint64_t data_size = 0;  // i_size of directories and symlinks
  uint32_t parent = 0;     // record of the directory holding the first name (the root: itself)
  uint32_t nlink = 0;
  uint32_t xattr_size = 0;  // the inline xattr area
  uint32_t blkaddr = 0;     // plain layout: first data block
  DataLayout layout = DataLayout::kFlatPlain;
  bool pyc_name = false;  // the first name ends in ".pyc"
  bool extended = false;

  uint64_t inode_size() const { return extended ? sizeof(ExtendedInode) : sizeof(CompactInode); }
  uint64_t size() const { return inode->is_regular() ? inode->size : data_size; }
};
static_assert(sizeof(Record) == 48);

struct DirentRef {
  std::string_view name;
  const TreeInode* target;
};

// The entries of a directory as stored: its children with "." and "..", sorted byte-wise.
void ListDirents(const TreeInode& dir, const TreeInode& parent, std::vector<DirentRef>& out) {
  out.clear();
  const DirentRef specials[] = {{".", &dir}, {"..", &parent}};  // "." sorts before ".."
  size_t next = 0;
  for (const auto& [name, child] : dir.children) {
    for (; next < std::size(specials) && specials[next].name < name; ++next) {
      out.push_back(specials[next]);
    }
    out.push_back({name, child.get()});
  }
  for (; next < std::size(specials); ++next) out.push_back(specials[next]);
}

// Packs sorted dirents into 4 KiB blocks; returns i_size and fills `block_ends` (the dirent
// count after each block).
uint64_t PackDirents(const std::vector<DirentRef>& dirents, std::vector<size_t>& block_ends) {
  block_ends.clear();
  uint64_t used = 0;
  for (size_t i = 0; i < dirents.size(); ++i) {
    uint64_t need = sizeof(Dirent) + dirents[i].name.size();
    if (used + need > kBlockSize) {
      block_ends.push_back(i);
      used = 0;
    }
    used += need;
  }
  block_ends.push_back(dirents.size());
  return (block_ends.size() - 1) * kBlockSize + used;
}

// A distinct chunk of the chunk-info table: its slot in the tree's chunk table and the file
// offset of its first use.
struct TableEntry {
  uint32_t slot;
  uint64_t file_offset;
};

class Layout {
 public:
  Layout(const Tree& tree, const std::vector<BlobInfo>& blobs, const BootstrapOptions& options)
      : tree_(tree), blobs_(blobs), options_(options) {}

  absl::StatusOr<std::string> Write();

 private:
  absl::Status CollectRecords();
  absl::Status PrepareRecord(Record& r);
  // The record of an inode, or null if it has none yet.
  Record* RecordOf(const TreeInode* inode);
  // The path of a record's first name, for error messages.
  std::string PathOf(const Record& r) const;
  void PlaceInodes(uint64_t start);
  void PlaceDataBlocks();
  absl::Status ResolvePrefetch();
  void CollectChunkTable();
  void WriteSuperblocks();
  void WriteInodes();
  void WriteInode(const Record& r, uint32_t ino);
  void WriteDirectory(const Record& r);
  void WriteChunkTable();
  uint64_t NidOf(const Record& r) const {
    return (r.offset - uint64_t{meta_blkaddr_} * kBlockSize) / kInodeSlotSize;
  }
  uint64_t NidOf(const TreeInode* inode) { return NidOf(*RecordOf(inode)); }

  const Tree& tree_;
  const std::vector<BlobInfo>& blobs_;
  const BootstrapOptions& options_;
  std::deque<Record> records_;  // breadth first; no reallocation copies as it grows
  std::vector<uint32_t> prefetch_;
  std::vector<TableEntry> chunk_table_;  // sorted as stored
  std::vector<DirentRef> dirents_;       // of one directory at a time
  std::vector<size_t> block_ends_;
  std::string out_;
  uint64_t blob_table_offset_ = 0;
  uint64_t prefetch_offset_ = 0;
  uint32_t meta_blkaddr_ = 0;
  uint64_t cursor_ = 0;
  uint64_t chunk_table_offset_ = 0;
  bool has_xattr_ = false;
};

Record* Layout::RecordOf(const TreeInode* inode) {
  uint32_t slot = inode->layout_slot;
  return slot < records_.size() && records_[slot].inode == inode ? &records_[slot] : nullptr;
}

std::string Layout::PathOf(const Record& r) const {
  std::vector<std::string_view> names;
  for (const Record* at = &r; at != &records_.front(); at = &records_[at->parent]) {
    const TreeInode* parent = records_[at->parent].inode;
    for (const auto& [name, child] : parent->children) {
      if (child.get() == at->inode) {
        names.push_back(name);
        break;
      }
    }
  }
  std::string path;
  for (auto it = names.rbegin(); it != names.rend(); ++it) StrAppend(&path, "/", *it);
  return path.empty() ? "/" : path;
}

absl::Status Layout::CollectRecords() {
  // Breadth first, the records being the queue: a child gets its record (and its inode number)
  // when its directory's record is reached; further names of a hardlinked inode add links.
  constexpr uint64_t kMaxRecords = uint64_t{1} << 32;
  records_.push_back({.inode = &tree_.root(), .parent = 0, .nlink = 1});
  tree_.root().layout_slot = 0;
  for (size_t i = 0; i < records_.size(); ++i) {
    const TreeInode* dir = records_[i].inode;
    for (const auto& [name, child] : dir->children) {
      if (Record* seen = RecordOf(child.get())) {
        ++seen->nlink;
        continue;
      }
      if (records_.size() + 1 >= kMaxRecords) return absl::InvalidArgumentError("too many inodes");
      child->layout_slot = static_cast<uint32_t>(records_.size());
      records_.push_back({.inode = child.get(),
                          .parent = static_cast<uint32_t>(i),
                          .nlink = 1,
                          .pyc_name = name.ends_with(".pyc")});
    }
  }
  for (Record& r : records_) RETURN_IF_ERROR(PrepareRecord(r));
  return absl::OkStatus();
}

absl::Status Layout::PrepareRecord(Record& r) {
  const TreeInode& inode = *r.inode;
  auto xattr_size = XattrAreaSize(inode.xattrs());
  if (!xattr_size.ok()) return Annotate(xattr_size.status(), PathOf(r));
  r.xattr_size = *xattr_size;
  has_xattr_ |= r.xattr_size > 0;
  if (inode.is_dir()) {
    r.nlink = 2;
    for (const auto& [name, child] : inode.children) r.nlink += child->is_dir();
    ListDirents(inode, *records_[r.parent].inode, dirents_);
    r.data_size = PackDirents(dirents_, block_ends_);
  } else if (S_ISLNK(inode.mode)) {
    if (inode.symlink().empty() || inode.symlink().size() >= kBlockSize) {
      return absl::InvalidArgumentError(
          StrCat("symlink \"", PathOf(r), "\": target length ", inode.symlink().size()));
    }
    r.data_size = inode.symlink().size();
  }
  if (inode.is_regular() && inode.size > 0) {
    uint64_t want = (inode.size + options_.chunk_size - 1) / options_.chunk_size;
    if (inode.chunks.size() != want) {
      return absl::InvalidArgumentError(StrCat("file \"", PathOf(r), "\" has ", inode.chunks.size(),
                                               " chunks, its size needs ", want,
                                               " (layers built with different chunk sizes?)"));
    }
  }
  r.extended = inode.uid > 0xffff || inode.gid > 0xffff || r.nlink > 0xffff ||
               r.size() > 0xffffffffull || r.pyc_name;
  return absl::OkStatus();
}

void Layout::PlaceInodes(uint64_t start) {
  meta_blkaddr_ = static_cast<uint32_t>(start / kBlockSize - 1);  // root nid is then 128, never 0
  cursor_ = start;
  for (Record& r : records_) {
    cursor_ = AlignUp(cursor_, kInodeSlotSize);
    uint64_t head = r.inode_size() + r.xattr_size;
    bool has_data = r.inode->is_dir() || S_ISLNK(r.inode->mode);
    if (has_data && head + r.data_size <= kBlockSize) {
      r.layout = DataLayout::kFlatInline;  // the whole payload follows the inode, in its block
      if (cursor_ / kBlockSize != (cursor_ + head + r.data_size - 1) / kBlockSize) {
        cursor_ = AlignUp(cursor_, kBlockSize);
      }
      head += r.data_size;
    } else if (r.inode->is_regular() && r.inode->size > 0) {
      r.layout = DataLayout::kChunkBased;
      head =
          AlignUp(r.inode_size() + r.xattr_size, 8) + r.inode->chunks.size() * sizeof(ChunkIndex);
    } else {
      r.layout = r.inode->is_regular() ? DataLayout::kChunkBased : DataLayout::kFlatPlain;
    }
    r.offset = cursor_;
    cursor_ += head;
  }
}

void Layout::PlaceDataBlocks() {
  cursor_ = AlignUp(cursor_, kBlockSize);
  for (Record& r : records_) {
    if (r.layout != DataLayout::kFlatPlain || r.data_size == 0) continue;
    r.blkaddr = static_cast<uint32_t>(cursor_ / kBlockSize);
    cursor_ += AlignUp(r.data_size, kBlockSize);
  }
  chunk_table_offset_ = AlignUp(cursor_, kBlockSize);
}

absl::Status Layout::ResolvePrefetch() {
  for (const std::string& path : options_.prefetch_paths) {
    auto inode = tree_.Find(path);
    if (!inode.ok()) continue;  // patterns that match nothing are skipped, as upstream does
    prefetch_.push_back(static_cast<uint32_t>(NidOf(inode->get())));
  }
  return absl::OkStatus();
}

void Layout::WriteSuperblocks() {
  ErofsSuperblock sb{};
  sb.magic = kErofsMagic;
  sb.feature_compat = kFeatureCompatRafsV6;
  sb.blkszbits = kBlockSizeBits;
  sb.root_nid = static_cast<uint16_t>(NidOf(records_.front()));
  sb.inos = records_.size();
  sb.build_time = options_.build_time;
  sb.meta_blkaddr = meta_blkaddr_;
  sb.feature_incompat = kRafsV6Incompat;
  sb.extra_devices = static_cast<uint16_t>(blobs_.size());
  sb.devt_slotoff = kDeviceSlotOffset;
  uint64_t mapped = out_.size();
  uint64_t blocks = 0;
  for (size_t i = 0; i < blobs_.size(); ++i) {
    DeviceSlot slot{};
    CopyId(slot.blob_id, blobs_[i].id);
    slot.blocks = static_cast<uint32_t>(blobs_[i].uncompressed_size / kBlockSize);
    mapped = AlignUp(mapped, kBlobSegmentAlignment);
    slot.mapped_blkaddr = static_cast<uint32_t>(mapped / kBlockSize);
    mapped += uint64_t{slot.blocks} * kBlockSize;
    blocks += slot.blocks;
    Store(out_, kDeviceTableOffset + i * sizeof(DeviceSlot), slot);
    Store(out_, blob_table_offset_ + i * sizeof(BlobTableEntry), ToBlobTableEntry(blobs_[i]));
  }
  sb.blocks = static_cast<uint32_t>(blocks);
  Store(out_, kSuperblockOffset, sb);

  RafsExtSuperblock ext{};
  ext.flags = uint64_t{kFlagExplicitUidGid} |
              (options_.digester == DigestAlgorithm::kSha256 ? uint64_t{kFlagHashSha256}
                                                             : uint64_t{kFlagHashBlake3});
  switch (options_.compressor) {
    case Compressor::kNone:
      ext.flags |= kFlagCompressionNone;
      break;
    case Compressor::kLz4Block:
      ext.flags |= kFlagCompressionLz4;
      break;
    case Compressor::kGzip:
      ext.flags |= kFlagCompressionGzip;
      break;
    case Compressor::kZstd:
      ext.flags |= kFlagCompressionZstd;
      break;
  }
  if (has_xattr_) ext.flags |= kFlagHasXattr;
  if (options_.inlined_chunk_digest) ext.flags |= kFlagInlinedChunkDigest;
  ext.blob_table_offset = blob_table_offset_;
  ext.blob_table_size = static_cast<uint32_t>(blobs_.size() * sizeof(BlobTableEntry));
  ext.chunk_size = options_.chunk_size;
  ext.chunk_table_offset = chunk_table_offset_;
  ext.chunk_table_size = chunk_table_.size() * sizeof(ChunkInfo);
  if (!prefetch_.empty()) {
    ext.prefetch_table_offset = prefetch_offset_;
    ext.prefetch_table_size = static_cast<uint32_t>(prefetch_.size() * 4);
    for (size_t i = 0; i < prefetch_.size(); ++i)
      Store(out_, prefetch_offset_ + i * 4, prefetch_[i]);
  }
  Store(out_, kExtSuperblockOffset, ext);
}

void Layout::WriteInode(const Record& r, uint32_t ino) {
  const TreeInode& in = *r.inode;
  uint16_t format =
      static_cast<uint16_t>((static_cast<uint16_t>(r.layout) << kInodeDataLayoutShift) |
                            (r.extended ? kInodeLayoutExtended : 0));
  uint32_t u = 0;
  if (r.layout == DataLayout::kChunkBased) {
    u = kChunkFormatIndexes | (std::countr_zero(options_.chunk_size) - kBlockSizeBits);
  } else if (r.layout == DataLayout::kFlatPlain && r.data_size > 0) {
    u = r.blkaddr;
  } else if (S_ISCHR(in.mode) || S_ISBLK(in.mode)) {
    u = in.rdev;
  }
  uint16_t icount = r.xattr_size == 0
                        ? 0
                        : static_cast<uint16_t>((r.xattr_size - sizeof(XattrIbodyHeader)) / 4 + 1);
  if (r.extended) {
    ExtendedInode e{format,   icount,        static_cast<uint16_t>(in.mode),
                    0,        r.size(),      u,
                    ino,      in.uid,        in.gid,
                    in.mtime, in.mtime_nsec, r.nlink,
                    {}};
    Store(out_, r.offset, e);
  } else {
    CompactInode c{format,
                   icount,
                   static_cast<uint16_t>(in.mode),
                   static_cast<uint16_t>(r.nlink),
                   static_cast<uint32_t>(r.size()),
                   0,
                   u,
                   ino,
                   static_cast<uint16_t>(in.uid),
                   static_cast<uint16_t>(in.gid),
                   0};
    Store(out_, r.offset, c);
  }
  uint64_t pos = r.offset + r.inode_size();
  if (r.xattr_size > 0) EncodeXattrs(in.xattrs(), out_.data() + pos);
  pos += r.xattr_size;
  if (S_ISLNK(in.mode)) {
    uint64_t at = r.layout == DataLayout::kFlatInline ? pos : uint64_t{r.blkaddr} * kBlockSize;
    std::memcpy(out_.data() + at, in.symlink().data(), in.symlink().size());
  }
  if (r.layout == DataLayout::kChunkBased) {
    pos = AlignUp(pos, 8);
    for (uint32_t slot : in.chunks) {
      ChunkIndex index{0, 0, 0xFFFFFFFF};  // a hole
      if (slot != kHoleChunk) {
        const ChunkRef& c = tree_.chunk(slot);
        index = {static_cast<uint16_t>(c.ci_index & 0xffff),
                 static_cast<uint16_t>((c.blob_index + 1) | ((c.ci_index >> 16) << 8)),
                 static_cast<uint32_t>(c.uncompressed_offset / kBlockSize)};
      }
      Store(out_, pos, index);
      pos += sizeof(ChunkIndex);
    }
  }
}

void Layout::WriteDirectory(const Record& r) {
  uint64_t base = r.layout == DataLayout::kFlatInline ? r.offset + r.inode_size() + r.xattr_size
                                                      : uint64_t{r.blkaddr} * kBlockSize;
  ListDirents(*r.inode, *records_[r.parent].inode, dirents_);
  PackDirents(dirents_, block_ends_);
  size_t begin = 0;
  for (size_t block = 0; block < block_ends_.size(); ++block) {
    size_t end = block_ends_[block];
    uint64_t block_start = base + block * kBlockSize;
    uint64_t nameoff = (end - begin) * sizeof(Dirent);
    for (size_t i = begin; i < end; ++i) {
      const auto& [name, target] = dirents_[i];
      Dirent d{NidOf(target), static_cast<uint16_t>(nameoff),
               static_cast<uint8_t>(FileTypeFromMode(target->mode)), 0};
      Store(out_, block_start + (i - begin) * sizeof(Dirent), d);
      std::memcpy(out_.data() + block_start + nameoff, name.data(), name.size());
      nameoff += name.size();
    }
    begin = end;
  }
}

void Layout::WriteInodes() {
  for (size_t i = 0; i < records_.size(); ++i) {
    const Record& r = records_[i];
    WriteInode(r, static_cast<uint32_t>(i + 1));
    if (r.inode->is_dir()) WriteDirectory(r);
  }
}

void Layout::CollectChunkTable() {
  // Each distinct (blob, chunk) once, recorded with the file offset of its first use.
  absl::flat_hash_set<uint64_t> seen;
  for (const Record& r : records_) {
    const ChunkList& chunks = r.inode->chunks;
    for (size_t i = 0; i < chunks.size(); ++i) {
      if (chunks[i] == kHoleChunk) continue;
      const ChunkRef& c = tree_.chunk(chunks[i]);
      if (!seen.insert((uint64_t{c.blob_index} << 32) | c.ci_index).second) continue;
      chunk_table_.push_back({chunks[i], uint64_t{i} * options_.chunk_size});
    }
  }
  std::sort(chunk_table_.begin(), chunk_table_.end(),
            [&](const TableEntry& x, const TableEntry& y) {
              const ChunkRef& a = tree_.chunk(x.slot);
              const ChunkRef& b = tree_.chunk(y.slot);
              int cmp = std::memcmp(a.digest.bytes.data(), b.digest.bytes.data(), 32);
              if (cmp != 0) return cmp < 0;
              return std::tie(a.blob_index, a.ci_index) < std::tie(b.blob_index, b.ci_index);
            });
}

void Layout::WriteChunkTable() {
  uint64_t pos = chunk_table_offset_;
  for (const TableEntry& entry : chunk_table_) {
    const ChunkRef& c = tree_.chunk(entry.slot);
    ChunkInfo info{};
    std::memcpy(info.digest, c.digest.bytes.data(), 32);
    info.blob_index = c.blob_index;
    info.flags = c.compressed ? uint32_t{kChunkCompressed} : 0u;
    info.compressed_size = c.compressed_size;
    info.uncompressed_size = c.uncompressed_size;
    info.compressed_offset = c.compressed_offset;
    info.uncompressed_offset = c.uncompressed_offset;
    info.file_offset = entry.file_offset;
    info.index = c.ci_index;
    Store(out_, pos, info);
    pos += sizeof(ChunkInfo);
  }
}

absl::StatusOr<std::string> Layout::Write() {
  if (blobs_.size() > kMaxBlobs)
    return absl::InvalidArgumentError(StrCat(blobs_.size(), " blobs, at most 254"));
  RETURN_IF_ERROR(CollectRecords());
  blob_table_offset_ = AlignUp(kDeviceTableOffset + blobs_.size() * sizeof(DeviceSlot), kBlockSize);
  prefetch_offset_ = blob_table_offset_ + blobs_.size() * sizeof(BlobTableEntry);
  uint64_t prefetch_bytes = options_.prefetch_paths.size() * 4;
  PlaceInodes(AlignUp(prefetch_offset_ + prefetch_bytes, kBlockSize) + kBlockSize);
  PlaceDataBlocks();
  RETURN_IF_ERROR(ResolvePrefetch());
  CollectChunkTable();
  out_.assign(AlignUp(chunk_table_offset_ + chunk_table_.size() * sizeof(ChunkInfo), kBlockSize),
              '\0');
  WriteChunkTable();
  WriteInodes();
  WriteSuperblocks();
  return std::move(out_);
}

}  // namespace

BlobTableEntry ToBlobTableEntry(const BlobInfo& blob) {
  BlobTableEntry e{};
  CopyId(e.blob_id, blob.id);
  e.blob_index = blob.index;
  e.chunk_size = blob.chunk_size;
  e.chunk_count = blob.chunk_count;
  e.compressor = static_cast<uint32_t>(blob.compressor);
  e.digester = blob.digester == DigestAlgorithm::kSha256 ? 1 : 0;
  e.features = blob.features;
  e.compressed_size = blob.compressed_size;
  e.uncompressed_size = blob.uncompressed_size;
  e.toc_size = blob.toc_size;
  e.ci_compressor = static_cast<uint32_t>(blob.ci_compressor);
  e.ci_offset = blob.ci_offset;
  e.ci_compressed_size = blob.ci_compressed_size;
  e.ci_uncompressed_size = blob.ci_uncompressed_size;
  if (auto digest = HexDecode(blob.toc_digest_hex); digest.ok() && digest->size() == 32) {
    std::memcpy(e.toc_digest, digest->data(), 32);
  }
  return e;
}

absl::StatusOr<std::string> WriteBootstrap(const Tree& tree, const std::vector<BlobInfo>& blobs,
                                           const BootstrapOptions& options) {
  return Layout(tree, blobs, options).Write();
}

}  // namespace naiad::rafs
