#include "get/downloader.h"

#include <filesystem>
#include <string>

#include "base/file.h"
#include "base/status_matchers.h"
#include "net/http_server.h"

namespace naiad::get {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::HasSubstr;

std::string Payload() {
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  return data;
}

// Serves /blob (the payload), /short (announces the payload's length, sends half) and 404s.
class DownloaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = net::HttpServer::Start(
        {}, [this](const net::ServerRequest& request, net::ResponseWriter& writer) {
          if (request.path == "/blob") {
            writer.Respond(200, {}, payload_).IgnoreError();
          } else if (request.path == "/short") {
            writer.Begin(200, {}, payload_.size()).IgnoreError();
            writer.Write(std::string_view(payload_).substr(0, payload_.size() / 2)).IgnoreError();
          } else {
            writer.Respond(404, {}, "no such blob").IgnoreError();
          }
        });
    ASSERT_OK(server.status());
    server_ = std::move(*server);
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create());
  }

  // Nothing but the named files may exist in the output directory: no temporaries.
  void ExpectDirHolds(size_t files) {
    size_t count = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      (void)entry;
      ++count;
    }
    EXPECT_EQ(count, files);
  }

  DownloadOptions Options(const std::string& path) {
    return {.url = server_->url() + path, .output = dir_.Join("out")};
  }

  std::string payload_ = Payload();
  std::unique_ptr<net::HttpServer> server_;
  TempDir dir_;
  net::HttpClient client_;
};

TEST_F(DownloaderTest, DownloadsAndVerifiesDigest) {
  DownloadOptions options = Options("/blob");
  options.digest = Digest::Of(DigestAlgorithm::kSha256, payload_);
  int reports = 0;
  uint64_t last_bytes = 0;
  options.on_progress = [&](const DownloadProgress& p) {
    ++reports;
    last_bytes = p.bytes;
  };
  ASSERT_OK_AND_ASSIGN(DownloadResult result, Download(client_, options));
  EXPECT_EQ(result.bytes, payload_.size());
  EXPECT_EQ(result.sha256, *options.digest);
  EXPECT_THAT(ReadFileToString(options.output), ::naiad::testing::IsOkAndHolds(payload_));
  EXPECT_GE(reports, 1);
  EXPECT_EQ(last_bytes, payload_.size());
  ExpectDirHolds(1);
}

TEST_F(DownloaderTest, Blake3DigestIsVerifiedToo) {
  DownloadOptions options = Options("/blob");
  options.digest = Digest::Of(DigestAlgorithm::kBlake3, payload_);
  EXPECT_OK(Download(client_, options).status());
}

TEST_F(DownloaderTest, DigestMismatchLeavesNoOutput) {
  DownloadOptions options = Options("/blob");
  options.digest = Digest::Of(DigestAlgorithm::kSha256, "something else");
  EXPECT_THAT(Download(client_, options),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("digest mismatch")));
  ExpectDirHolds(0);
}

TEST_F(DownloaderTest, HttpErrorLeavesNoOutput) {
  EXPECT_THAT(Download(client_, Options("/missing")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/missing")));
  ExpectDirHolds(0);
}

TEST_F(DownloaderTest, TruncatedBodyLeavesNoOutput) {
  EXPECT_FALSE(Download(client_, Options("/short")).ok());
  ExpectDirHolds(0);
}

TEST_F(DownloaderTest, UnwritableDestinationIsAClearError) {
  DownloadOptions options = Options("/blob");
  options.output = dir_.Join("no/such/dir/out");
  EXPECT_THAT(Download(client_, options),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no/such/dir")));
}

}  // namespace
}  // namespace naiad::get
