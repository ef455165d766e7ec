#include "cache/chunk_map.h"

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::cache {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

uint32_t U32At(const std::string& bytes, size_t offset) {
  uint32_t value;
  std::memcpy(&value, bytes.data() + offset, 4);
  return value;
}

std::string ValidHeader(uint32_t all_ready = 0) {
  std::string header(kChunkMapHeaderSize, '\0');
  const uint32_t fields[] = {kChunkMapMagic, kChunkMapVersion, kChunkMapMagic2, all_ready};
  std::memcpy(header.data(), fields, sizeof(fields));
  return header;
}

class ChunkMapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-chunk-map-"));
    path_ = dir_.Join("blob.data.chunk_map");
  }

  std::string FileBytes() {
    absl::StatusOr<std::string> bytes = ReadFileToString(path_);
    EXPECT_OK(bytes);
    return bytes.ok() ? *bytes : "";
  }

  TempDir dir_;
  std::string path_;
};

TEST_F(ChunkMapTest, NewMapHasUpstreamHeaderAndMsbFirstBits) {
  ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 20));
  EXPECT_FALSE(map->reinitialized());
  std::string bytes = FileBytes();
  ASSERT_EQ(bytes.size(), 4096u + 3u);
  EXPECT_EQ(ChunkMapFileSize(20), 4096u + 3u);
  EXPECT_EQ(ChunkMapFileSize(8), 4096u + 1u);
  EXPECT_EQ(ChunkMapFileSize(9), 4096u + 2u);
  // Little-endian header fields, as upstream nydusd writes them.
  EXPECT_EQ(bytes.substr(0, 16), std::string("PAMB\x01\0\0\0PAMC\0\0\0\0", 16));
  EXPECT_EQ(U32At(bytes, 0), 0x424D4150u);
  EXPECT_EQ(U32At(bytes, 4), 1u);
  EXPECT_EQ(U32At(bytes, 8), 0x434D4150u);
  EXPECT_EQ(U32At(bytes, 12), 0u);
  EXPECT_EQ(bytes.substr(16, 4080), std::string(4080, '\0'));
  EXPECT_EQ(bytes.substr(4096), std::string(3, '\0'));

  EXPECT_TRUE(map->SetReady(0));
  EXPECT_TRUE(map->SetReady(9));
  EXPECT_TRUE(map->SetReady(15));
  EXPECT_TRUE(map->SetReady(19));
  bytes = FileBytes();  // the shared mapping is the file: no flush needed
  EXPECT_EQ(static_cast<uint8_t>(bytes[4096]), 0x80);         // chunk 0
  EXPECT_EQ(static_cast<uint8_t>(bytes[4097]), 0x40 | 0x01);  // chunks 9 and 15
  EXPECT_EQ(static_cast<uint8_t>(bytes[4098]), 0x10);         // chunk 19
  EXPECT_EQ(map->ready_count(), 4u);

  for (uint32_t i = 0; i < 20; ++i) {
    EXPECT_EQ(map->IsReady(i), i == 0 || i == 9 || i == 15 || i == 19) << i;
  }
  EXPECT_FALSE(map->IsReady(20));
  EXPECT_FALSE(map->SetReady(20));
  EXPECT_FALSE(map->ClearReady(20));
}

TEST_F(ChunkMapTest, SetAndClearReportTransitions) {
  ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 10));
  EXPECT_TRUE(map->SetReady(3));
  EXPECT_FALSE(map->SetReady(3));
  EXPECT_EQ(map->ready_count(), 1u);
  EXPECT_TRUE(map->ClearReady(3));
  EXPECT_FALSE(map->ClearReady(3));
  EXPECT_EQ(map->ready_count(), 0u);
  EXPECT_EQ(FileBytes()[4096], '\0');
}

TEST_F(ChunkMapTest, PersistsAcrossReopen) {
  {
    ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 100));
    for (uint32_t i = 0; i < 100; i += 7) map->SetReady(i);
  }
  ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 100));
  EXPECT_FALSE(map->reinitialized());
  EXPECT_EQ(map->ready_count(), 15u);  // 0, 7, ..., 98
  for (uint32_t i = 0; i < 100; ++i) EXPECT_EQ(map->IsReady(i), i % 7 == 0) << i;
}

TEST_F(ChunkMapTest, TwoMapsOfOneFileShareBits) {
  ASSERT_OK_AND_ASSIGN(auto a, ChunkMap::Open(path_, 16));
  ASSERT_OK_AND_ASSIGN(auto b, ChunkMap::Open(path_, 16));
  a->SetReady(5);
  EXPECT_TRUE(b->IsReady(5));
}

TEST_F(ChunkMapTest, AllReadyMarkFollowsTheBits) {
  ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 10));
  for (uint32_t i = 0; i < 9; ++i) map->SetReady(i);
  EXPECT_FALSE(map->AllReady());
  EXPECT_EQ(U32At(FileBytes(), 12), 0u);
  map->SetReady(9);
  EXPECT_TRUE(map->AllReady());
  EXPECT_EQ(U32At(FileBytes(), 12), kChunkMapAllReady);
  EXPECT_EQ(static_cast<uint8_t>(FileBytes()[4096]), 0xFF);
  EXPECT_EQ(static_cast<uint8_t>(FileBytes()[4097]), 0xC0);

  map->ClearReady(4);
  EXPECT_FALSE(map->AllReady());
  EXPECT_EQ(U32At(FileBytes(), 12), 0u);
  map.reset();
  ASSERT_OK_AND_ASSIGN(map, ChunkMap::Open(path_, 10));
  EXPECT_EQ(map->ready_count(), 9u);
  EXPECT_FALSE(map->IsReady(4));
  map->SetReady(4);
  map.reset();
  ASSERT_OK_AND_ASSIGN(map, ChunkMap::Open(path_, 10));
  EXPECT_TRUE(map->AllReady());
}

