#include "rafs/builder.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/test_files.h"
#include "rafs/blob_meta.h"
#include "rafs/chunk_reader.h"
#include "rafs/compression.h"
#include "rafs/tar_source.h"
#include "rafs/tree_snapshot.h"
#include "tar/tar_testing.h"

namespace naiad::rafs {
namespace {

using ::naiad::rafs::testing::DiffSnapshots;
using ::naiad::rafs::testing::SnapshotDirectory;
using ::naiad::rafs::testing::SnapshotImage;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

std::string Pseudorandom(size_t size, uint64_t seed) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    data[i] = static_cast<char>(seed >> 56);
  }
  return data;
}

std::string Compressible(size_t size) {
  std::string data;
  for (int i = 0; data.size() < size; ++i) data += "print('line " + std::to_string(i) + "')\n";
  data.resize(size);
  return data;
}

void Write(const std::string& path, const std::string& data, mode_t mode = 0644) {
  ASSERT_OK(::naiad::testing::WriteTestFile(path, data, mode));
}

// A tree with every kind of entry the builder must carry over.
class BuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-builder-"));
    src_ = dir_.Join("src");
    ASSERT_OK(CreateDirectories(src_ + "/usr/lib/python3/dist-packages"));
    ASSERT_OK(CreateDirectories(src_ + "/etc"));
    ASSERT_OK(CreateDirectories(dir_.Join("blobs")));
    Write(src_ + "/usr/lib/big.so", Pseudorandom(3 * 1024 * 1024 + 12345, 1), 0755);
    Write(src_ + "/usr/lib/big-copy.so", Pseudorandom(3 * 1024 * 1024 + 12345, 1), 0755);
    Write(src_ + "/usr/lib/python3/mod.py", Compressible(200000));
    Write(src_ + "/usr/lib/python3/mod.pyc", Compressible(5000));
    Write(src_ + "/etc/hostname", "naiad\n");
    Write(src_ + "/etc/empty", "");
    Write(src_ + "/usr/bin-suid", "#!/bin/sh\n", 04755);
    ASSERT_EQ(::symlink("../etc/hostname", (src_ + "/usr/hostname-link").c_str()), 0);
    ASSERT_EQ(::link((src_ + "/etc/hostname").c_str(), (src_ + "/etc/hostname.hard").c_str()), 0);
    ASSERT_EQ(::mkfifo((src_ + "/etc/fifo").c_str(), 0600), 0);
    if (::geteuid() == 0) {
      ASSERT_EQ(::mknod((src_ + "/etc/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
      ASSERT_EQ(::mknod((src_ + "/etc/blk").c_str(), S_IFBLK | 0600, makedev(259, 70000)), 0);
      ASSERT_EQ(::chown((src_ + "/etc/hostname").c_str(), 1000, 100000), 0);
    }
    std::string many = src_ + "/usr/share/many";
    ASSERT_OK(CreateDirectories(many));
    for (int i = 0; i < 400; ++i)
      Write(many + "/file-with-a-longish-name-" + std::to_string(i), std::to_string(i));
    if (::setxattr((src_ + "/etc/hostname").c_str(), "user.naiad", "v1", 2, 0) == 0) {
      ASSERT_EQ(::setxattr(src_.c_str(), "user.root", "r", 1, 0), 0);
      // More names than the directory source's first llistxattr buffer (256 bytes) holds.
      const std::string mod = src_ + "/usr/lib/python3/mod.py";
      for (int i = 0; i < 20; ++i) {
        std::string name = "user.a-rather-long-attribute-name-" + std::to_string(i);
        std::string value = "value " + std::to_string(i);
        ASSERT_EQ(::setxattr(mod.c_str(), name.c_str(), value.data(), value.size(), 0), 0);
      }
    }
  }

  absl::StatusOr<LayerBuildResult> Build(LayerBuildOptions options) {
    ASSIGN_OR_RETURN(auto source, DirectorySource::Create(src_));
    if (options.blob_path.empty()) options.blob_dir = dir_.Join("blobs");
    return BuildLayer(*source, options);
  }

  void ExpectImageEqualsSource(const LayerBuildResult& result) {
    ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(result.bootstrap));
    ASSERT_OK_AND_ASSIGN(auto reader,
                         LocalChunkReader::Open(*boot, {.blob_dir = dir_.Join("blobs")}));
    ASSERT_OK_AND_ASSIGN(auto want, SnapshotDirectory(src_));
    ASSERT_OK_AND_ASSIGN(auto got, SnapshotImage(*boot, *reader));
    EXPECT_EQ(DiffSnapshots(want, got), "");
  }

  TempDir dir_;
  std::string src_;
};

