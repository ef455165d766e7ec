#include "storage/localfs_backend.h"

#include "base/digest.h"
#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::storage {
namespace {

using ::naiad::testing::StatusIs;

class LocalfsBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create());
    for (int i = 0; i < 4096; ++i) data_.push_back(static_cast<char>(i * 7));
    id_ = Digest::Of(DigestAlgorithm::kSha256, data_).Hex();
    ASSERT_OK(WriteFileAtomically(StrCat(dir_.path(), "/", id_), data_));
  }

  TempDir dir_;
  std::string data_;
  std::string id_;
};

TEST_F(LocalfsBackendTest, ReadsExactRanges) {
  ASSERT_OK_AND_ASSIGN(auto backend, LocalfsBackend::Create({.dir = dir_.path()}));
  EXPECT_THAT(backend->BlobSize(id_), testing::IsOkAndHolds(4096u));
  BlobRead read;
  ASSERT_OK(backend->Read({.blob_id = id_, .offset = 100, .length = 50}, &read));
  EXPECT_EQ(read.data, data_.substr(100, 50));
  EXPECT_EQ(read.source, "localfs");
  ASSERT_OK(backend->Read({.blob_id = id_, .offset = 4095, .length = 1}, &read));
  EXPECT_EQ(read.data, data_.substr(4095));
  std::vector<SourceMetrics> metrics = backend->Metrics();
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(metrics[0].requests, 2u);
  EXPECT_EQ(metrics[0].bytes, 51u);
}

TEST_F(LocalfsBackendTest, ShortBlobIsDataLoss) {
  ASSERT_OK_AND_ASSIGN(auto backend, LocalfsBackend::Create({.dir = dir_.path()}));
  BlobRead read;
  EXPECT_THAT(backend->Read({.blob_id = id_, .offset = 4000, .length = 200}, &read),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
}

TEST_F(LocalfsBackendTest, MissingAndMalformedIds) {
  ASSERT_OK_AND_ASSIGN(auto backend, LocalfsBackend::Create({.dir = dir_.path()}));
  EXPECT_THAT(backend->BlobSize(std::string(64, 'a')),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(backend->BlobSize("../etc/passwd"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST_F(LocalfsBackendTest, SearchesAltDirs) {
  ASSERT_OK_AND_ASSIGN(TempDir empty, TempDir::Create());
  ASSERT_OK_AND_ASSIGN(auto backend,
                       LocalfsBackend::Create({.dir = empty.path(), .alt_dirs = {dir_.path()}}));
  EXPECT_THAT(backend->BlobSize(id_), testing::IsOkAndHolds(4096u));
}

}  // namespace
}  // namespace naiad::storage
