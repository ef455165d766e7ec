#include "rafs/compression.h"

#include <string>

#include "base/status_matchers.h"

namespace naiad::rafs {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

std::string Text() {
  std::string s;
  for (int i = 0; i < 20000; ++i)
    s += "line " + std::to_string(i % 97) + " of a compressible file\n";
  return s;
}

TEST(Compression, RoundTripsEachAlgorithm) {
  std::string input = Text();
  for (Compressor c : {Compressor::kZstd, Compressor::kLz4Block}) {
    ASSERT_OK_AND_ASSIGN(Compressed out, Compress(c, input));
    EXPECT_TRUE(out.compressed);
    EXPECT_LT(out.data.size(), input.size() / 4);
    EXPECT_THAT(Decompress(c, out.data, input.size()), IsOkAndHolds(input));
  }
}

TEST(Compression, IncompressibleDataIsStoredRaw) {
  std::string noise(65536, '\0');
  uint64_t x = 88172645463325252ull;
  for (char& c : noise) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  ASSERT_OK_AND_ASSIGN(Compressed out, Compress(Compressor::kZstd, noise));
  EXPECT_FALSE(out.compressed);
  EXPECT_EQ(out.data, noise);
  ASSERT_OK_AND_ASSIGN(Compressed none, Compress(Compressor::kNone, "abc"));
  EXPECT_FALSE(none.compressed);
}

TEST(Compression, CompressIntoFillsTheCallersBufferOrSaysStoreRaw) {
  std::string input = Text();
  for (Compressor c : {Compressor::kZstd, Compressor::kLz4Block}) {
    std::string out(CompressBound(c, input.size()), '\0');
    ASSERT_OK_AND_ASSIGN(size_t n, CompressInto(c, input, out));
    ASSERT_GT(n, 0u);
    EXPECT_THAT(Decompress(c, std::string_view(out).substr(0, n), input.size()),
                IsOkAndHolds(input));
    std::string small(CompressBound(c, input.size()) - 1, '\0');
    EXPECT_THAT(CompressInto(c, input, small),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bound")));
    std::string tiny_out(CompressBound(c, 1), '\0');
    EXPECT_THAT(CompressInto(c, "x", tiny_out), IsOkAndHolds(0u));  // not smaller: stored raw
  }
  EXPECT_EQ(CompressBound(Compressor::kNone, 100), 0u);
  EXPECT_THAT(CompressInto(Compressor::kNone, "abc", {}), IsOkAndHolds(0u));
}

TEST(Compression, CorruptInputIsDataLoss) {
  std::string input = Text();
  for (Compressor c : {Compressor::kZstd, Compressor::kLz4Block}) {
    ASSERT_OK_AND_ASSIGN(Compressed out, Compress(c, input));
    std::string broken = out.data.substr(0, out.data.size() / 2);
    EXPECT_THAT(Decompress(c, broken, input.size()),
                StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
    EXPECT_THAT(Decompress(c, out.data, input.size() + 1),
                StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  }
  EXPECT_THAT(Decompress(Compressor::kNone, "abc", 4),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("raw")));
}

TEST(Compression, ParsesNames) {
  EXPECT_THAT(ParseCompressor("lz4_block"), IsOkAndHolds(Compressor::kLz4Block));
  EXPECT_THAT(ParseCompressor("gzip9"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gzip9")));
}

}  // namespace
}  // namespace naiad::rafs