TEST_F(BuilderTest, ImageHoldsExactlyTheSourceTreeForEachCompressor) {
  for (Compressor compressor : {Compressor::kZstd, Compressor::kLz4Block, Compressor::kNone}) {
    SCOPED_TRACE(CompressorName(compressor));
    ASSERT_OK_AND_ASSIGN(LayerBuildResult result, Build({.compressor = compressor}));
    ASSERT_TRUE(result.blob.has_value());
    EXPECT_EQ(result.blob->compressor, compressor);
    ExpectImageEqualsSource(result);
  }
}

TEST_F(BuilderTest, SmallChunksAndSha256Digests) {
  ASSERT_OK_AND_ASSIGN(LayerBuildResult result,
                       Build({.chunk_size = 4096, .digester = DigestAlgorithm::kSha256}));
  EXPECT_GT(result.stats.chunks, 1500u);
  ExpectImageEqualsSource(result);
}

TEST_F(BuilderTest, IdenticalChunksAreStoredOnce) {
  ASSERT_OK_AND_ASSIGN(LayerBuildResult result, Build({}));
  EXPECT_EQ(result.stats.chunks_deduplicated, 4u);  // big-copy.so's four chunks
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(result.bootstrap));
  ASSERT_OK_AND_ASSIGN(auto a, boot->FileChunks(*boot->Resolve("/usr/lib/big.so")));
  ASSERT_OK_AND_ASSIGN(auto b, boot->FileChunks(*boot->Resolve("/usr/lib/big-copy.so")));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].ci_index, b[i].ci_index);
}

TEST_F(BuilderTest, UncompressedBlobsKeepChunksAtTheirUncompressedOffsets) {
  ASSERT_OK_AND_ASSIGN(LayerBuildResult result, Build({.compressor = Compressor::kNone}));
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(result.bootstrap));
  for (const ChunkInfo& info : boot->ChunkTable()) {
    EXPECT_EQ(info.compressed_offset, info.uncompressed_offset);
    EXPECT_EQ(info.uncompressed_offset % kBlockSize, 0u);
  }
}

TEST_F(BuilderTest, BlobIsSelfDescribingWithInlineBootstrap) {
  ASSERT_OK_AND_ASSIGN(LayerBuildResult result, Build({.inline_bootstrap = true}));
  ASSERT_OK_AND_ASSIGN(std::string blob, ReadFileToString(result.blob_path));
  BlobReadFn read = MemoryBlobReader(blob);
  ASSERT_OK_AND_ASSIGN(BlobTail tail, ReadBlobTail(read, blob.size()));
  EXPECT_EQ(tail.toc_digest.Hex(), result.blob->toc_digest_hex);
  ASSERT_OK_AND_ASSIGN(std::vector<ChunkMeta> meta, ReadChunkMeta(read, tail));
  EXPECT_EQ(meta.size(), result.blob->chunk_count);
  ASSERT_OK_AND_ASSIGN(std::vector<Digest> digests,
                       ReadChunkDigests(read, tail, DigestAlgorithm::kBlake3));
  EXPECT_EQ(digests.size(), meta.size());
  ASSERT_OK_AND_ASSIGN(std::string inline_boot, ReadInlineBootstrap(read, tail));
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(inline_boot));
  EXPECT_EQ(boot->blobs()[0].id, result.blob->id);
  // The id covers everything before the inline bootstrap.
  EXPECT_EQ(Digest::Of(DigestAlgorithm::kSha256,
                       std::string_view(blob).substr(0, tail.Find("image.boot")->offset))
                .Hex(),
            result.blob->id);
}

TEST_F(BuilderTest, BlobIdIsTheFileDigestWithoutInlineBootstrap) {
  ASSERT_OK_AND_ASSIGN(LayerBuildResult result, Build({}));
  ASSERT_OK_AND_ASSIGN(std::string blob, ReadFileToString(result.blob_path));
  EXPECT_EQ(Digest::Of(DigestAlgorithm::kSha256, blob).Hex(), result.blob->id);
  EXPECT_EQ(result.blob_path, dir_.Join("blobs/") + result.blob->id);
}

