#include "test/testing/registry_access_log.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;

// Lines as docker-registry 2.8.2 writes them (captured from a real run).
constexpr char kLog[] =
    "time=\"2026-11-28T09:53:02.496Z\" level=info msg=\"response completed\" "
    "http.request.method=GET http.request.uri=/v2/ http.response.status=200 "
    "http.response.written=2\n"
    "127.0.0.1 - - [28/Nov/2026:09:53:02 +0000] \"GET /v2/ HTTP/1.1\" 200 2 \"\" "
    "\"curl/7.88.1\"\n"
    "127.0.0.1 - - [28/Nov/2026:09:53:02 +0000] \"PUT /v2/t/blobs/uploads/b79?_state=Mb&"
    "digest=sha256:d298 HTTP/1.1\" 201 0 \"\" \"curl/7.88.1\"\n"
    "127.0.0.1 - - [28/Nov/2026:09:53:02 +0000] \"GET /v2/a/b/blobs/sha256:d298 HTTP/1.1\" "
    "206 1024 \"\" \"naiad/0.1\"\n"
    "127.0.0.1 - - [28/Nov/2026:09:53:02 +0000] \"HEAD /v2/t/blobs/sha256:d298 HTTP/1.1\" "
    "200 0 \"\" \"curl/7.88.1\"\n"
    "127.0.0.1 - - [28/Nov/2026:09:53:02 +0000] \"GET /v2/t/manifests/v1 HTTP/1.1\" 404 - "
    "\"\" \"curl/7.88.1\"\n"
    "127.0.0.1 - - [28/Nov/2026:09:53:02 +0000] \"GET /v2/t/blobs/sha256:ff HTTP/1.1\" 200 5";

TEST(RegistryAccessLog, ParsesCombinedLinesAndSkipsTheRest) {
  std::vector<AccessLogEntry> entries = ParseAccessLog(kLog);
  ASSERT_EQ(entries.size(), 5u);  // the logrus record and the unterminated line are skipped
  EXPECT_THAT(entries,
              ElementsAre(Field(&AccessLogEntry::bytes, 2u), Field(&AccessLogEntry::bytes, 0u),
                          Field(&AccessLogEntry::bytes, 1024u), Field(&AccessLogEntry::bytes, 0u),
                          Field(&AccessLogEntry::bytes, 0u)));
  EXPECT_EQ(entries[2].method, "GET");
  EXPECT_EQ(entries[2].uri, "/v2/a/b/blobs/sha256:d298");
  EXPECT_EQ(entries[2].status, 206);
  EXPECT_EQ(entries[4].status, 404);
}

TEST(RegistryAccessLog, RecognisesBlobGets) {
  std::vector<AccessLogEntry> entries = ParseAccessLog(kLog);
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_FALSE(entries[0].IsBlobGet());  // /v2/
  EXPECT_FALSE(entries[1].IsBlobGet());  // upload PUT
  EXPECT_TRUE(entries[2].IsBlobGet());
  EXPECT_FALSE(entries[3].IsBlobGet());  // HEAD
  EXPECT_FALSE(entries[4].IsBlobGet());  // manifest
  EXPECT_FALSE((AccessLogEntry{.method = "GET", .uri = "/v2/x/blobs/uploads/abc"}).IsBlobGet());
}

TEST(RegistryAccessLog, RejectsGarbage) {
  EXPECT_FALSE(ParseAccessLogLine("").has_value());
  EXPECT_FALSE(ParseAccessLogLine("hello world").has_value());
  EXPECT_FALSE(ParseAccessLogLine("1.2.3.4 - - [x] \"GET /v2/\" 200 2").has_value());
  EXPECT_FALSE(ParseAccessLogLine("1.2.3.4 - - [x] \"GET /v2/ HTTP/1.1\" abc 2").has_value());
}

}  // namespace
}  // namespace naiad::testing
