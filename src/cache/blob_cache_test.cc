#include "cache/blob_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/crash_testing.h"
#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "cache/chunk_map.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::cache {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

// A blob of `count` chunks of `chunk_size` bytes (the last one shorter), uncompressed chunks at
// 4 KiB-aligned offsets, "compressed" chunks packed back to back with sizes that differ.
struct TestBlob {
  rafs::BlobInfo info;
  std::vector<rafs::ChunkRef> chunks;
};

TestBlob MakeBlob(std::string id, uint32_t count, uint32_t chunk_size) {
  TestBlob blob;
  blob.info.id = std::move(id);
  blob.info.chunk_count = count;
  blob.info.chunk_size = chunk_size;
  uint64_t compressed_offset = 0;
  for (uint32_t i = 0; i < count; ++i) {
    rafs::ChunkRef chunk;
    chunk.ci_index = i;
    chunk.uncompressed_offset = uint64_t{i} * chunk_size;
    chunk.uncompressed_size = i + 1 == count ? chunk_size / 2 + 100 : chunk_size;
    chunk.compressed_offset = compressed_offset;
    chunk.compressed_size = chunk.uncompressed_size / 2 + i;
    chunk.compressed = true;
    chunk.file_offset = chunk.uncompressed_offset;
    compressed_offset += chunk.compressed_size;
    blob.chunks.push_back(chunk);
  }
  const rafs::ChunkRef& last = blob.chunks.back();
  blob.info.uncompressed_size = last.uncompressed_offset + last.uncompressed_size;
  blob.info.compressed_size = compressed_offset;
  return blob;
}

// Deterministic bytes of a chunk; `generation` makes rewrites differ.
std::string ChunkBytes(const rafs::ChunkRef& chunk, bool compressed, uint32_t generation = 0) {
  const uint32_t size = compressed ? chunk.compressed_size : chunk.uncompressed_size;
  std::string bytes(size, '\0');
  uint64_t x = (uint64_t{chunk.ci_index} << 32) ^ generation ^ 0x9E3779B97F4A7C15ull;
  for (uint32_t i = 0; i < size; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(bytes.data() + i, &x, std::min<uint32_t>(8, size - i));
  }
  return bytes;
}

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return uint64_t(st.st_blocks) * 512;
}

class BlobCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-blob-cache-")); }

  BlobCacheOptions Options(bool compressed = false, uint64_t max_size = 0) {
    return {.work_dir = dir_.Join("cache"), .compressed = compressed, .max_size = max_size};
  }
  std::string CachePath(std::string_view name) { return dir_.Join(StrCat("cache/", name)); }

  TempDir dir_;
};

TEST_F(BlobCacheTest, WriteReadRoundTripUncompressed) {
  TestBlob blob = MakeBlob("b1", 6, 64 << 10);
  ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options()));
  ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
  for (const auto& chunk : blob.chunks) {
    EXPECT_FALSE(file->IsReady(chunk.ci_index));
    std::string out;
    EXPECT_THAT(file->Read(chunk, &out),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not cached")));
  }
  for (const auto& chunk : blob.chunks) {
    ASSERT_OK(file->Write(chunk, ChunkBytes(chunk, false)));
    EXPECT_TRUE(file->IsReady(chunk.ci_index));
  }
  EXPECT_TRUE(file->AllReady());
  EXPECT_EQ(file->ready_count(), 6u);
  for (const auto& chunk : blob.chunks) {
    std::string out;
    ASSERT_OK(file->Read(chunk, &out));
    EXPECT_EQ(out, ChunkBytes(chunk, false)) << chunk.ci_index;
    // The data file holds the chunk at its uncompressed offset.
    std::string direct(chunk.uncompressed_size, '\0');
    ASSERT_OK(PreadFull(file->data_fd(), direct, chunk.uncompressed_offset));
    EXPECT_EQ(direct, out);
  }
  const std::string data = CachePath("b1.blob.data");
  struct stat st;
  ASSERT_EQ(::stat(data.c_str(), &st), 0);
  EXPECT_EQ(uint64_t(st.st_size), blob.info.uncompressed_size);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_OK_AND_ASSIGN(std::string map, ReadFileToString(data + ".chunk_map"));
  EXPECT_EQ(map.size(), ChunkMapFileSize(6));
  EXPECT_EQ(static_cast<uint8_t>(map[4096]), 0xFC);

  BlobCacheStats stats = cache->Stats();
  EXPECT_EQ(stats.chunks_stored, 6u);
  EXPECT_EQ(stats.bytes_stored, blob.info.uncompressed_size);
  EXPECT_EQ(stats.evicted_chunks, 0u);
}