TEST_F(BuilderTest, ChunkDictionaryAvoidsStoringKnownChunks) {
  ASSERT_OK_AND_ASSIGN(LayerBuildResult base, Build({}));
  std::string dict = dir_.Join("base.boot");
  ASSERT_OK(WriteFileAtomically(dict, base.bootstrap));
  Write(src_ + "/etc/new-file", "only in the second layer");
  ASSERT_OK_AND_ASSIGN(LayerBuildResult next, Build({.chunk_dicts = {dict}}));
  EXPECT_EQ(next.stats.chunks_stored, 1u);
  EXPECT_GT(next.stats.chunks_from_dict, 400u);
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(next.bootstrap));
  ASSERT_EQ(boot->blobs().size(), 2u);
  ExpectImageEqualsSource(next);
}

TEST_F(BuilderTest, PrefetchListIsRecorded) {
  ASSERT_OK_AND_ASSIGN(
      LayerBuildResult result,
      Build({.prefetch_paths = {"/usr/lib/python3", "/etc/hostname", "/nonexistent"}}));
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(result.bootstrap));
  ASSERT_EQ(boot->prefetch_nids().size(), 2u);
  EXPECT_EQ(boot->prefetch_nids()[0], *boot->Resolve("/usr/lib/python3"));
  EXPECT_EQ(boot->prefetch_nids()[1], *boot->Resolve("/etc/hostname"));
}

// Checked against the bootstrap itself: the tree snapshots compared elsewhere read the source
// through DirectorySource too, so they cannot see an xattr it misses.
TEST_F(BuilderTest, AFileWithManyXattrsKeepsThemAll) {
  const std::string mod = src_ + "/usr/lib/python3/mod.py";
  if (::getxattr(mod.c_str(), "user.a-rather-long-attribute-name-19", nullptr, 0) < 0) {
    GTEST_SKIP() << "no user xattrs on this file system";
  }
  ASSERT_OK_AND_ASSIGN(LayerBuildResult result, Build({}));
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(result.bootstrap));
  ASSERT_OK_AND_ASSIGN(uint64_t nid, boot->Resolve("/usr/lib/python3/mod.py"));
  ASSERT_OK_AND_ASSIGN(auto xattrs, boot->Xattrs(nid));
  ASSERT_EQ(xattrs.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    std::string name = "user.a-rather-long-attribute-name-" + std::to_string(i);
    auto it =
        std::find_if(xattrs.begin(), xattrs.end(), [&](const auto& x) { return x.first == name; });
    ASSERT_NE(it, xattrs.end()) << name;
    EXPECT_EQ(it->second, "value " + std::to_string(i));
  }
}

