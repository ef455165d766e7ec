// Reads the upstream RAFS v6 test vectors in ../shared/fixtures/nydus (written by nydus-image):
// decoding them correctly is what makes Naiad compatible with Nydus images in the wild.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/test_files.h"
#include "rafs/blob_meta.h"
#include "rafs/bootstrap.h"
#include "rafs/compression.h"

namespace naiad::rafs {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kBlobId[] = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef";
constexpr char kTocBlobId[] = "2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca";

std::string FixturePath(const std::string& relative) {
  return ::naiad::testing::NydusFixturePath(relative);
}

class FixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(FixturePath(""))) {
      GTEST_SKIP() << "no upstream fixtures at " << FixturePath("") << " (../shared absent)";
    }
  }
};

TEST_F(FixtureTest, BootstrapSuperblockAndBlobTable) {
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::Open(FixturePath("bootstrap/rafs-v6-2.2.boot")));
  EXPECT_EQ(boot->root_nid(), 128u);
  EXPECT_EQ(boot->superblock().inos, 3u);
  EXPECT_EQ(boot->chunk_size(), 1u << 20);
  EXPECT_EQ(boot->compressor(), Compressor::kZstd);
  EXPECT_EQ(boot->digester(), DigestAlgorithm::kBlake3);
  EXPECT_EQ(boot->ext().flags, 0x194u);
  ASSERT_EQ(boot->blobs().size(), 1u);
  const BlobInfo& blob = boot->blobs()[0];
  EXPECT_EQ(blob.id, kBlobId);
  EXPECT_EQ(blob.chunk_count, 2u);
  EXPECT_EQ(blob.compressed_size, 14554u);
  EXPECT_EQ(blob.features, 0x70000021u);
  EXPECT_EQ(blob.ci_offset, 8314u);
}

TEST_F(FixtureTest, TreeListing) {
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::Open(FixturePath("bootstrap/rafs-v6-2.2.boot")));
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> entries, boot->ReadDir(boot->root_nid()));
  std::vector<std::string> names;
  for (const DirEntry& e : entries) names.push_back(e.name);
  EXPECT_THAT(names, ElementsAre(".", "..", "lib.rs", "sync_io.rs"));
  ASSERT_OK_AND_ASSIGN(uint64_t nid, boot->Resolve("/lib.rs"));
  ASSERT_OK_AND_ASSIGN(Inode inode, boot->GetInode(nid));
  EXPECT_TRUE(inode.is_regular());
  EXPECT_EQ(inode.size, 16931u);
  EXPECT_THAT(boot->Resolve("/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

// Both files decompress from the blob and match the chunk digests the bootstrap records.
TEST_F(FixtureTest, FilesDecompressAndMatchTheirChunkDigests) {
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::Open(FixturePath("bootstrap/rafs-v6-2.2.boot")));
  ASSERT_OK_AND_ASSIGN(std::string blob,
                       ReadFileToString(FixturePath(std::string("blobs/") + kBlobId)));
  std::map<std::string, uint64_t> sizes = {{"/lib.rs", 16931}, {"/sync_io.rs", 13400}};
  for (const auto& [path, size] : sizes) {
    ASSERT_OK_AND_ASSIGN(uint64_t nid, boot->Resolve(path));
    ASSERT_OK_AND_ASSIGN(std::vector<ChunkRef> chunks, boot->FileChunks(nid));
    ASSERT_EQ(chunks.size(), 1u) << path;
    const ChunkRef& c = chunks[0];
    EXPECT_EQ(c.uncompressed_size, size);
    EXPECT_TRUE(c.compressed);
    ASSERT_LE(c.compressed_offset + c.compressed_size, blob.size());
    ASSERT_OK_AND_ASSIGN(std::string data, Decompress(Compressor::kZstd,
                                                      std::string_view(blob).substr(
                                                          c.compressed_offset, c.compressed_size),
                                                      c.uncompressed_size));
    EXPECT_EQ(Digest::Of(DigestAlgorithm::kBlake3, data), c.digest) << path;
    EXPECT_NE(data.find("Copyright"), std::string::npos) << path;
  }
}

TEST_F(FixtureTest, BlobTailTocChunkInfoAndDigests) {
  ASSERT_OK_AND_ASSIGN(std::string blob,
                       ReadFileToString(FixturePath(std::string("blobs/") + kBlobId)));
  BlobReadFn read = MemoryBlobReader(blob);
  ASSERT_OK_AND_ASSIGN(BlobTail tail, ReadBlobTail(read, blob.size()));
  std::vector<std::string> names;
  for (const TocSection& s : tail.sections) names.push_back(s.name);
  EXPECT_THAT(names, ElementsAre("image.blob", "blob.meta", "blob.meta.header", "blob.digest"));
  EXPECT_EQ(tail.toc_size, 1024u);
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::Open(FixturePath("bootstrap/rafs-v6-2.2.boot")));
  EXPECT_EQ(tail.toc_digest.Hex(), boot->blobs()[0].toc_digest_hex);

  ASSERT_OK_AND_ASSIGN(std::vector<ChunkMeta> meta, ReadChunkMeta(read, tail));
  ASSERT_EQ(meta.size(), 2u);
  EXPECT_EQ(meta[0].compressed_offset, 0u);
  EXPECT_EQ(meta[0].compressed_size, 4828u);
  EXPECT_EQ(meta[0].uncompressed_size, 16931u);
  EXPECT_EQ(meta[1].compressed_offset, 4828u);
  EXPECT_EQ(meta[1].uncompressed_offset, 20480u);
  EXPECT_EQ(meta[1].uncompressed_size, 13400u);

  ASSERT_OK_AND_ASSIGN(std::vector<Digest> digests,
                       ReadChunkDigests(read, tail, DigestAlgorithm::kBlake3));
  ASSERT_EQ(digests.size(), 2u);
  std::vector<ChunkInfo> table = boot->ChunkTable();
  for (const ChunkInfo& info : table) {
    EXPECT_EQ(std::memcmp(digests[info.index].bytes.data(), info.digest, 32), 0);
  }
}