TEST_F(BlobCacheTest, WriteReadRoundTripCompressed) {
  TestBlob blob = MakeBlob("b1", 5, 64 << 10);
  ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options(/*compressed=*/true)));
  ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
  EXPECT_EQ(file->data_fd(), -1);
  for (const auto& chunk : blob.chunks) ASSERT_OK(file->Write(chunk, ChunkBytes(chunk, true)));
  for (const auto& chunk : blob.chunks) {
    std::string out;
    ASSERT_OK(file->Read(chunk, &out));
    EXPECT_EQ(out, ChunkBytes(chunk, true));
  }
  // Raw bytes at compressed offsets, back to back: the file is the blob's compressed data.
  ASSERT_OK_AND_ASSIGN(std::string raw, ReadFileToString(CachePath("b1.blob.raw")));
  std::string expected;
  for (const auto& chunk : blob.chunks) expected += ChunkBytes(chunk, true);
  EXPECT_EQ(raw, expected);
  EXPECT_TRUE(std::filesystem::exists(CachePath("b1.blob.raw.chunk_map")));
  EXPECT_FALSE(std::filesystem::exists(CachePath("b1.blob.data")));
  EXPECT_EQ(cache->Stats().bytes_stored, blob.info.compressed_size);
}

TEST_F(BlobCacheTest, RejectsBadInput) {
  TestBlob blob = MakeBlob("b1", 4, 8192);
  ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options()));
  rafs::BlobInfo no_chunks = blob.info;
  no_chunks.chunk_count = 0;
  EXPECT_THAT(cache->OpenBlob(no_chunks),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chunk count")));
  rafs::BlobInfo bad_id = blob.info;
  bad_id.id = "../x";
  EXPECT_THAT(cache->OpenBlob(bad_id), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
  rafs::BlobInfo other_count = blob.info;
  other_count.chunk_count = 5;
  EXPECT_THAT(cache->OpenBlob(other_count),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));

  EXPECT_THAT(file->Write(blob.chunks[0], "short"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 8192")));
  rafs::ChunkRef out_of_range = blob.chunks[0];
  out_of_range.ci_index = 4;
  EXPECT_THAT(file->Write(out_of_range, std::string(8192, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
  rafs::ChunkRef hole = blob.chunks[0];
  hole.hole = true;
  EXPECT_THAT(file->Write(hole, std::string(8192, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hole")));
  rafs::ChunkRef outside = blob.chunks[0];
  outside.uncompressed_offset = blob.info.uncompressed_size - 100;
  EXPECT_THAT(file->Write(outside, std::string(8192, 'x')),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("outside blob")));
  EXPECT_EQ(file->ready_count(), 0u);
  EXPECT_THAT(BlobCache::Open({}), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST_F(BlobCacheTest, SameObjectForSameBlob) {
  TestBlob a = MakeBlob("a", 2, 4096);
  TestBlob b = MakeBlob("b", 2, 4096);
  ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options()));
  ASSERT_OK_AND_ASSIGN(auto a1, cache->OpenBlob(a.info));
  ASSERT_OK_AND_ASSIGN(auto a2, cache->OpenBlob(a.info));
  ASSERT_OK_AND_ASSIGN(auto b1, cache->OpenBlob(b.info));
  EXPECT_EQ(a1.get(), a2.get());
  EXPECT_NE(a1.get(), b1.get());
}

TEST_F(BlobCacheTest, WritingAReadyChunkIsANoOp) {
  TestBlob blob = MakeBlob("b1", 2, 4096);
  ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options()));
  ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
  ASSERT_OK(file->Write(blob.chunks[0], ChunkBytes(blob.chunks[0], false, 1)));
  ASSERT_OK(file->Write(blob.chunks[0], ChunkBytes(blob.chunks[0], false, 2)));
  std::string out;
  ASSERT_OK(file->Read(blob.chunks[0], &out));
  EXPECT_EQ(out, ChunkBytes(blob.chunks[0], false, 1));
  EXPECT_EQ(cache->Stats().chunks_stored, 1u);
}

TEST_F(BlobCacheTest, RestartKeepsData) {
  TestBlob blob = MakeBlob("b1", 8, 16 << 10);
  for (bool compressed : {false, true}) {
    {
      ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options(compressed)));
      ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
      for (uint32_t i = 0; i < 8; i += 2) {
        ASSERT_OK(file->Write(blob.chunks[i], ChunkBytes(blob.chunks[i], compressed)));
      }
    }
    ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options(compressed)));
    ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
    EXPECT_EQ(file->ready_count(), 4u);
    // Sizes of chunks found on disk are estimated at the chunk size until a ChunkRef names them.
    EXPECT_EQ(cache->Stats().chunks_stored, 4u);
    EXPECT_EQ(cache->Stats().bytes_stored, 4u * (16 << 10));
    file->RegisterChunks(blob.chunks);
    uint64_t exact = 0;
    for (uint32_t i = 0; i < 8; ++i) {
      EXPECT_EQ(file->IsReady(i), i % 2 == 0) << i;
      if (i % 2 != 0) continue;
      std::string out;
      ASSERT_OK(file->Read(blob.chunks[i], &out));
      EXPECT_EQ(out, ChunkBytes(blob.chunks[i], compressed));
      exact += out.size();
    }
    EXPECT_EQ(cache->Stats().bytes_stored, exact);
  }
}

TEST_F(BlobCacheTest, DeletedDataFileResetsTheMap) {
  TestBlob blob = MakeBlob("b1", 4, 8192);
  {
    ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options()));
    ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
    ASSERT_OK(file->Write(blob.chunks[1], ChunkBytes(blob.chunks[1], false)));
  }
  std::filesystem::remove(CachePath("b1.blob.data"));
  ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options()));
  ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
  EXPECT_FALSE(file->IsReady(1));
  EXPECT_EQ(cache->Stats().chunks_stored, 0u);
}