TEST_F(BuilderTest, WhiteoutsBecomeOverlayfsForm) {
  Write(src_ + "/etc/.wh.removed", "");
  ASSERT_OK(CreateDirectories(src_ + "/opaque"));
  Write(src_ + "/opaque/.wh..wh..opq", "");
  Write(src_ + "/opaque/kept", "x");
  ASSERT_OK_AND_ASSIGN(LayerBuildResult result, Build({}));
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(result.bootstrap));
  ASSERT_OK_AND_ASSIGN(Inode whiteout, boot->GetInode(*boot->Resolve("/etc/removed")));
  EXPECT_TRUE(S_ISCHR(whiteout.mode));
  EXPECT_EQ(whiteout.rdev, 0u);
  EXPECT_THAT(boot->Resolve("/etc/.wh.removed"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  ASSERT_OK_AND_ASSIGN(auto xattrs, boot->Xattrs(*boot->Resolve("/opaque")));
  EXPECT_THAT(xattrs,
              ::testing::Contains(std::make_pair(std::string(kOpaqueXattr), std::string("y"))));
  EXPECT_THAT(boot->Resolve("/opaque/.wh..wh..opq"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(BuilderTest, BadOptionsAreRejected) {
  EXPECT_THAT(Build({.chunk_size = 3000}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("power of two")));
  EXPECT_THAT(Build({.chunk_size = 32 << 20}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("16 MiB")));
  for (int level : {0, -1, 20, 22}) {
    EXPECT_THAT(Build({.compression_level = level}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(StrCat("compression level ", level, ": must be from 1"))));
  }
  // Nothing was left behind by the rejected builds.
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Join("blobs")));
}

TEST_F(BuilderTest, OutputIsDeterministic) {
  ASSERT_OK_AND_ASSIGN(LayerBuildResult a, Build({}));
  ASSERT_OK_AND_ASSIGN(LayerBuildResult b, Build({}));
  EXPECT_EQ(a.blob->id, b.blob->id);
  EXPECT_EQ(a.bootstrap, b.bootstrap);
}

TEST_F(BuilderTest, OutputDoesNotDependOnThreadsOrWindows) {
  ASSERT_OK_AND_ASSIGN(LayerBuildResult want, Build({}));
  // One byte of window or of write queue: every chunk waits for the one before it.
  for (LayerBuildOptions options :
       {LayerBuildOptions{.threads = 1, .window_bytes = 1, .write_queue_bytes = 1},
        LayerBuildOptions{.threads = 4, .window_bytes = 64 << 20, .write_queue_bytes = 1},
        LayerBuildOptions{.threads = 3, .window_bytes = 5000, .write_queue_bytes = 64 << 20}}) {
    SCOPED_TRACE(::testing::Message()
                 << options.threads << " threads, window " << options.window_bytes
                 << ", write queue " << options.write_queue_bytes);
    for (Compressor compressor : {Compressor::kZstd, Compressor::kNone}) {
      options.compressor = compressor;
      ASSERT_OK_AND_ASSIGN(LayerBuildResult a, Build({.compressor = compressor}));
      ASSERT_OK_AND_ASSIGN(LayerBuildResult b, Build(options));
      EXPECT_EQ(a.blob->id, b.blob->id);
      EXPECT_EQ(a.bootstrap, b.bootstrap);
      EXPECT_EQ(a.stats.chunks_stored, b.stats.chunks_stored);
      if (compressor == Compressor::kZstd) {
        EXPECT_EQ(b.blob->id, want.blob->id);
      }
    }
  }
}

TEST_F(BuilderTest, CompressionLevelReachesEveryZstdChunk) {
  ASSERT_OK_AND_ASSIGN(LayerBuildResult fast, Build({.compression_level = 1}));
  ExpectImageEqualsSource(fast);
  ASSERT_OK_AND_ASSIGN(LayerBuildResult small, Build({.compression_level = 9}));
  ExpectImageEqualsSource(small);
  ASSERT_OK_AND_ASSIGN(LayerBuildResult standard, Build({}));
  auto stored_size = [](const LayerBuildResult& result) -> absl::StatusOr<uint64_t> {
    ASSIGN_OR_RETURN(auto boot, Bootstrap::FromBytes(result.bootstrap));
    ASSIGN_OR_RETURN(uint64_t nid, boot->Resolve("/usr/lib/python3/mod.py"));
    ASSIGN_OR_RETURN(auto chunks, boot->FileChunks(nid));
    uint64_t size = 0;
    for (const auto& chunk : chunks) size += chunk.compressed_size;
    return size;
  };
  // Each level stores mod.py's chunk differently (on this repetitive text, a higher level is not
  // even the smallest), as zstd's command line does at the same level.
  ASSERT_OK_AND_ASSIGN(uint64_t fast_size, stored_size(fast));
  ASSERT_OK_AND_ASSIGN(uint64_t small_size, stored_size(small));
  ASSERT_OK_AND_ASSIGN(uint64_t standard_size, stored_size(standard));
  EXPECT_NE(fast_size, standard_size);
  EXPECT_NE(small_size, standard_size);
  EXPECT_NE(small_size, fast_size);
  ASSERT_OK_AND_ASSIGN(LayerBuildResult three, Build({.compression_level = 3}));
  EXPECT_EQ(three.blob->id, standard.blob->id);  // 3 is the default
  // A level is zstd's: other compressors ignore it.
  ASSERT_OK_AND_ASSIGN(LayerBuildResult lz4,
                       Build({.compressor = Compressor::kLz4Block, .compression_level = 1}));
  ASSERT_OK_AND_ASSIGN(LayerBuildResult lz4_default, Build({.compressor = Compressor::kLz4Block}));
  EXPECT_EQ(lz4.blob->id, lz4_default.blob->id);
}

// Writes a sparse file: `size` bytes of hole with `data` at the given offsets. False when the file
// system stores the holes anyway (nothing to test then).
bool WriteSparse(const std::string& path, uint64_t size,
                 const std::vector<std::pair<uint64_t, std::string>>& data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  EXPECT_GE(fd.get(), 0);
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  for (const auto& [offset, bytes] : data) {
    EXPECT_EQ(::pwrite(fd.get(), bytes.data(), bytes.size(), static_cast<off_t>(offset)),
              static_cast<ssize_t>(bytes.size()));
  }
  struct stat st;
  EXPECT_EQ(::fstat(fd.get(), &st), 0);
  return static_cast<uint64_t>(st.st_blocks) * 512 < size / 2;
}

// A directory's sparse files: SEEK_DATA finds the holes, which become hole chunks.
TEST_F(BuilderTest, HolesOfSparseFilesInDirectoriesAreHoleChunks) {
  constexpr uint64_t kSize = (uint64_t{200} << 20) + 77;  // the last chunk is short
  if (!WriteSparse(src_ + "/disk.img", kSize,
                   {{0, "head"}, {(uint64_t{100} << 20) - 2, "across"}, {kSize - 3, "end"}})) {
    GTEST_SKIP() << "the file system here does not keep holes";
  }
  ASSERT_OK_AND_ASSIGN(LayerBuildResult result, Build({}));
  // 201 chunks, of which four hold data: the first, the two around 100 MiB and the last.
  EXPECT_EQ(result.stats.hole_chunks, 201u - 4);
  ExpectImageEqualsSource(result);  // the holes read back as zeros
  ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(result.bootstrap));
  ASSERT_OK_AND_ASSIGN(auto chunks, boot->FileChunks(*boot->Resolve("/disk.img")));
  ASSERT_EQ(chunks.size(), 201u);
  EXPECT_FALSE(chunks[0].hole);
  EXPECT_TRUE(chunks[1].hole);
  EXPECT_FALSE(chunks[99].hole);
  EXPECT_FALSE(chunks[100].hole);
  EXPECT_FALSE(chunks[200].hole);
  EXPECT_EQ(chunks[200].uncompressed_size, 77u);
}

// Holes of a GNU sparse tar entry at a small chunk size: a hole becomes hole chunks only where it
// spans a whole chunk (a chunk with any data is stored with its zeros), including a short last
// chunk; the file reads back exactly.
TEST_F(BuilderTest, HolesOfSparseTarEntriesAreHoleChunks) {
  constexpr uint64_t kSize = 10 * 4096 + 100;
  const std::vector<std::pair<uint64_t, std::string>> segments = {
      {4096 + 5, "in chunk 1"}, {3 * 4096 - 2, "2 and 3"}, {8 * 4096, std::string(4096, 'x')}};
  std::string map, stored, want(kSize, '\0');
  for (const auto& [offset, bytes] : segments) {
    StrAppend(&map, map.empty() ? "" : ",", offset, ",", bytes.size());
    stored += bytes;
    want.replace(offset, bytes.size(), bytes);
  }
  tar::testing::TarBuilder tar;
  tar.Pax({{"GNU.sparse.map", map},
           {"GNU.sparse.realsize", std::to_string(kSize)},
           {"GNU.sparse.name", "f"}});
  tar.Add({.name = "GNUSparseFile.0/f"}, stored);
  for (Compressor compressor : {Compressor::kZstd, Compressor::kNone}) {
    SCOPED_TRACE(CompressorName(compressor));
    ASSERT_OK_AND_ASSIGN(
        auto source, TarSource::FromStream(std::make_unique<tar::StringInputStream>(tar.Finish())));
    ASSERT_OK_AND_ASSIGN(
        LayerBuildResult result,
        BuildLayer(*source,
                   {.chunk_size = 4096, .compressor = compressor, .blob_dir = dir_.Join("blobs")}));
    // Chunks 1, 2, 3 and 8 hold data; 0, 4-7, 9 and the 100-byte chunk 10 are holes.
    EXPECT_EQ(result.stats.hole_chunks, 7u);
    EXPECT_EQ(result.stats.chunks, 11u);
    EXPECT_EQ(result.stats.bytes_in, 4u * 4096);
    ASSERT_OK_AND_ASSIGN(auto boot, Bootstrap::FromBytes(result.bootstrap));
    ASSERT_OK_AND_ASSIGN(auto reader, LocalChunkReader::Open(*boot, {dir_.Join("blobs")}));
    ASSERT_OK_AND_ASSIGN(uint64_t nid, boot->Resolve("/f"));
    std::string got;
    ASSERT_OK(reader->ReadFile(nid, [&](std::string_view data) {
      got += data;
      return absl::OkStatus();
    }));
    EXPECT_TRUE(got == want);
    ASSERT_OK_AND_ASSIGN(auto chunks, boot->FileChunks(nid));
    std::string holes;
    for (const ChunkRef& c : chunks) holes += c.hole ? 'h' : 'd';
    EXPECT_EQ(holes, "hdddhhhhdhh");
  }
}

}  // namespace
}  // namespace naiad::rafs
