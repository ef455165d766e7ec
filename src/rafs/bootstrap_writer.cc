#include "rafs/bootstrap_writer.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <unordered_map>

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

absl::StatusOr<std::string> EncodeXattrs(const Xattrs& xattrs) {
  if (xattrs.empty()) return std::string();
  std::string out(sizeof(XattrIbodyHeader), '\0');
  for (const auto& [name, value] : xattrs) {
    auto [index, suffix] = XattrPrefixOf(name);
    if (suffix.size() > 255 || value.size() > 65535) {
      return absl::InvalidArgumentError(StrCat("xattr \"", name, "\" is too long for EROFS"));
    }
    XattrEntry entry{static_cast<uint8_t>(suffix.size()), index,
                     static_cast<uint16_t>(value.size())};
    out.append(reinterpret_cast<const char*>(&entry), sizeof(entry));
    out.append(suffix);
    out.append(value);
    out.resize(AlignUp(out.size(), 4), '\0');
  }
  return out;
}

struct Record {
  const TreeInode* inode = nullptr;
  const TreeInode* parent = nullptr;
  std::string name;  // first name seen
  uint32_t nlink = 0;
  bool extended = false;
  std::string xattrs;                                             // encoded inline xattr area
  std::vector<std::pair<std::string, const TreeInode*>> dirents;  // directories, sorted
  std::vector<size_t> block_ends;  // directories: dirent count after each block
  uint64_t data_size = 0;          // i_size of dirs and symlinks
  DataLayout layout = DataLayout::kFlatPlain;
  uint64_t offset = 0;  // of the inode
  uint64_t nid = 0;
  uint32_t blkaddr = 0;  // plain layout: first data block

  uint64_t inode_size() const { return extended ? sizeof(ExtendedInode) : sizeof(CompactInode); }
  uint64_t size() const { return inode->is_regular() ? inode->size : data_size; }
};

// Packs sorted dirents into 4 KiB blocks; returns i_size and fills block_ends.
uint64_t PackDirents(Record& r) {
  uint64_t used = 0;
  for (size_t i = 0; i < r.dirents.size(); ++i) {
    uint64_t need = sizeof(Dirent) + r.dirents[i].first.size();
    if (used + need > kBlockSize) {
      r.block_ends.push_back(i);
      used = 0;
    }
    used += need;
  }
  r.block_ends.push_back(r.dirents.size());
  return (r.block_ends.size() - 1) * kBlockSize + used;
}

class Layout {
 public:
  Layout(const Tree& tree, const std::vector<BlobInfo>& blobs, const BootstrapOptions& options)
      : tree_(tree), blobs_(blobs), options_(options) {}

  absl::StatusOr<std::string> Write();

 private:
  absl::Status CollectRecords();
  absl::Status PrepareRecord(Record& r);
  void PlaceInodes(uint64_t start);
  void PlaceDataBlocks();
  absl::Status ResolvePrefetch();
  void WriteSuperblocks();
  void WriteInodes();
  void WriteInode(const Record& r);
  void WriteDirectory(const Record& r);
  void WriteChunkTable();
  uint64_t NidOf(const TreeInode* inode) const { return records_[index_.at(inode)].nid; }

  const Tree& tree_;
  const std::vector<BlobInfo>& blobs_;
  const BootstrapOptions& options_;
  std::vector<Record> records_;
  std::unordered_map<const TreeInode*, size_t> index_;
  std::vector<uint32_t> prefetch_;
  std::vector<ChunkInfo> chunk_table_;
  std::string out_;
  uint64_t blob_table_offset_ = 0;
  uint64_t prefetch_offset_ = 0;
  uint32_t meta_blkaddr_ = 0;
  uint64_t cursor_ = 0;
  uint64_t chunk_table_offset_ = 0;
  bool has_xattr_ = false;
};