TEST_F(BlobCacheTest, UnknownBlobSizeGrowsTheFile) {
  TestBlob blob = MakeBlob("b1", 4, 8192);
  blob.info.uncompressed_size = 0;
  ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options()));
  ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
  ASSERT_OK(file->Write(blob.chunks[2], ChunkBytes(blob.chunks[2], false)));
  EXPECT_EQ(std::filesystem::file_size(CachePath("b1.blob.data")),
            blob.chunks[2].uncompressed_offset + blob.chunks[2].uncompressed_size);
  std::string out;
  ASSERT_OK(file->Read(blob.chunks[2], &out));
  EXPECT_EQ(out, ChunkBytes(blob.chunks[2], false));
}

TEST_F(BlobCacheTest, InvalidateDropsTheChunk) {
  TestBlob blob = MakeBlob("b1", 3, 64 << 10);
  ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options()));
  ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
  for (const auto& chunk : blob.chunks) ASSERT_OK(file->Write(chunk, ChunkBytes(chunk, false)));
  ASSERT_TRUE(file->AllReady());
  const uint64_t before = AllocatedBytes(CachePath("b1.blob.data"));

  ASSERT_OK(file->Invalidate(blob.chunks[1]));
  EXPECT_FALSE(file->IsReady(1));
  EXPECT_FALSE(file->AllReady());
  EXPECT_EQ(file->ready_count(), 2u);
  std::string out;
  EXPECT_THAT(file->Read(blob.chunks[1], &out),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_EQ(cache->Stats().chunks_stored, 2u);
  EXPECT_EQ(cache->Stats().bytes_stored,
            blob.info.uncompressed_size - blob.chunks[1].uncompressed_size);
  EXPECT_LT(AllocatedBytes(CachePath("b1.blob.data")), before);
  ASSERT_OK(file->Invalidate(blob.chunks[1]));  // not ready: no-op
  ASSERT_OK_AND_ASSIGN(std::string map, ReadFileToString(CachePath("b1.blob.data.chunk_map")));
  EXPECT_EQ(static_cast<uint8_t>(map[4096]), 0xA0);
  EXPECT_EQ(map.substr(12, 4), std::string(4, '\0'));  // all-ready mark gone

  // A rewrite brings it back, with new bytes.
  ASSERT_OK(file->Write(blob.chunks[1], ChunkBytes(blob.chunks[1], false, 7)));
  ASSERT_OK(file->Read(blob.chunks[1], &out));
  EXPECT_EQ(out, ChunkBytes(blob.chunks[1], false, 7));
  EXPECT_TRUE(file->AllReady());
}

