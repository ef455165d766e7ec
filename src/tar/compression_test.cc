#include "tar/compression.h"

#include <random>
#include <string>

#include "base/file.h"
#include "base/status_matchers.h"
#include "tar/tar_testing.h"

namespace naiad::tar {
namespace {

using ::naiad::tar::testing::Shell;
using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

// Compares without printing megabytes on failure.
::testing::AssertionResult DrainedTo(const absl::StatusOr<std::string>& got,
                                     const std::string& want) {
  if (!got.ok()) return ::testing::AssertionFailure() << got.status();
  if (*got != want) {
    return ::testing::AssertionFailure() << "got " << got->size() << " bytes, want " << want.size();
  }
  return ::testing::AssertionSuccess();
}

// Compressible but not trivial: words from a small vocabulary, 3 MiB.
std::string SampleData() {
  std::mt19937 rng(42);
  const char* words[] = {"layer ", "chunk ", "blob ", "naiad ", "peer ", "\n", "0123456789 "};
  std::string out;
  while (out.size() < (3u << 20)) out += words[rng() % 7];
  return out;
}

absl::StatusOr<std::string> Drain(InputStream& stream, size_t chunk = 100000) {
  std::string out;
  std::string buf(chunk, '\0');
  for (;;) {
    ASSIGN_OR_RETURN(size_t n, stream.Read(buf.data(), buf.size()));
    if (n == 0) return out;
    out.append(buf.data(), n);
  }
}

absl::StatusOr<std::string> OpenAndDrain(std::string data, Compression* detected = nullptr,
                                         size_t chunk_limit = 0) {
  ASSIGN_OR_RETURN(
      auto stream,
      OpenLayer(std::make_unique<StringInputStream>(std::move(data), chunk_limit), detected));
  return Drain(*stream);
}

class TarCompressionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-tar-"));
    data_ = SampleData();
    ASSERT_OK(WriteFileAtomically(dir_.Join("data"), data_));
  }
  // Runs `command` on the data file in the temp dir and returns the file `output`.
  std::string Produce(const std::string& command, const std::string& output) {
    EXPECT_OK(Shell(command, dir_.path()));
    absl::StatusOr<std::string> bytes = ReadFileToString(dir_.Join(output));
    EXPECT_OK(bytes);
    return bytes.ok() ? *bytes : "";
  }

  TempDir dir_;
  std::string data_;
};

TEST_F(TarCompressionTest, PlainPassesThrough) {
  Compression detected = Compression::kGzip;
  EXPECT_TRUE(DrainedTo(OpenAndDrain(data_, &detected), data_));
  EXPECT_EQ(detected, Compression::kNone);
}

TEST_F(TarCompressionTest, EmptyStreamIsAnEmptyPlainLayer) {
  Compression detected = Compression::kZstd;
  EXPECT_TRUE(DrainedTo(OpenAndDrain("", &detected), std::string()));
  EXPECT_EQ(detected, Compression::kNone);
}

TEST_F(TarCompressionTest, GzipRoundTripWithShortSourceReads) {
  std::string gz = Produce("gzip -c data > data.gz", "data.gz");
  Compression detected = Compression::kNone;
  // Short reads from the source (7 bytes at a time) exercise sniffing and refills.
  EXPECT_TRUE(DrainedTo(OpenAndDrain(gz, &detected, 7), data_));
  EXPECT_EQ(detected, Compression::kGzip);
}

TEST_F(TarCompressionTest, MultiMemberGzip) {
  std::string gz = Produce(
      "head -c 1000000 data | gzip -c > a.gz && tail -c +1000001 data | "
      "gzip -1 -c > b.gz && cat a.gz b.gz > ab.gz",
      "ab.gz");
  EXPECT_TRUE(DrainedTo(OpenAndDrain(gz), data_));
}

TEST_F(TarCompressionTest, ZstdRoundTripAndMultiFrame) {
  std::string zst = Produce("zstd -q -c data > data.zst", "data.zst");
  Compression detected = Compression::kNone;
  EXPECT_TRUE(DrainedTo(OpenAndDrain(zst, &detected, 4096), data_));
  EXPECT_EQ(detected, Compression::kZstd);
  std::string two = Produce(
      "head -c 12345 data | zstd -q -c > a.zst && tail -c +12346 data | "
      "zstd -q -c > b.zst && cat a.zst b.zst > ab.zst",
      "ab.zst");
  EXPECT_TRUE(DrainedTo(OpenAndDrain(two), data_));
}

TEST_F(TarCompressionTest, CorruptGzipIsDataLoss) {
  std::string gz = Produce("gzip -c data > data.gz", "data.gz");
  for (size_t i = 100; i < 200; ++i) gz[i] = static_cast<char>(gz[i] ^ 0x5a);
  EXPECT_THAT(OpenAndDrain(gz), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("gzip")));
}

TEST_F(TarCompressionTest, GzipWithBadCrcIsDataLoss) {
  std::string gz = Produce("gzip -c data > data.gz", "data.gz");
  gz[gz.size() - 6] = static_cast<char>(gz[gz.size() - 6] ^ 1);  // CRC32 of the trailer
  EXPECT_THAT(OpenAndDrain(gz), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("gzip")));
}

TEST_F(TarCompressionTest, TruncatedGzipIsDataLoss) {
  std::string gz = Produce("gzip -c data > data.gz", "data.gz");
  gz.resize(gz.size() / 2);
  EXPECT_THAT(OpenAndDrain(gz),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("gzip layer: truncated")));
}

TEST_F(TarCompressionTest, CorruptAndTruncatedZstdAreDataLoss) {
  std::string zst = Produce("zstd -q -c data > data.zst", "data.zst");
  std::string corrupt = zst;
  for (size_t i = 50; i < 150; ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x33);
  EXPECT_THAT(OpenAndDrain(corrupt), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("zstd")));
  std::string truncated = zst.substr(0, zst.size() - 10);
  EXPECT_THAT(OpenAndDrain(truncated),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("zstd layer: ")));
}

TEST(TarDetectCompression, Magic) {
  EXPECT_EQ(DetectCompression("\x1f\x8b\x08\x00"), Compression::kGzip);
  EXPECT_EQ(DetectCompression("\x28\xb5\x2f\xfd"), Compression::kZstd);
  EXPECT_EQ(DetectCompression("\x28\xb5\x2f"), Compression::kNone);
  EXPECT_EQ(DetectCompression("ustar"), Compression::kNone);
  EXPECT_EQ(CompressionName(Compression::kZstd), "zstd");
}

TEST(TarFileInputStream, MissingFileIsNotFound) {
  EXPECT_THAT(OpenLayer(std::string("/nonexistent/layer.tar")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/layer.tar")));
}

}  // namespace
}  // namespace naiad::tar
