#include "rafs/blob_writer.h"

#include <sys/mount.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include "base/file.h"
#include "base/status_matchers.h"

namespace naiad::rafs {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

// A chunk of incompressible bytes, stored raw.
PreparedChunk RawChunk(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  ChunkBuffer bytes(size);
  for (size_t i = 0; i < size; ++i) bytes.data()[i] = static_cast<char>(rng());
  PreparedChunk chunk;
  chunk.digest = Digest::Of(DigestAlgorithm::kBlake3, bytes.view());
  chunk.uncompressed_size = static_cast<uint32_t>(size);
  chunk.stored = std::move(bytes);
  return chunk;
}

// A full disk while Append() waits for room in the writer's queue: the error comes back (from
// Append or FinishData), nothing hangs, and no file is left in the directory.
TEST(BlobWriterTest, AFullDiskFailsTheBlobWhileAppendWaitsForRoom) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create());
  const std::string small = dir.Join("small");
  std::filesystem::create_directory(small);
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=512k") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs (" << std::strerror(errno) << "): needs root";
  }
  absl::Status status;
  {
    // A queue of 64 KiB, far below the writer's 256 KiB wake-up threshold: every Append past the
    // first waits for room, and the writer must be woken for it.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<BlobWriter> writer,
                         BlobWriter::Create(small + "/blob", {.compressor = Compressor::kNone,
                                                              .write_queue_bytes = 64 << 10}));
    for (int i = 0; i < 64 && status.ok(); ++i)
      status = writer->Append(RawChunk(40000, i)).status();
    if (status.ok()) status = writer->FinishData(/*inline_bootstrap=*/false).status();
  }
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("blob")));
  EXPECT_TRUE(std::filesystem::is_empty(small));
  ASSERT_EQ(::umount(small.c_str()), 0);
}

TEST(BlobWriterTest, ChunksSmallerThanTheWakeThresholdAreAllWritten) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<BlobWriter> writer,
                       BlobWriter::Create(dir.Join("blob"), {.compressor = Compressor::kNone}));
  std::string expected;
  for (int i = 0; i < 300; ++i) {
    PreparedChunk chunk = RawChunk(1 + i * 13 % 5000, i);
    std::string bytes(chunk.stored.view());
    ASSERT_OK_AND_ASSIGN(ChunkRef ref, writer->Append(std::move(chunk)));
    expected.resize(ref.compressed_offset, '\0');  // uncompressed blobs pad to 4 KiB blocks
    expected += bytes;
  }
  ASSERT_OK_AND_ASSIGN(BlobInfo info, writer->FinishData(/*inline_bootstrap=*/false));
  ASSERT_OK_AND_ASSIGN(info, writer->Commit());
  ASSERT_OK_AND_ASSIGN(std::string blob, ReadFileToString(dir.Join("blob")));
  EXPECT_EQ(blob.substr(0, expected.size()), expected);
  EXPECT_EQ(info.chunk_count, 300u);
}

}  // namespace
}  // namespace naiad::rafs
