// File: rafs/layout.h
//
// The RAFS v6 on-disk format, in one header: every structure Naiad reads or writes in a Nydus
// bootstrap ("image.boot") or data blob, with its size and field offsets checked at compile time.
// docs/formats/rafs-v6.md describes the format in prose; this header is the normative layout.
//
// A RAFS v6 bootstrap is a valid EROFS image (Linux fs/erofs) whose regular-file data lives on
// "extra devices", one per data blob, addressed through chunk indexes. Nydus adds an extended
// superblock, a blob table, a chunk-info table and a prefetch table. All integers are
// little-endian; structures are packed and read by memcpy from possibly unaligned buffers.
//
// Data blob, read from its end: [chunk data][tar hdr "image.blob"][CI array + 4 KiB blob-meta
// header][tar hdr "blob.meta"][chunk digests][tar hdr "blob.digest"][optional zstd bootstrap]
// [tar hdr "image.boot"][TOC entries][tar hdr "rafs.blob.toc"].
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

static_assert(std::endian::native == std::endian::little,
              "RAFS structures are little-endian and read in place");

namespace naiad::rafs {

// ---------------------------------------------------------------------------------------------
// Constants.

inline constexpr uint32_t kBlockSize = 4096;
inline constexpr uint8_t kBlockSizeBits = 12;
inline constexpr uint32_t kErofsMagic = 0xE0F5E1E2;
inline constexpr uint64_t kSuperblockOffset = 1024;
inline constexpr uint64_t kExtSuperblockOffset = 1152;
inline constexpr uint64_t kDeviceTableOffset = 1408;
inline constexpr uint16_t kDeviceSlotOffset = kDeviceTableOffset / 128;  // s_devt_slotoff = 11

inline constexpr uint32_t kDefaultChunkSize = 1 << 20;
inline constexpr uint32_t kMinChunkSize = 1 << 12;
inline constexpr uint32_t kMaxChunkSize = 1 << 24;
inline constexpr uint32_t kMaxChunksPerBlob = 1 << 24;
inline constexpr uint32_t kMaxBlobs = 254;  // device ids 1..254 in a chunk index
inline constexpr uint32_t kMaxNameLength = 255;

// EROFS feature bits.
inline constexpr uint32_t kFeatureCompatSbChecksum = 0x1;
inline constexpr uint32_t kFeatureCompatRafsV6 = 0x4000'0000;
inline constexpr uint32_t kFeatureIncompatChunkedFile = 0x4;
inline constexpr uint32_t kFeatureIncompatDeviceTable = 0x8;
inline constexpr uint32_t kRafsV6Incompat =
    kFeatureIncompatChunkedFile | kFeatureIncompatDeviceTable;

// RafsSuperFlags (extended superblock s_flags).
enum SuperFlags : uint64_t {
  kFlagCompressionNone = 0x1,
  kFlagCompressionLz4 = 0x2,
  kFlagHashBlake3 = 0x4,
  kFlagHashSha256 = 0x8,
  kFlagExplicitUidGid = 0x10,
  kFlagHasXattr = 0x20,
  kFlagCompressionGzip = 0x40,
  kFlagCompressionZstd = 0x80,
  kFlagInlinedChunkDigest = 0x100,
  kFlagTarfsMode = 0x200,
  kFlagEncryptionNone = 0x0100'0000,
  kFlagEncryptionAes128Xts = 0x0200'0000,
};
inline constexpr uint64_t kFlagCompressionMask =
    kFlagCompressionNone | kFlagCompressionLz4 | kFlagCompressionGzip | kFlagCompressionZstd;
inline constexpr uint64_t kFlagHashMask = kFlagHashBlake3 | kFlagHashSha256;

// Compression algorithm ids (blob table, blob-meta header).
enum class Compressor : uint32_t { kNone = 0, kLz4Block = 1, kGzip = 2, kZstd = 3 };
// Digest algorithm ids (blob table).
enum class Digester : uint32_t { kBlake3 = 0, kSha256 = 1 };

// BlobFeatures (blob table entry, blob-meta header).
enum BlobFeatures : uint32_t {
  kBlobAligned = 0x1,
  kBlobInlinedFsMeta = 0x2,
  kBlobChunkInfoV2 = 0x4,
  kBlobZran = 0x8,
  kBlobSeparate = 0x10,
  kBlobInlinedChunkDigest = 0x20,
  kBlobTarfs = 0x40,
  kBlobBatch = 0x80,
  kBlobEncrypted = 0x100,
  kBlobHasTarHeader = 0x1000'0000,
  kBlobHasToc = 0x2000'0000,
  kBlobCapTarToc = 0x4000'0000,
};

// BlobChunkFlags (chunk info records).
enum ChunkFlags : uint32_t {
  kChunkCompressed = 0x1,
  kChunkHole = 0x2,
  kChunkEncrypted = 0x4,
  kChunkBatch = 0x8,
  kChunkHasCrc32 = 0x10,
};

// ---------------------------------------------------------------------------------------------
// Superblocks.

// The EROFS superblock, at byte 1024.
struct __attribute__((packed)) ErofsSuperblock {
  uint32_t magic;           // kErofsMagic
  uint32_t checksum;        // 0 for RAFS
  uint32_t feature_compat;  // includes kFeatureCompatRafsV6
  uint8_t blkszbits;        // 12
  uint8_t extslots;         // 0
  uint16_t root_nid;
  uint64_t inos;        // inode count
  uint64_t build_time;  // seconds; compact inodes report this as their mtime
  uint32_t build_time_nsec;
  uint32_t blocks;         // total blocks of all devices
  uint32_t meta_blkaddr;   // nid 0 is at meta_blkaddr * 4096
  uint32_t xattr_blkaddr;  // 0: no shared xattrs
  uint8_t uuid[16];
  uint8_t volume_name[16];
  uint32_t feature_incompat;  // kRafsV6Incompat
  uint16_t u;                 // available compression algorithms (unused)
  uint16_t extra_devices;     // number of data blobs
  uint16_t devt_slotoff;      // device table at devt_slotoff * 128
  uint8_t reserved[38];
};
static_assert(sizeof(ErofsSuperblock) == 128);
static_assert(offsetof(ErofsSuperblock, root_nid) == 14);
static_assert(offsetof(ErofsSuperblock, meta_blkaddr) == 40);
static_assert(offsetof(ErofsSuperblock, feature_incompat) == 80);
static_assert(offsetof(ErofsSuperblock, devt_slotoff) == 88);

// The RAFS v6 extended superblock, at byte 1152.
struct __attribute__((packed)) RafsExtSuperblock {
  uint64_t flags;                  // SuperFlags
  uint64_t blob_table_offset;      // 4 KiB aligned
  uint32_t blob_table_size;        // multiple of sizeof(BlobTableEntry)
  uint32_t chunk_size;             // power of two, 4 KiB .. 16 MiB
  uint64_t chunk_table_offset;     // 4 KiB aligned
  uint64_t chunk_table_size;       // multiple of sizeof(ChunkInfo)
  uint64_t prefetch_table_offset;  // 0 if none
  uint32_t prefetch_table_size;    // bytes, multiple of 4
  uint32_t padding;
  uint8_t reserved[200];
};
static_assert(sizeof(RafsExtSuperblock) == 256);
static_assert(offsetof(RafsExtSuperblock, chunk_size) == 20);
static_assert(offsetof(RafsExtSuperblock, prefetch_table_offset) == 40);

// One per data blob, from byte 1408: the EROFS view of a blob as an extra device.
struct __attribute__((packed)) DeviceSlot {
  char blob_id[64];         // sha256 hex, not NUL-terminated
  uint32_t blocks;          // uncompressed blob size / 4096
  uint32_t mapped_blkaddr;  // position in a flattened block device
  uint8_t reserved[56];
};
static_assert(sizeof(DeviceSlot) == 128);

// One per data blob, at RafsExtSuperblock::blob_table_offset.
struct __attribute__((packed)) BlobTableEntry {
  char blob_id[64];
  uint32_t blob_index;  // == position in the table
  uint32_t chunk_size;  // == RafsExtSuperblock::chunk_size
  uint32_t chunk_count;
  uint32_t compressor;         // Compressor
  uint32_t digester;           // Digester
  uint32_t features;           // BlobFeatures
  uint64_t compressed_size;    // whole blob file for inline-meta blobs
  uint64_t uncompressed_size;  // 4 KiB aligned total of the chunks' uncompressed space
  uint32_t toc_size;           // TOC bytes including its 512-byte tar header
  uint32_t ci_compressor;      // Compressor of the chunk-info array
  uint64_t ci_offset;          // chunk-info array offset in the blob
  uint64_t ci_compressed_size;
  uint64_t ci_uncompressed_size;
  uint8_t toc_digest[32];   // sha256 of the TOC entries and their tar header
  uint8_t meta_digest[32];  // zran/ref images; 0 otherwise
  uint64_t meta_size;
  uint64_t cipher_iv_high;
  uint32_t cipher_algo;
  uint8_t reserved[36];
};
static_assert(sizeof(BlobTableEntry) == 256);
static_assert(offsetof(BlobTableEntry, compressed_size) == 88);
static_assert(offsetof(BlobTableEntry, toc_size) == 104);
static_assert(offsetof(BlobTableEntry, ci_offset) == 112);
static_assert(offsetof(BlobTableEntry, toc_digest) == 136);
static_assert(offsetof(BlobTableEntry, cipher_algo) == 216);

// ---------------------------------------------------------------------------------------------
// Inodes. Byte offset of inode `nid` = meta_blkaddr * 4096 + nid * 32.

// i_format bits.
inline constexpr uint16_t kInodeLayoutExtended = 0x1;
inline constexpr int kInodeDataLayoutShift = 1;
enum class DataLayout : uint16_t { kFlatPlain = 0, kFlatInline = 2, kChunkBased = 4 };
inline constexpr uint16_t kInodeSlotSize = 32;

struct __attribute__((packed)) CompactInode {
  uint16_t format;        // kInodeLayoutExtended clear
  uint16_t xattr_icount;  // inline xattr area = 12 + (icount - 1) * 4 bytes when non-zero
  uint16_t mode;
  uint16_t nlink;
  uint32_t size;
  uint32_t reserved;
  uint32_t u;  // raw block address, rdev, or chunk format
  uint32_t ino;
  uint16_t uid;
  uint16_t gid;
  uint32_t reserved2;
};
static_assert(sizeof(CompactInode) == 32);

struct __attribute__((packed)) ExtendedInode {
  uint16_t format;  // kInodeLayoutExtended set
  uint16_t xattr_icount;
  uint16_t mode;
  uint16_t reserved;
  uint64_t size;
  uint32_t u;
  uint32_t ino;
  uint32_t uid;
  uint32_t gid;
  uint64_t mtime;
  uint32_t mtime_nsec;
  uint32_t nlink;
  uint8_t reserved2[16];
};
static_assert(sizeof(ExtendedInode) == 64);
static_assert(offsetof(ExtendedInode, mtime) == 32);
static_assert(offsetof(ExtendedInode, nlink) == 44);

// Chunk format stored in `u` of chunk-based inodes: kChunkFormatIndexes | (log2(inode chunk
// size) - 12). The inode chunk size can exceed the superblock's when a file's chunks are
// contiguous in one blob (one index entry then covers the whole file).
inline constexpr uint32_t kChunkFormatIndexes = 0x20;
inline constexpr uint32_t kChunkFormatBlkbitsMask = 0x1f;

// One per inode chunk, after the inode and its inline xattrs, 8-byte aligned.
struct __attribute__((packed)) ChunkIndex {
  uint16_t blob_ci_lo;  // chunk-info index bits 0..15
  uint16_t blob_ci_hi;  // bits 0..7: device id = blob index + 1; bits 8..15: CI index bits 16..23
  uint32_t blkaddr;     // uncompressed offset in the blob / 4096
};
static_assert(sizeof(ChunkIndex) == 8);

// Inline extended attributes: a 12-byte header, then entries padded to 4 bytes.
struct __attribute__((packed)) XattrIbodyHeader {
  uint32_t reserved;
  uint8_t shared_count;  // 0: RAFS has no shared xattrs
  uint8_t reserved2[7];
};
static_assert(sizeof(XattrIbodyHeader) == 12);

struct __attribute__((packed)) XattrEntry {
  uint8_t name_len;    // length of the name suffix after the prefix
  uint8_t name_index;  // XattrPrefix
  uint16_t value_size;
  // followed by name suffix and value
};
static_assert(sizeof(XattrEntry) == 4);

enum class XattrPrefix : uint8_t {
  kNone = 0,
  kUser = 1,             // "user."
  kPosixAclAccess = 2,   // "system.posix_acl_access"
  kPosixAclDefault = 3,  // "system.posix_acl_default"
  kTrusted = 4,          // "trusted."
  kLustre = 5,           // "lustre."
  kSecurity = 6,         // "security."
};

// Directory blocks: dirents, then the names they point to; "." and ".." first, names sorted.
struct __attribute__((packed)) Dirent {
  uint64_t nid;
  uint16_t nameoff;   // offset of the name within the block; the first one / 12 = dirent count
  uint8_t file_type;  // FileType
  uint8_t reserved;
};
static_assert(sizeof(Dirent) == 12);

enum class FileType : uint8_t {
  kUnknown = 0,
  kRegular = 1,
  kDirectory = 2,
  kCharDevice = 3,
  kBlockDevice = 4,
  kFifo = 5,
  kSocket = 6,
  kSymlink = 7,
};

// ---------------------------------------------------------------------------------------------
// Chunk info table (RafsExtSuperblock::chunk_table_offset): one record per distinct
// (digest, blob) chunk, used by nydusd-style readers (the kernel ignores it).

struct __attribute__((packed)) ChunkInfo {
  uint8_t digest[32];  // of the uncompressed chunk
  uint32_t blob_index;
  uint32_t flags;  // ChunkFlags
  uint32_t compressed_size;
  uint32_t uncompressed_size;
  uint64_t compressed_offset;
  uint64_t uncompressed_offset;
  uint64_t file_offset;
  uint32_t index;  // position in the blob's chunk-info array
  uint32_t crc32;
};
static_assert(sizeof(ChunkInfo) == 80);
static_assert(offsetof(ChunkInfo, compressed_offset) == 48);
static_assert(offsetof(ChunkInfo, index) == 72);

// ---------------------------------------------------------------------------------------------
// Blob meta: the chunk-info ("compression context") array of a data blob, followed by this
// 4 KiB header.

inline constexpr uint32_t kBlobMetaMagic = 0xB10BB10B;

struct __attribute__((packed)) BlobMetaHeader {
  uint32_t magic;     // kBlobMetaMagic
  uint32_t features;  // BlobFeatures
  uint32_t ci_compressor;
  uint32_t ci_entries;
  uint64_t ci_offset;
  uint64_t ci_compressed_size;
  uint64_t ci_uncompressed_size;
  uint64_t ci_zran_offset;
  uint64_t ci_zran_size;
  uint32_t ci_zran_count;
  uint8_t reserved[4032];
  uint32_t magic2;  // kBlobMetaMagic
};
static_assert(sizeof(BlobMetaHeader) == 4096);
static_assert(offsetof(BlobMetaHeader, ci_zran_count) == 56);
static_assert(offsetof(BlobMetaHeader, magic2) == 4092);

// Chunk-info array record, version 1 (16 bytes; sizes stored minus one).
//   uncomp_info: bits 12..43 uncompressed offset (4 KiB aligned); bits 44..63 (usize-1) bits
//                0..19; bits 8..11 (usize-1) bits 20..23.
//   comp_info:   bits 0..39 compressed offset; bits 40..43 (csize-1) bits 20..23; bits 44..63
//                (csize-1) bits 0..19.
// A chunk is compressed iff csize != usize.
struct __attribute__((packed)) ChunkInfoV1 {
  uint64_t uncomp_info;
  uint64_t comp_info;
};
static_assert(sizeof(ChunkInfoV1) == 16);

// Chunk-info array record, version 2 (24 bytes).
//   uncomp_info: bits 0..31 uncompressed offset >> 12; bits 32..55 usize-1; bits 56..63 flags
//                (0x01 compressed, 0x02 zran, 0x04 batch, 0x08 encrypted, 0x10 has crc32).
//   comp_info:   bits 0..39 compressed offset; bits 40..63 compressed size.
//   data:        crc32 in bits 0..31 when flagged; zran/batch context otherwise.
struct __attribute__((packed)) ChunkInfoV2 {
  uint64_t uncomp_info;
  uint64_t comp_info;
  uint64_t data;
};
static_assert(sizeof(ChunkInfoV2) == 24);

// ---------------------------------------------------------------------------------------------
// TOC: the last section of a blob, entries describing every section.

enum TocFlags : uint32_t { kTocNone = 1, kTocZstd = 2, kTocLz4Block = 4 };

struct __attribute__((packed)) TocEntry {
  uint32_t flags;  // TocFlags: how the section is compressed
  uint32_t reserved;
  char name[16];  // "image.blob", "image.boot", "blob.meta", "blob.digest", ...; NUL padded
  uint8_t uncompressed_digest[32];  // sha256
  uint64_t compressed_offset;
  uint64_t compressed_size;
  uint64_t uncompressed_size;
  uint8_t reserved2[48];
};
static_assert(sizeof(TocEntry) == 128);
static_assert(offsetof(TocEntry, compressed_offset) == 56);

// Each blob section is followed by a 512-byte GNU tar header naming it ("reverse tar"): see
// tar::format::UstarHeader in tar/format.h.
inline constexpr size_t kSectionHeaderSize = 512;

inline constexpr const char* kTocNameBlob = "image.blob";
inline constexpr const char* kTocNameBootstrap = "image.boot";
inline constexpr const char* kTocNameBlobMeta = "blob.meta";
inline constexpr const char* kTocNameBlobMetaHeader = "blob.meta.header";
inline constexpr const char* kTocNameChunkDigest = "blob.digest";
inline constexpr const char* kTocNameToc = "rafs.blob.toc";

}  // namespace naiad::rafs