TEST_F(ChunkMapTest, MarkWithoutAllBitsIsDroppedAndMissingMarkAdded) {
  ASSERT_OK(testing::WriteTestFile(path_, ValidHeader(kChunkMapAllReady) + "\xFF\x80", 0600));
  {
    ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 10));
    EXPECT_FALSE(map->reinitialized());
    EXPECT_EQ(map->ready_count(), 9u);
    EXPECT_FALSE(map->AllReady());
    EXPECT_EQ(U32At(FileBytes(), 12), 0u);
  }
  // Padding bits after the last chunk do not count.
  ASSERT_OK(testing::WriteTestFile(path_, ValidHeader() + "\xFF\xFF", 0600));
  ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 10));
  EXPECT_EQ(map->ready_count(), 10u);
  EXPECT_TRUE(map->AllReady());
  EXPECT_EQ(U32At(FileBytes(), 12), kChunkMapAllReady);
}

TEST_F(ChunkMapTest, ZeroedHeaderIsReinitialised) {
  // A crash while upstream created the file: right size, zero header, stray bits.
  ASSERT_OK(testing::WriteTestFile(path_, std::string(4096, '\0') + "\xFF\xFF", 0600));
  ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 16));
  EXPECT_TRUE(map->reinitialized());
  EXPECT_EQ(map->ready_count(), 0u);
  EXPECT_EQ(FileBytes(), ValidHeader() + std::string(2, '\0'));
}

TEST_F(ChunkMapTest, TornOrForeignHeaderIsReinitialised) {
  std::vector<std::string> headers;
  std::string torn = ValidHeader();
  std::memset(torn.data() + 8, 0, 4);  // magic2 never written
  headers.push_back(torn);
  std::string version = ValidHeader();
  version[4] = 2;
  headers.push_back(version);
  std::string bad_mark = ValidHeader(0x12345678);
  headers.push_back(bad_mark);
  std::string garbage(4096, '\x5A');
  headers.push_back(garbage);
  for (const std::string& header : headers) {
    ASSERT_OK(testing::WriteTestFile(path_, header + "\xFF", 0600));
    ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 8));
    EXPECT_TRUE(map->reinitialized());
    EXPECT_EQ(map->ready_count(), 0u);
    EXPECT_EQ(FileBytes(), ValidHeader() + std::string(1, '\0'));
  }
}

TEST_F(ChunkMapTest, WrongSizeIsReinitialised) {
  {
    ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 20));
    map->SetReady(1);
  }
  ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 100));
  EXPECT_TRUE(map->reinitialized());
  EXPECT_EQ(map->ready_count(), 0u);
  EXPECT_EQ(FileBytes().size(), ChunkMapFileSize(100));
  // A truncated file too.
  map.reset();
  std::filesystem::resize_file(path_, 4096 + 5);
  ASSERT_OK_AND_ASSIGN(map, ChunkMap::Open(path_, 100));
  EXPECT_TRUE(map->reinitialized());
  EXPECT_EQ(FileBytes().size(), ChunkMapFileSize(100));
}

TEST_F(ChunkMapTest, ResetStartsEmpty) {
  {
    ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 8));
    map->SetReady(1);
  }
  ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 8, /*reset=*/true));
  EXPECT_TRUE(map->reinitialized());
  EXPECT_EQ(map->ready_count(), 0u);
}

TEST_F(ChunkMapTest, CreatesOwnerOnlyFileAndLeavesNoTemporaries) {
  ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, 8));
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    names.push_back(entry.path().filename());
  }
  EXPECT_THAT(names, ::testing::ElementsAre("blob.data.chunk_map"));
}

TEST_F(ChunkMapTest, RejectsZeroChunks) {
  EXPECT_THAT(ChunkMap::Open(path_, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chunk count")));
}

TEST_F(ChunkMapTest, ConcurrentSettersOfOneByteLoseNoBit) {
  constexpr uint32_t kChunks = 4096;
  ASSERT_OK_AND_ASSIGN(auto map, ChunkMap::Open(path_, kChunks));
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < 8; ++t) {
    // Thread t owns bit t of every byte: all threads hammer the same bytes.
    threads.emplace_back([&, t] {
      for (uint32_t i = t; i < kChunks; i += 8) map->SetReady(i);
      for (uint32_t i = t; i < kChunks; i += 16) map->ClearReady(i);
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(map->ready_count(), kChunks / 2);
  for (uint32_t i = 0; i < kChunks; ++i) EXPECT_EQ(map->IsReady(i), i % 16 >= 8) << i;
  map.reset();
  ASSERT_OK_AND_ASSIGN(map, ChunkMap::Open(path_, kChunks));
  EXPECT_EQ(map->ready_count(), kChunks / 2);
}

}  // namespace
}  // namespace naiad::cache
