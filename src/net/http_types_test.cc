#include "net/http_types.h"

#include <string>

#include "base/status_matchers.h"

namespace naiad::net {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::Pair;

TEST(HttpHeaders, AddGetCaseInsensitiveInOrder) {
  HttpHeaders headers;
  ASSERT_OK(headers.Add("Content-Type", "text/plain"));
  ASSERT_OK(headers.Add("X-Multi", "a"));
  ASSERT_OK(headers.Add("x-multi", "b"));
  ASSERT_OK(headers.Add("X-Empty", ""));
  EXPECT_THAT(headers.Get("content-type"), Optional(std::string("text/plain")));
  EXPECT_THAT(headers.Get("X-MULTI"), Optional(std::string("a")));
  EXPECT_THAT(headers.Get("x-empty"), Optional(std::string("")));
  EXPECT_EQ(headers.Get("Missing"), std::nullopt);
  EXPECT_TRUE(headers.Has("X-Empty"));
  EXPECT_FALSE(headers.Has("Missing"));
  EXPECT_THAT(headers.entries(),
              ElementsAre(Pair("Content-Type", "text/plain"), Pair("X-Multi", "a"),
                          Pair("x-multi", "b"), Pair("X-Empty", "")));
}

TEST(HttpHeaders, SetReplacesAllAndRemoveRemovesAll) {
  HttpHeaders headers;
  ASSERT_OK(headers.Add("A", "1"));
  ASSERT_OK(headers.Add("B", "2"));
  ASSERT_OK(headers.Add("a", "3"));
  ASSERT_OK(headers.Set("A", "4"));
  EXPECT_THAT(headers.entries(), ElementsAre(Pair("B", "2"), Pair("A", "4")));
  headers.Remove("b");
  EXPECT_THAT(headers.entries(), ElementsAre(Pair("A", "4")));
  headers.Remove("not-there");
  EXPECT_EQ(headers.entries().size(), 1u);
}

TEST(HttpHeaders, RejectsHeaderInjection) {
  HttpHeaders headers;
  EXPECT_THAT(headers.Add("X-Evil", "a\r\nSet-Cookie: x=1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("X-Evil")));
  EXPECT_THAT(headers.Add("X-Evil", "a\nb"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(headers.Add("X-Evil", "a\rb"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(headers.Add("X-Evil", std::string("a\0b", 3)),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(headers.Add("X-Evil\r\nHost", "x"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_TRUE(headers.entries().empty());
}

TEST(HttpHeaders, RejectsNonTokenNames) {
  HttpHeaders headers;
  for (std::string name : {"", "Bad Name", "Bad:Name", "B(ad)", "Bad\tName", "Ünicode"}) {
    EXPECT_THAT(headers.Add(name, "v"), StatusIs(absl::StatusCode::kInvalidArgument, _)) << name;
  }
  EXPECT_OK(headers.Add("X_Ok-Name.1!#$%&'*+^`|~", "v"));
}

TEST(HttpHeaders, FailedSetKeepsOldValue) {
  HttpHeaders headers;
  ASSERT_OK(headers.Add("A", "1"));
  EXPECT_THAT(headers.Set("A", "x\ny"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(headers.Get("A"), Optional(std::string("1")));
}

TEST(ByteRange, FormatsHeaders) {
  ByteRange range{100, 50};
  EXPECT_EQ(range.end(), 150u);
  EXPECT_EQ(range.ToRangeHeader(), "bytes=100-149");
  EXPECT_EQ(range.ToContentRange(1000), "bytes 100-149/1000");
  EXPECT_EQ((ByteRange{0, 1}).ToRangeHeader(), "bytes=0-0");
}

TEST(ParseRangeHeader, FirstLast) {
  EXPECT_THAT(ParseRangeHeader("bytes=0-99", 1000), IsOkAndHolds(ByteRange{0, 100}));
  EXPECT_THAT(ParseRangeHeader("bytes=100-149", 1000), IsOkAndHolds(ByteRange{100, 50}));
  EXPECT_THAT(ParseRangeHeader("bytes=999-999", 1000), IsOkAndHolds(ByteRange{999, 1}));
  // A last position past the end is clamped.
  EXPECT_THAT(ParseRangeHeader("bytes=900-5000", 1000), IsOkAndHolds(ByteRange{900, 100}));
  EXPECT_THAT(ParseRangeHeader(" Bytes=1-2 ", 10), IsOkAndHolds(ByteRange{1, 2}));
}

TEST(ParseRangeHeader, OpenEnded) {
  EXPECT_THAT(ParseRangeHeader("bytes=10-", 1000), IsOkAndHolds(ByteRange{10, 990}));
  EXPECT_THAT(ParseRangeHeader("bytes=0-", 1), IsOkAndHolds(ByteRange{0, 1}));
}

TEST(ParseRangeHeader, Suffix) {
  EXPECT_THAT(ParseRangeHeader("bytes=-100", 1000), IsOkAndHolds(ByteRange{900, 100}));
  EXPECT_THAT(ParseRangeHeader("bytes=-5000", 1000), IsOkAndHolds(ByteRange{0, 1000}));
}

TEST(ParseRangeHeader, UnsatisfiableIsOutOfRange) {
  EXPECT_THAT(ParseRangeHeader("bytes=1000-", 1000), StatusIs(absl::StatusCode::kOutOfRange, _));
  EXPECT_THAT(ParseRangeHeader("bytes=1000-2000", 1000),
              StatusIs(absl::StatusCode::kOutOfRange, _));
  EXPECT_THAT(ParseRangeHeader("bytes=0-0", 0), StatusIs(absl::StatusCode::kOutOfRange, _));
  EXPECT_THAT(ParseRangeHeader("bytes=-0", 1000), StatusIs(absl::StatusCode::kOutOfRange, _));
  EXPECT_THAT(ParseRangeHeader("bytes=-10", 0), StatusIs(absl::StatusCode::kOutOfRange, _));
}

TEST(ParseRangeHeader, MalformedIsInvalidArgument) {
  for (const char* value : {"", "bytes", "bytes=", "bytes=-", "items=0-1", "bytes 0-1", "bytes=a-1",
                            "bytes=1-a", "bytes=5-4", "bytes=+1-2", "bytes=1-2-3", "bytes=0x10-",
                            "bytes=18446744073709551616-", "bytes=--1", "bytes = 0-1"}) {
    EXPECT_THAT(ParseRangeHeader(value, 1000), StatusIs(absl::StatusCode::kInvalidArgument, _))
        << value;
  }
}

TEST(ParseRangeHeader, MultipleRangesRejected) {
  EXPECT_THAT(ParseRangeHeader("bytes=0-1,5-6", 1000),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple")));
}

TEST(ParseContentRange, Parses) {
  ASSERT_OK_AND_ASSIGN(ContentRange cr, ParseContentRange("bytes 100-149/1000"));
  EXPECT_EQ(cr.range, (ByteRange{100, 50}));
  EXPECT_THAT(cr.total, Optional(1000u));
  ASSERT_OK_AND_ASSIGN(cr, ParseContentRange("bytes 0-0/*"));
  EXPECT_EQ(cr.range, (ByteRange{0, 1}));
  EXPECT_EQ(cr.total, std::nullopt);
  ASSERT_OK_AND_ASSIGN(cr, ParseContentRange("bytes */1000"));
  EXPECT_EQ(cr.range.length, 0u);
  EXPECT_THAT(cr.total, Optional(1000u));
  // Round trip.
  ASSERT_OK_AND_ASSIGN(cr, ParseContentRange(ByteRange{7, 3}.ToContentRange(10)));
  EXPECT_EQ(cr.range, (ByteRange{7, 3}));
}

TEST(ParseContentRange, RejectsMalformed) {
  for (const char* value :
       {"", "bytes", "bytes 1-2", "bytes=1-2/3", "bytes 2-1/10", "bytes 0-10/10", "bytes a-b/10",
        "bytes 1-2/x", "bytes */*", "items 1-2/3"}) {
    EXPECT_THAT(ParseContentRange(value), StatusIs(absl::StatusCode::kInvalidArgument, _)) << value;
  }
}

TEST(HttpStatusToStatus, MapsCodes) {
  EXPECT_OK(HttpStatusToStatus(200, "GET /x"));
  EXPECT_OK(HttpStatusToStatus(206, "GET /x"));
  EXPECT_OK(HttpStatusToStatus(302, "GET /x"));
  const std::pair<int, absl::StatusCode> cases[] = {
      {400, absl::StatusCode::kInvalidArgument},
      {401, absl::StatusCode::kUnauthenticated},
      {403, absl::StatusCode::kPermissionDenied},
      {404, absl::StatusCode::kNotFound},
      {408, absl::StatusCode::kDeadlineExceeded},
      {504, absl::StatusCode::kDeadlineExceeded},
      {409, absl::StatusCode::kAborted},
      {412, absl::StatusCode::kFailedPrecondition},
      {416, absl::StatusCode::kOutOfRange},
      {429, absl::StatusCode::kResourceExhausted},
      {418, absl::StatusCode::kFailedPrecondition},
      {405, absl::StatusCode::kFailedPrecondition},
      {500, absl::StatusCode::kUnavailable},
      {502, absl::StatusCode::kUnavailable},
      {503, absl::StatusCode::kUnavailable},
      {100, absl::StatusCode::kUnknown},
      {0, absl::StatusCode::kUnknown},
  };
  for (const auto& [http, code] : cases) {
    EXPECT_THAT(HttpStatusToStatus(http, "GET http://h/blob"),
                StatusIs(code, HasSubstr("GET http://h/blob")))
        << http;
  }
  EXPECT_THAT(HttpStatusToStatus(404, "ctx"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("404")));
}

TEST(StatusToHttpStatus, MapsCodesBack) {
  EXPECT_EQ(StatusToHttpStatus(absl::OkStatus()), 200);
  EXPECT_EQ(StatusToHttpStatus(absl::InvalidArgumentError("")), 400);
  EXPECT_EQ(StatusToHttpStatus(absl::UnauthenticatedError("")), 401);
  EXPECT_EQ(StatusToHttpStatus(absl::PermissionDeniedError("")), 403);
  EXPECT_EQ(StatusToHttpStatus(absl::NotFoundError("")), 404);
  EXPECT_EQ(StatusToHttpStatus(absl::AbortedError("")), 409);
  EXPECT_EQ(StatusToHttpStatus(absl::FailedPreconditionError("")), 412);
  EXPECT_EQ(StatusToHttpStatus(absl::OutOfRangeError("")), 416);
  EXPECT_EQ(StatusToHttpStatus(absl::ResourceExhaustedError("")), 429);
  EXPECT_EQ(StatusToHttpStatus(absl::InternalError("")), 500);
  EXPECT_EQ(StatusToHttpStatus(absl::UnimplementedError("")), 501);
  EXPECT_EQ(StatusToHttpStatus(absl::UnavailableError("")), 503);
  EXPECT_EQ(StatusToHttpStatus(absl::DeadlineExceededError("")), 504);
  // Round trips for the codes both directions know.
  for (int http : {400, 401, 403, 404, 409, 412, 416, 429, 503, 504}) {
    EXPECT_EQ(StatusToHttpStatus(HttpStatusToStatus(http, "x")), http) << http;
  }
}

TEST(IsRetryable, RetryableCodes) {
  EXPECT_TRUE(IsRetryable(absl::UnavailableError("")));
  EXPECT_TRUE(IsRetryable(absl::DeadlineExceededError("")));
  EXPECT_TRUE(IsRetryable(absl::ResourceExhaustedError("")));
  EXPECT_TRUE(IsRetryable(absl::AbortedError("")));
  EXPECT_FALSE(IsRetryable(absl::OkStatus()));
  EXPECT_FALSE(IsRetryable(absl::NotFoundError("")));
  EXPECT_FALSE(IsRetryable(absl::CancelledError("")));
  EXPECT_FALSE(IsRetryable(absl::InvalidArgumentError("")));
}

TEST(CancellationToken, Cancels) {
  CancellationToken token;
  EXPECT_FALSE(token.cancelled());
  token.Cancel();
  EXPECT_TRUE(token.cancelled());
}

}  // namespace
}  // namespace naiad::net