// A writer process killed at random moments never leaves a chunk marked ready with bytes
// missing: every ready chunk reads back whole after a reopen.
TEST_F(BlobCacheTest, KillDuringWritesLeavesOnlyCompleteChunks) {
  constexpr uint32_t kGenerations = 3;
  TestBlob blob = MakeBlob("b1", 32, 512 << 10);
  // Built before forking, so that the child spends its time writing.
  std::vector<std::vector<std::string>> bytes(kGenerations);
  for (uint32_t g = 0; g < kGenerations; ++g) {
    for (const auto& chunk : blob.chunks) bytes[g].push_back(ChunkBytes(chunk, false, g));
  }
  std::mt19937 rng(20261128);
  uint32_t max_ready = 0;
  for (int iteration = 0; iteration < 40; ++iteration) {
    const uint32_t generation = iteration % kGenerations;
    // Child: writes chunks and invalidates others until it is killed. Invalidated chunks are
    // punched, so a chunk marked ready before all its bytes landed would read zeros.
    ASSERT_OK(::naiad::testing::ForkAndKill(
        [&](const std::function<void()>& ready) {
          auto cache = BlobCache::Open(Options());
          if (!cache.ok()) ::_exit(2);
          auto file = (*cache)->OpenBlob(blob.info);
          if (!file.ok()) ::_exit(3);
          ready();
          std::mt19937 child_rng(iteration);
          for (;;) {
            const uint32_t ci = child_rng() % blob.chunks.size();
            if (child_rng() % 2 == 0) {
              if (!(*file)->Invalidate(blob.chunks[ci]).ok()) ::_exit(5);
            } else if (!(*file)->Write(blob.chunks[ci], bytes[generation][ci]).ok()) {
              ::_exit(6);
            }
          }
        },
        absl::Microseconds(500 + rng() % 10000)));

    ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options()));
    ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
    max_ready = std::max(max_ready, file->ready_count());
    for (const auto& chunk : blob.chunks) {
      if (!file->IsReady(chunk.ci_index)) continue;
      std::string out;
      ASSERT_OK(file->Read(chunk, &out));
      // Written by this iteration's child, or left ready by an earlier one.
      bool matches = false;
      for (uint32_t g = 0; g < kGenerations && !matches; ++g) {
        matches = out == bytes[g][chunk.ci_index];
      }
      ASSERT_TRUE(matches) << "iteration " << iteration << " chunk " << chunk.ci_index;
    }
  }
  EXPECT_GT(max_ready, 0u);
  for (const auto& entry : std::filesystem::directory_iterator(dir_.Join("cache"))) {
    EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr(".tmp")));
  }
}

TEST_F(BlobCacheTest, EvictionKeepsTheCapInLruOrder) {
  constexpr uint32_t kChunk = 64 << 10;
  TestBlob blob = MakeBlob("b1", 10, kChunk);
  blob.chunks.back().uncompressed_size = kChunk;  // equal sizes keep the arithmetic simple
  blob.info.uncompressed_size = 10 * kChunk;
  ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options(false, 4 * kChunk)));
  ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
  for (uint32_t i = 0; i < 4; ++i)
    ASSERT_OK(file->Write(blob.chunks[i], ChunkBytes(blob.chunks[i], false)));
  EXPECT_EQ(cache->Stats().evicted_chunks, 0u);
  // Touch 0: 1 becomes the least recently used.
  std::string out;
  ASSERT_OK(file->Read(blob.chunks[0], &out));
  ASSERT_OK(file->Write(blob.chunks[4], ChunkBytes(blob.chunks[4], false)));
  EXPECT_FALSE(file->IsReady(1));
  EXPECT_TRUE(file->IsReady(0));
  EXPECT_THAT(file->Read(blob.chunks[1], &out),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));

  for (uint32_t i = 5; i < 10; ++i) {
    ASSERT_OK(file->Write(blob.chunks[i], ChunkBytes(blob.chunks[i], false)));
    BlobCacheStats stats = cache->Stats();
    EXPECT_LE(stats.bytes_stored, 4 * kChunk);
    EXPECT_EQ(stats.chunks_stored, 4u);
  }
  for (uint32_t i = 0; i < 10; ++i) EXPECT_EQ(file->IsReady(i), i >= 6) << i;
  BlobCacheStats stats = cache->Stats();
  EXPECT_EQ(stats.evicted_chunks, 6u);
  EXPECT_EQ(stats.evicted_bytes, 6u * kChunk);
  // Evicted ranges are holes: only about four chunks' worth of blocks remain allocated.
  EXPECT_LE(AllocatedBytes(CachePath("b1.blob.data")), 5u * kChunk);
  for (uint32_t i = 6; i < 10; ++i) {
    ASSERT_OK(file->Read(blob.chunks[i], &out));
    EXPECT_EQ(out, ChunkBytes(blob.chunks[i], false));
  }
  // The evicted state persists.
  file.reset();
  cache.reset();
  ASSERT_OK_AND_ASSIGN(cache, BlobCache::Open(Options(false, 4 * kChunk)));
  ASSERT_OK_AND_ASSIGN(file, cache->OpenBlob(blob.info));
  EXPECT_EQ(file->ready_count(), 4u);
}