// A blob that carries its own bootstrap: TOC -> image.boot -> a bootstrap naming this blob.
TEST_F(FixtureTest, TocBlobCarriesItsBootstrap) {
  ASSERT_OK_AND_ASSIGN(std::string blob,
                       ReadFileToString(FixturePath(std::string("toc/") + kTocBlobId)));
  EXPECT_EQ(Digest::Of(DigestAlgorithm::kSha256, blob).Hex(), kTocBlobId);
  BlobReadFn read = MemoryBlobReader(blob);
  ASSERT_OK_AND_ASSIGN(BlobTail tail, ReadBlobTail(read, blob.size()));
  ASSERT_NE(tail.Find("image.boot"), nullptr);
  EXPECT_EQ(tail.Find("image.boot")->offset, 7997u);
  ASSERT_OK_AND_ASSIGN(std::string boot_bytes, ReadInlineBootstrap(read, tail));
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(boot_bytes));
  ASSERT_EQ(boot->blobs().size(), 1u);
  ASSERT_OK_AND_ASSIGN(std::vector<ChunkMeta> meta, ReadChunkMeta(read, tail));
  EXPECT_EQ(meta.size(), boot->blobs()[0].chunk_count);
  // Every file's chunks decompress to their digests.
  std::vector<uint64_t> dirs = {boot->root_nid()};
  int files = 0;
  while (!dirs.empty()) {
    uint64_t dir = dirs.back();
    dirs.pop_back();
    ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> entries, boot->ReadDir(dir));
    for (const DirEntry& e : entries) {
      if (e.name == "." || e.name == "..") continue;
      if (e.type == FileType::kDirectory) dirs.push_back(e.nid);
      if (e.type != FileType::kRegular) continue;
      ++files;
      ASSERT_OK_AND_ASSIGN(std::vector<ChunkRef> chunks, boot->FileChunks(e.nid));
      for (const ChunkRef& c : chunks) {
        std::string_view raw =
            std::string_view(blob).substr(c.compressed_offset, c.compressed_size);
        ASSERT_OK_AND_ASSIGN(std::string data,
                             Decompress(c.compressed ? boot->compressor() : Compressor::kNone, raw,
                                        c.uncompressed_size));
        EXPECT_EQ(Digest::Of(boot->digester(), data), c.digest) << e.name;
      }
    }
  }
  EXPECT_GT(files, 0);
}

TEST_F(FixtureTest, CorruptedBootstrapsAreRejectedWithReasons) {
  ASSERT_OK_AND_ASSIGN(std::string good,
                       ReadFileToString(FixturePath("bootstrap/rafs-v6-2.2.boot")));
  std::string bad_magic = good;
  bad_magic[1024] ^= 0xff;
  EXPECT_THAT(Bootstrap::FromBytes(bad_magic),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("magic")));
  EXPECT_THAT(Bootstrap::FromBytes(good.substr(0, 1000)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("too small")));
  std::string bad_chunk = good;
  bad_chunk[1152 + 20] = 3;  // chunk size no longer a power of two
  EXPECT_THAT(Bootstrap::FromBytes(bad_chunk),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chunk size")));
  std::string truncated = good.substr(0, 16384);  // chunk table cut off
  EXPECT_THAT(Bootstrap::FromBytes(truncated),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chunk table")));
}

}  // namespace
}  // namespace naiad::rafs
