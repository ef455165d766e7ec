#include "get/downloader.h"

#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "absl/synchronization/notification.h"
#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "net/http_server.h"

namespace naiad::get {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Payload() {
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  return data;
}

// Serves /blob (the payload), /short (announces the payload's length, sends half), /stall
// (sends half, then waits until the test ends), /huge-error (a 500 with a 1 MiB body) and 404s.
class DownloaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = net::HttpServer::Start(
        {}, [this](const net::ServerRequest& request, net::ResponseWriter& writer) {
          std::string_view half = std::string_view(payload_).substr(0, payload_.size() / 2);
          if (request.path == "/blob") {
            net::HttpHeaders headers;
            headers.Add("X-Test", "yes").IgnoreError();
            writer.Respond(200, headers, payload_).IgnoreError();
          } else if (request.path == "/short") {
            writer.Begin(200, {}, payload_.size()).IgnoreError();
            writer.Write(half).IgnoreError();
          } else if (request.path == "/stall") {
            writer.Begin(200, {}, payload_.size()).IgnoreError();
            writer.Write(half).IgnoreError();
            released_.WaitForNotificationWithTimeout(absl::Seconds(10));
          } else if (request.path == "/huge-error") {
            writer.Respond(500, {}, std::string(1 << 20, 'x')).IgnoreError();
          } else {
            writer.Respond(404, {}, "no such blob\n  try\tanother").IgnoreError();
          }
        });
    ASSERT_OK(server.status());
    server_ = std::move(*server);
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create());
  }

  void TearDown() override { released_.Notify(); }

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
  absl::Notification released_;
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
  struct stat st {};
  ASSERT_EQ(::stat(options.output.c_str(), &st), 0);
  mode_t mask = ::umask(022);
  ::umask(mask);
  EXPECT_EQ(st.st_mode & 0777, 0666 & ~mask);  // not mkstemp's 0600
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

TEST_F(DownloaderTest, HttpErrorNamesStatusAndBodyAndLeavesNoOutput) {
  EXPECT_THAT(Download(client_, Options("/missing")),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("/missing"), HasSubstr("HTTP status 404"),
                             HasSubstr(": no such blob try another"))));
  ExpectDirHolds(0);
}

TEST_F(DownloaderTest, LongErrorBodiesAreCutShort) {
  absl::StatusOr<DownloadResult> result = Download(client_, Options("/huge-error"));
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("500")));
  EXPECT_LT(result.status().message().size(), 400u);
  EXPECT_THAT(std::string(ToStd(result.status().message())), ::testing::EndsWith("..."));
  ExpectDirHolds(0);
}

// The daemon path: another request fetches the content; errors still name the content's URL.
TEST_F(DownloaderTest, FetchesWithTheGivenRequestAndReportsTheResponse) {
  DownloadOptions options = Options("/blob");
  options.url = "http://origin.invalid/blob";
  options.via = "a test server";
  std::optional<std::string> seen;
  options.on_response = [&](const net::HttpResponse& response) {
    seen = response.headers.Get("X-Test");
  };
  ASSERT_OK_AND_ASSIGN(
      DownloadResult result,
      Download(client_, net::HttpRequest{.url = server_->url() + "/blob"}, options));
  EXPECT_EQ(result.bytes, payload_.size());
  EXPECT_EQ(seen, "yes");
  ExpectDirHolds(1);

  options.on_error = [](const net::HttpResponse& response) {
    return absl::NotFoundError(StrCat("custom ", response.status, " ", response.body));
  };
  EXPECT_THAT(Download(client_, net::HttpRequest{.url = server_->url() + "/missing"}, options),
              StatusIs(absl::StatusCode::kNotFound, "custom 404 no such blob\n  try\tanother"));
  options.output = dir_.Join("short");
  EXPECT_THAT(Download(client_, net::HttpRequest{.url = server_->url() + "/short"}, options),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("http://origin.invalid/blob via a test server: ")));
  ExpectDirHolds(1);
}

TEST_F(DownloaderTest, TimeoutNamesTheLimitAndLeavesNoOutput) {
  DownloadOptions options = Options("/stall");
  options.timeout = absl::Milliseconds(300);
  EXPECT_THAT(Download(client_, options),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("timed out after 300ms")));
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