absl::Status Layout::CollectRecords() {
  std::deque<std::tuple<const TreeInode*, const TreeInode*, std::string>> queue;
  queue.emplace_back(&tree_.root(), &tree_.root(), "");
  while (!queue.empty()) {
    auto [inode, parent, name] = queue.front();
    queue.pop_front();
    if (auto it = index_.find(inode); it != index_.end()) {
      ++records_[it->second].nlink;  // another name of a hardlinked inode
      continue;
    }
    index_[inode] = records_.size();
    records_.push_back({.inode = inode, .parent = parent, .name = name, .nlink = 1});
    for (const auto& [child_name, child] : inode->children) {
      queue.emplace_back(child.get(), inode, child_name);
    }
  }
  if (records_.size() > (uint64_t{1} << 32)) return absl::InvalidArgumentError("too many inodes");
  for (Record& r : records_) RETURN_IF_ERROR(PrepareRecord(r));
  return absl::OkStatus();
}

absl::Status Layout::PrepareRecord(Record& r) {
  const TreeInode& inode = *r.inode;
  ASSIGN_OR_RETURN(r.xattrs, EncodeXattrs(inode.xattrs));
  has_xattr_ |= !r.xattrs.empty();
  if (inode.is_dir()) {
    r.nlink = 2;
    r.dirents.emplace_back(".", r.inode);
    r.dirents.emplace_back("..", r.parent);
    for (const auto& [name, child] : inode.children) {
      r.dirents.emplace_back(name, child.get());
      if (child->is_dir()) ++r.nlink;
    }
    std::sort(r.dirents.begin(), r.dirents.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    r.data_size = PackDirents(r);
  } else if (S_ISLNK(inode.mode)) {
    if (inode.symlink.empty() || inode.symlink.size() >= kBlockSize) {
      return absl::InvalidArgumentError(
          StrCat("symlink \"", r.name, "\": target length ", inode.symlink.size()));
    }
    r.data_size = inode.symlink.size();
  }
  if (inode.is_regular() && inode.size > 0) {
    uint64_t want = (inode.size + options_.chunk_size - 1) / options_.chunk_size;
    if (inode.chunks.size() != want) {
      return absl::InvalidArgumentError(StrCat("file \"", r.name, "\" has ", inode.chunks.size(),
                                               " chunks, its size needs ", want,
                                               " (layers built with different chunk sizes?)"));
    }
  }
  r.extended = inode.uid > 0xffff || inode.gid > 0xffff || r.nlink > 0xffff ||
               r.size() > 0xffffffffull || r.name.ends_with(".pyc");
  return absl::OkStatus();
}

void Layout::PlaceInodes(uint64_t start) {
  meta_blkaddr_ = static_cast<uint32_t>(start / kBlockSize - 1);  // root nid is then 128, never 0
  cursor_ = start;
  for (Record& r : records_) {
    cursor_ = AlignUp(cursor_, kInodeSlotSize);
    uint64_t head = r.inode_size() + r.xattrs.size();
    bool has_data = r.inode->is_dir() || S_ISLNK(r.inode->mode);
    if (has_data && head + r.data_size <= kBlockSize) {
      r.layout = DataLayout::kFlatInline;  // the whole payload follows the inode, in its block
      if (cursor_ / kBlockSize != (cursor_ + head + r.data_size - 1) / kBlockSize) {
        cursor_ = AlignUp(cursor_, kBlockSize);
      }
      head += r.data_size;
    } else if (r.inode->is_regular() && r.inode->size > 0) {
      r.layout = DataLayout::kChunkBased;
      uint64_t count = (r.inode->size + options_.chunk_size - 1) / options_.chunk_size;
      head = AlignUp(r.inode_size() + r.xattrs.size(), 8) + count * sizeof(ChunkIndex);
    } else {
      r.layout = r.inode->is_regular() ? DataLayout::kChunkBased : DataLayout::kFlatPlain;
    }
    r.offset = cursor_;
    r.nid = (cursor_ - uint64_t{meta_blkaddr_} * kBlockSize) / kInodeSlotSize;
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
  sb.root_nid = static_cast<uint16_t>(records_[0].nid);
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

void Layout::WriteInode(const Record& r) {
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
  uint16_t icount =
      r.xattrs.empty()
          ? 0
          : static_cast<uint16_t>((r.xattrs.size() - sizeof(XattrIbodyHeader)) / 4 + 1);
  auto ino = static_cast<uint32_t>(&r - records_.data() + 1);
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
  std::memcpy(out_.data() + pos, r.xattrs.data(), r.xattrs.size());
  pos += r.xattrs.size();
  if (S_ISLNK(in.mode)) {
    uint64_t at = r.layout == DataLayout::kFlatInline ? pos : uint64_t{r.blkaddr} * kBlockSize;
    std::memcpy(out_.data() + at, in.symlink.data(), in.symlink.size());
  }
  if (r.layout == DataLayout::kChunkBased) {
    pos = AlignUp(pos, 8);
    for (const ChunkRef& c : in.chunks) {
      ChunkIndex index{static_cast<uint16_t>(c.ci_index & 0xffff),
                       static_cast<uint16_t>((c.blob_index + 1) | ((c.ci_index >> 16) << 8)),
                       static_cast<uint32_t>(c.uncompressed_offset / kBlockSize)};
      if (c.hole) index = {0, 0, 0xFFFFFFFF};
      Store(out_, pos, index);
      pos += sizeof(ChunkIndex);
    }
  }
}

void Layout::WriteDirectory(const Record& r) {
  uint64_t base = r.layout == DataLayout::kFlatInline ? r.offset + r.inode_size() + r.xattrs.size()
                                                      : uint64_t{r.blkaddr} * kBlockSize;
  size_t begin = 0;
  for (size_t block = 0; block < r.block_ends.size(); ++block) {
    size_t end = r.block_ends[block];
    uint64_t block_start = base + block * kBlockSize;
    uint64_t nameoff = (end - begin) * sizeof(Dirent);
    for (size_t i = begin; i < end; ++i) {
      const auto& [name, target] = r.dirents[i];
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
  for (const Record& r : records_) {
    WriteInode(r);
    if (r.inode->is_dir()) WriteDirectory(r);
  }
}

void Layout::WriteChunkTable() {
  std::unordered_map<uint64_t, size_t> seen;
  for (const Record& r : records_) {
    for (const ChunkRef& c : r.inode->chunks) {
      if (c.hole) continue;
      uint64_t key = (uint64_t{c.blob_index} << 32) | c.ci_index;
      if (!seen.emplace(key, chunk_table_.size()).second) continue;
      ChunkInfo info{};
      std::memcpy(info.digest, c.digest.bytes.data(), 32);
      info.blob_index = c.blob_index;
      info.flags = c.compressed ? uint32_t{kChunkCompressed} : 0u;
      info.compressed_size = c.compressed_size;
      info.uncompressed_size = c.uncompressed_size;
      info.compressed_offset = c.compressed_offset;
      info.uncompressed_offset = c.uncompressed_offset;
      info.file_offset = c.file_offset;
      info.index = c.ci_index;
      chunk_table_.push_back(info);
    }
  }
  std::sort(chunk_table_.begin(), chunk_table_.end(), [](const ChunkInfo& a, const ChunkInfo& b) {
    int cmp = std::memcmp(a.digest, b.digest, 32);
    if (cmp != 0) return cmp < 0;
    return std::tie(a.blob_index, a.index) < std::tie(b.blob_index, b.index);
  });
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
  WriteChunkTable();
  out_.assign(AlignUp(chunk_table_offset_ + chunk_table_.size() * sizeof(ChunkInfo), kBlockSize),
              '\0');
  if (!chunk_table_.empty()) {
    std::memcpy(out_.data() + chunk_table_offset_, chunk_table_.data(),
                chunk_table_.size() * sizeof(ChunkInfo));
  }
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
