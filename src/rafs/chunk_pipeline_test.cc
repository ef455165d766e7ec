#include "rafs/chunk_pipeline.h"

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/status_matchers.h"
#include "rafs/compression.h"

namespace naiad::rafs {
namespace {

using ::naiad::testing::StatusIs;

ChunkBuffer Buffer(std::string_view bytes) {
  ChunkBuffer b(bytes.size());
  std::memcpy(b.data(), bytes.data(), bytes.size());
  return b;
}

// Inputs of every kind a layer has: many tiny files (batched together), big chunks (sent alone),
// compressible and incompressible ones, and repeats.
std::vector<std::string> MixedInputs() {
  std::mt19937_64 rng(7);
  std::vector<std::string> inputs;
  for (int i = 0; i < 1500; ++i) {
    size_t size = i % 50 == 0 ? 300'000 + rng() % 800'000 : 1 + rng() % 9000;
    std::string s(size, '\0');
    if (i % 3 == 0) {
      for (char& c : s) c = static_cast<char>(rng());
    } else {
      for (size_t j = 0; j < size; ++j) s[j] = static_cast<char>('a' + (j * 7 + i) % 5);
    }
    inputs.push_back(i % 97 == 5 ? inputs[i / 2] : s);
  }
  return inputs;
}

TEST(ChunkPipelineTest, ResultsComeBackInSubmissionOrderWhateverTheBatching) {
  std::vector<std::string> inputs = MixedInputs();
  for (ChunkPipelineOptions options :
       {ChunkPipelineOptions{.threads = 1, .window_bytes = 1}, ChunkPipelineOptions{.threads = 2},
        ChunkPipelineOptions{.threads = 3, .window_bytes = 64 << 20, .max_chunks = 5}}) {
    SCOPED_TRACE(::testing::Message() << options.threads << " threads, window "
                                      << options.window_bytes << ", max " << options.max_chunks);
    ChunkPipeline pipeline(options);
    size_t next = 0;
    auto check_next = [&] {
      ASSERT_OK_AND_ASSIGN(PreparedChunk chunk, pipeline.Next());
      const std::string& input = inputs[next++];
      EXPECT_EQ(chunk.digest, Digest::Of(options.digester, input));
      EXPECT_EQ(chunk.uncompressed_size, input.size());
      EXPECT_FALSE(chunk.skipped);
      if (chunk.compressed) {
        EXPECT_LT(chunk.stored.size(), input.size());
        EXPECT_THAT(Decompress(options.compressor, chunk.stored.view(), input.size()),
                    ::naiad::testing::IsOkAndHolds(input));
      } else {
        EXPECT_EQ(chunk.stored.view(), input);
      }
    };
    for (const std::string& input : inputs) {
      pipeline.Submit(Buffer(input));
      while (pipeline.full()) check_next();
    }
    while (pipeline.pending() > 0) check_next();
    EXPECT_EQ(next, inputs.size());
    EXPECT_THAT(pipeline.Next(),
                StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::HasSubstr("no chunk")));
  }
}

TEST(ChunkPipelineTest, AChunkNotYetSentToAWorkerIsStillDeliveredWhenAsked) {
  // One tiny chunk stays in the batch being formed; Next() must send it off, not wait forever.
  ChunkPipeline pipeline({.threads = 2});
  pipeline.Submit(Buffer("tiny"));
  EXPECT_FALSE(pipeline.full());
  ASSERT_OK_AND_ASSIGN(PreparedChunk chunk, pipeline.Next());
  EXPECT_EQ(chunk.stored.view(), "tiny");
  EXPECT_EQ(pipeline.pending(), 0u);
}

TEST(ChunkPipelineTest, KnownChunksAreHashedButNotCompressed) {
  ChunkPipeline pipeline({.threads = 2});
  std::string text(100000, 'k');
  pipeline.MarkKnown(Digest::Of(DigestAlgorithm::kBlake3, text));
  pipeline.Submit(Buffer(text));
  pipeline.Submit(Buffer(text + "x"));
  ASSERT_OK_AND_ASSIGN(PreparedChunk known, pipeline.Next());
  EXPECT_TRUE(known.skipped);
  EXPECT_EQ(known.stored.size(), 0u);
  ASSERT_OK_AND_ASSIGN(PreparedChunk fresh, pipeline.Next());
  EXPECT_FALSE(fresh.skipped);
  EXPECT_TRUE(fresh.compressed);
}

}  // namespace
}  // namespace naiad::rafs
