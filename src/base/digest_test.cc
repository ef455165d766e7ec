#include "base/digest.h"

#include <string>

#include "base/status_matchers.h"

namespace naiad {

uint32_t Crc32cExtendPortableForTest(uint32_t crc, std::string_view data);

namespace {

using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

TEST(Digest, Sha256KnownAnswers) {
  EXPECT_EQ(Digest::Of(DigestAlgorithm::kSha256, "").ToString(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Digest::Of(DigestAlgorithm::kSha256, "abc").Hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Digest, Blake3KnownAnswers) {
  // From the BLAKE3 specification's test vectors and `b3sum`.
  EXPECT_EQ(Digest::Of(DigestAlgorithm::kBlake3, "").Hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
  EXPECT_EQ(Digest::Of(DigestAlgorithm::kBlake3, "abc").ToString(),
            "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
}

TEST(Digest, StreamingEqualsOneShotAndHasherResets) {
  std::string data(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + 7);
  for (DigestAlgorithm algorithm : {DigestAlgorithm::kSha256, DigestAlgorithm::kBlake3}) {
    auto hasher = Hasher::New(algorithm);
    for (size_t off = 0; off < data.size(); off += 65537) {
      hasher->Update(std::string_view(data).substr(off, 65537));
    }
    EXPECT_EQ(hasher->Finish(), Digest::Of(algorithm, data));
    hasher->Update("abc");
    EXPECT_EQ(hasher->Finish(), Digest::Of(algorithm, "abc"));
  }
}

TEST(Digest, Sha256SnapshotIsThePrefixDigestAndDoesNotReset) {
  Sha256 hasher;
  hasher.Update("hello ");
  EXPECT_EQ(hasher.Snapshot(), Digest::Of(DigestAlgorithm::kSha256, "hello "));
  hasher.Update("world");
  EXPECT_EQ(hasher.Finish(), Digest::Of(DigestAlgorithm::kSha256, "hello world"));
}

TEST(Digest, ParseRoundTripsAndRejectsBadInput) {
  std::string text = Digest::Of(DigestAlgorithm::kSha256, "x").ToString();
  ASSERT_OK_AND_ASSIGN(Digest parsed, Digest::Parse(text));
  EXPECT_EQ(parsed.ToString(), text);
  EXPECT_THAT(Digest::Parse("sha256"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("expected <algorithm>:<hex>")));
  EXPECT_THAT(Digest::Parse("md5:abcd"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown digest algorithm")));
  EXPECT_THAT(Digest::Parse("sha256:abcd"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 64 hex digits")));
  EXPECT_THAT(Digest::Parse("sha256:" + std::string(64, 'G')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not lowercase hex")));
}

TEST(Crc32c, KnownAnswersAndExtend) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);            // the standard check value
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  EXPECT_EQ(Crc32cExtend(Crc32c("12345"), "6789"), Crc32c("123456789"));
}

TEST(Crc32c, HardwareAndPortablePathsAgree) {
  std::string data(100003, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7919 + 3);
  for (size_t len : {0, 1, 7, 8, 9, 63, 4096, 100003}) {
    std::string_view part = std::string_view(data).substr(0, len);
    EXPECT_EQ(Crc32c(part), Crc32cExtendPortableForTest(0, part)) << len;
  }
}

TEST(Hex, RoundTripAndErrors) {
  EXPECT_EQ(HexEncode(std::string("\x00\xff\x10", 3)), "00ff10");
  ASSERT_OK_AND_ASSIGN(std::string bytes, HexDecode("00FF10"));
  EXPECT_EQ(bytes, std::string("\x00\xff\x10", 3));
  EXPECT_THAT(HexDecode("abc"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("odd")));
  EXPECT_THAT(HexDecode("zz"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hex")));
}

}  // namespace
}  // namespace naiad