TEST_F(BlobCacheTest, EvictionIsLruOverAllBlobs) {
  constexpr uint32_t kChunk = 32 << 10;
  TestBlob a = MakeBlob("a", 4, kChunk);
  TestBlob b = MakeBlob("b", 4, kChunk);
  ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options(false, 3 * kChunk)));
  ASSERT_OK_AND_ASSIGN(auto fa, cache->OpenBlob(a.info));
  ASSERT_OK_AND_ASSIGN(auto fb, cache->OpenBlob(b.info));
  ASSERT_OK(fa->Write(a.chunks[0], ChunkBytes(a.chunks[0], false)));
  ASSERT_OK(fb->Write(b.chunks[0], ChunkBytes(b.chunks[0], false)));
  ASSERT_OK(fa->Write(a.chunks[1], ChunkBytes(a.chunks[1], false)));
  std::string out;
  ASSERT_OK(fa->Read(a.chunks[0], &out));  // order now: b0 (oldest), a1, a0
  ASSERT_OK(fb->Write(b.chunks[1], ChunkBytes(b.chunks[1], false)));
  EXPECT_FALSE(fb->IsReady(0));
  EXPECT_TRUE(fa->IsReady(0));
  EXPECT_TRUE(fa->IsReady(1));
  EXPECT_TRUE(fb->IsReady(1));
  ASSERT_OK(fb->Write(b.chunks[2], ChunkBytes(b.chunks[2], false)));
  EXPECT_FALSE(fa->IsReady(1));
}

TEST_F(BlobCacheTest, RestartWithSmallerCapEvictsChunksFoundOnDisk) {
  constexpr uint32_t kChunk = 64 << 10;
  TestBlob blob = MakeBlob("b1", 8, kChunk);
  blob.chunks.back().uncompressed_size = kChunk;
  blob.info.uncompressed_size = 8 * kChunk;
  const std::string data = CachePath("b1.blob.data");
  auto fill = [&] {
    ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options()));
    ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
    for (const auto& chunk : blob.chunks) ASSERT_OK(file->Write(chunk, ChunkBytes(chunk, false)));
  };
  fill();
  EXPECT_GE(AllocatedBytes(data), 8u * kChunk);
  {
    ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options(false, 3 * kChunk)));
    ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
    EXPECT_EQ(file->ready_count(), 8u);  // OpenBlob() does not evict
    EXPECT_EQ(cache->Stats().bytes_stored, 8u * kChunk);
    ASSERT_OK(file->Invalidate(blob.chunks[0]));
    ASSERT_OK(file->Write(blob.chunks[0], ChunkBytes(blob.chunks[0], false)));
    EXPECT_EQ(file->ready_count(), 3u);
    EXPECT_TRUE(file->IsReady(0));  // the most recent
    EXPECT_EQ(cache->Stats().evicted_chunks, 5u);
    EXPECT_LE(cache->Stats().bytes_stored, 3u * kChunk);
    // Their ranges were unknown, so their bytes are still on disk...
    EXPECT_GE(AllocatedBytes(data), 8u * kChunk);
    // ...until the blob holds no chunk: then the whole file is punched.
    for (const auto& chunk : blob.chunks) ASSERT_OK(file->Invalidate(chunk));
    EXPECT_LT(AllocatedBytes(data), uint64_t{kChunk});
  }
  fill();
  {
    // With the chunk table registered, evicted chunks are punched one by one.
    ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options(false, 3 * kChunk)));
    ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
    file->RegisterChunks(blob.chunks);
    ASSERT_OK(file->Invalidate(blob.chunks[0]));
    ASSERT_OK(file->Write(blob.chunks[0], ChunkBytes(blob.chunks[0], false)));
    EXPECT_EQ(file->ready_count(), 3u);
    EXPECT_EQ(cache->Stats().bytes_stored, 3u * kChunk);
    EXPECT_LE(AllocatedBytes(data), 4u * kChunk);
  }
}

TEST_F(BlobCacheTest, EvictionOfUnknownRangesPunchesTheEmptiedBlob) {
  constexpr uint32_t kChunk = 64 << 10;
  TestBlob a = MakeBlob("a", 4, kChunk);
  TestBlob b = MakeBlob("b", 4, kChunk);
  {
    ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options()));
    ASSERT_OK_AND_ASSIGN(auto fa, cache->OpenBlob(a.info));
    for (const auto& chunk : a.chunks) ASSERT_OK(fa->Write(chunk, ChunkBytes(chunk, false)));
  }
  const std::string data = CachePath("a.blob.data");
  ASSERT_GE(AllocatedBytes(data), 3u * kChunk);
  ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options(false, 4 * kChunk)));
  ASSERT_OK_AND_ASSIGN(auto fa, cache->OpenBlob(a.info));
  ASSERT_OK_AND_ASSIGN(auto fb, cache->OpenBlob(b.info));
  // Blob a's chunks were never named since the restart: b's writes push them all out.
  for (const auto& chunk : b.chunks) ASSERT_OK(fb->Write(chunk, ChunkBytes(chunk, false)));
  EXPECT_EQ(fa->ready_count(), 0u);
  EXPECT_EQ(fb->ready_count(), 4u);
  EXPECT_LT(AllocatedBytes(data), uint64_t{kChunk});
}

TEST_F(BlobCacheTest, ConcurrentWritersAndReaders) {
  for (uint64_t max_size : {uint64_t{0}, uint64_t{12} << 16}) {
    SCOPED_TRACE(max_size);
    TestBlob blob = MakeBlob(StrCat("blob", max_size), 64, 64 << 10);
    ASSERT_OK_AND_ASSIGN(auto cache, BlobCache::Open(Options(false, max_size)));
    std::atomic<int> bad{0};
    std::atomic<int> hits{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        auto file = cache->OpenBlob(blob.info);
        if (!file.ok()) {
          bad++;
          return;
        }
        std::mt19937 rng(t);
        std::string out;
        for (int i = 0; i < 400; ++i) {
          // Half the operations on chunks all threads share, half on the thread's own.
          const uint32_t ci = i % 2 == 0 ? rng() % 8 : 8 + t * 7 + rng() % 7;
          const rafs::ChunkRef& chunk = blob.chunks[ci];
          absl::Status read = (*file)->Read(chunk, &out);
          if (read.ok()) {
            hits++;
            if (out != ChunkBytes(chunk, false)) bad++;
          } else if (read.code() != absl::StatusCode::kFailedPrecondition) {
            bad++;
          } else if (!(*file)->Write(chunk, ChunkBytes(chunk, false)).ok()) {
            bad++;
          }
          if (rng() % 50 == 0 && !(*file)->Invalidate(chunk).ok()) bad++;
        }
      });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(hits.load(), 0);
    BlobCacheStats stats = cache->Stats();
    if (max_size != 0) {
      EXPECT_LE(stats.bytes_stored, max_size);
      EXPECT_GT(stats.evicted_chunks, 0u);
    }
    ASSERT_OK_AND_ASSIGN(auto file, cache->OpenBlob(blob.info));
    // The counts agree with the bitmap, and every ready chunk is intact.
    EXPECT_EQ(stats.chunks_stored, file->ready_count());
    uint64_t bytes = 0;
    std::string out;
    for (const auto& chunk : blob.chunks) {
      if (!file->IsReady(chunk.ci_index)) continue;
      ASSERT_OK(file->Read(chunk, &out));
      EXPECT_EQ(out, ChunkBytes(chunk, false));
      bytes += chunk.uncompressed_size;
    }
    EXPECT_EQ(stats.bytes_stored, bytes);
  }
}

}  // namespace
}  // namespace naiad::cache
