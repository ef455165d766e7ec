// HttpClient against HttpServer (and openssl s_server) over real loopback sockets. Timing bounds
// are deliberately generous: they separate "returned promptly" from "hung until a default
// timeout of many seconds", nothing finer.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "net/http_client.h"
#include "net/http_server.h"

namespace naiad::net {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::StartsWith;

// A one-way latch with a bounded wait, for handlers that must stall until the test says so.
class Gate {
 public:
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool WaitFor(absl::Duration timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Opens a gate when the test's scope ends, so that a stalled handler lets the server's Shutdown()
// finish even when an assertion returned early. Declare the gate before the server (the handler
// uses it) and this after the server (so it runs first).
struct OpenOnExit {
  Gate& gate;
  ~OpenOnExit() { gate.Open(); }
};

std::string Pattern(size_t size) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>((i * 131 + i / 4099) & 0xff);
  return data;
}

HttpHeaders Headers(std::initializer_list<std::pair<std::string, std::string>> fields) {
  HttpHeaders headers;
  for (const auto& [name, value] : fields) EXPECT_OK(headers.Add(name, value));
  return headers;
}

// Serves `content` honouring a Range header, as a blob server does.
void ServeContent(const std::string& content, const ServerRequest& request, ResponseWriter& w) {
  std::optional<std::string> range_header = request.headers.Get("Range");
  if (!range_header) {
    w.Respond(200, {}, content).IgnoreError();
    return;
  }
  absl::StatusOr<ByteRange> range = ParseRangeHeader(*range_header, content.size());
  if (!range.ok()) {
    w.Respond(StatusToHttpStatus(range.status()),
              Headers({{"Content-Range", StrCat("bytes */", content.size())}}), "")
        .IgnoreError();
    return;
  }
  w.Respond(206, Headers({{"Content-Range", range->ToContentRange(content.size())}}),
            std::string_view(content).substr(range->offset, range->length))
      .IgnoreError();
}

absl::Duration Since(absl::Time start) { return absl::Now() - start; }

uint16_t FreePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    return 0;
  }
  return ntohs(addr.sin_port);
}

UniqueFd Connect(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return {};
  return fd;
}

bool WaitForPort(uint16_t port, absl::Duration timeout) {
  for (absl::Time deadline = absl::Now() + timeout; absl::Now() < deadline;) {
    if (Connect(port).valid()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

// Reads until EOF or `timeout`; returns what arrived.
std::string ReadUntilClosed(int fd, absl::Duration timeout) {
  std::string out;
  absl::Time deadline = absl::Now() + timeout;
  char buffer[4096];
  while (absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<HttpServer>> Serve(HttpHandler handler,
                                                  const HttpServerOptions& options = {}) {
  return HttpServer::Start(options, std::move(handler));
}

std::string Url(const std::unique_ptr<HttpServer>& server, std::string_view path) {
  return StrCat(server->url(), path);
}

TEST(ClientServerTest, UrlAndPort) {
  ASSERT_OK_AND_ASSIGN(auto server, Serve([](const ServerRequest&, ResponseWriter& w) {
                         w.Respond(200, {}, "").IgnoreError();
                       }));
  EXPECT_NE(server->port(), 0);
  EXPECT_EQ(server->url(), StrCat("http://127.0.0.1:", server->port()));
  auto handler = [](const ServerRequest&, ResponseWriter&) {};
  EXPECT_THAT(HttpServer::Start({.port = server->port()}, handler),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("in use")));
  EXPECT_THAT(HttpServer::Start({.address = "not-an-ip"}, handler),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not-an-ip")));
  EXPECT_THAT(HttpServer::Start({}, nullptr), StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST(ClientServerTest, RangeRequestAnswered206) {
  const std::string content = Pattern(1000);
  ASSERT_OK_AND_ASSIGN(auto server, Serve([&](const ServerRequest& r, ResponseWriter& w) {
                         ServeContent(content, r, w);
                       }));
  HttpClient client;
  ASSERT_OK_AND_ASSIGN(HttpResponse response,
                       client.Send({.url = Url(server, "/blob"), .range = ByteRange{100, 50}}));
  EXPECT_EQ(response.status, 206);
  EXPECT_OK(HttpStatusToStatus(response.status, "range"));
  EXPECT_EQ(response.body, content.substr(100, 50));
  EXPECT_THAT(response.headers.Get("Content-Range"), Optional(std::string("bytes 100-149/1000")));
  EXPECT_THAT(response.headers.Get("content-length"), Optional(std::string("50")));
  ASSERT_OK_AND_ASSIGN(ContentRange parsed,
                       ParseContentRange(*response.headers.Get("Content-Range")));
  EXPECT_EQ(parsed.range, (ByteRange{100, 50}));
  EXPECT_THAT(parsed.total, Optional(1000u));

  ASSERT_OK_AND_ASSIGN(response,
                       client.Send({.url = Url(server, "/blob"), .range = ByteRange{1000, 1}}));
  EXPECT_EQ(response.status, 416);
  EXPECT_THAT(HttpStatusToStatus(response.status, "x"), StatusIs(absl::StatusCode::kOutOfRange, _));
  ASSERT_OK_AND_ASSIGN(response,
                       client.Get(Url(server, "/blob"), Headers({{"Range", "bytes=5-1"}})));
  EXPECT_EQ(response.status, 400);
  ASSERT_OK_AND_ASSIGN(response, client.Get(Url(server, "/blob")));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, content);
}

TEST(ClientServerTest, RequestFieldsReachHandlerAndResponseHeadersReachClient) {
  std::mutex mu;
  ServerRequest seen;
  ASSERT_OK_AND_ASSIGN(
      auto server, Serve([&](const ServerRequest& r, ResponseWriter& w) {
        {
          std::lock_guard lock(mu);
          seen = r;
        }
        w.Respond(201, Headers({{"X-Reply", "yes"}, {"Content-Type", "text/plain"}}), "created")
            .IgnoreError();
      }));
  HttpClient client;
  ASSERT_OK_AND_ASSIGN(
      HttpResponse response,
      client.Send({.method = "POST",
                   .url = Url(server, "/v2/upload?digest=sha256:ab&x=1"),
                   .headers = Headers({{"X-Test", "value 1"}, {"Content-Type", "app/x"}}),
                   .body = "payload"}));
  EXPECT_EQ(response.status, 201);
  EXPECT_EQ(response.body, "created");
  EXPECT_THAT(response.headers.Get("x-reply"), Optional(std::string("yes")));
  EXPECT_EQ(response.effective_url, Url(server, "/v2/upload?digest=sha256:ab&x=1"));
  std::lock_guard lock(mu);
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.target, "/v2/upload?digest=sha256:ab&x=1");
  EXPECT_EQ(seen.path, "/v2/upload");
  EXPECT_EQ(seen.query, "digest=sha256:ab&x=1");
  EXPECT_EQ(seen.body, "payload");
  EXPECT_THAT(seen.headers.Get("X-Test"), Optional(std::string("value 1")));
  EXPECT_THAT(seen.headers.Get("Content-Type"), Optional(std::string("app/x")));
  EXPECT_THAT(seen.headers.Get("User-Agent"), Optional(StartsWith("naiad/")));
  EXPECT_FALSE(seen.headers.Has("Expect"));
  EXPECT_THAT(seen.remote_address, StartsWith("127.0.0.1:"));
}

TEST(ClientServerTest, StreamsKnownLengthResponseToSink) {
  const std::string content = Pattern(8 << 20);
  ASSERT_OK_AND_ASSIGN(auto server, Serve([&](const ServerRequest&, ResponseWriter& w) {
                         if (!w.Begin(200, {}, content.size()).ok()) return;
                         for (size_t offset = 0; offset < content.size(); offset += 65536) {
                           if (!w.Write(std::string_view(content).substr(offset, 65536)).ok())
                             return;
                         }
                         EXPECT_OK(w.End());
                       }));
  HttpClient client;
  std::string received;
  int header_calls = 0;
  ASSERT_OK_AND_ASSIGN(HttpResponse response,
                       client.Send({.url = Url(server, "/big"),
                                    .on_headers =
                                        [&](const HttpResponse& r) {
                                          ++header_calls;
                                          EXPECT_TRUE(received.empty());
                                          EXPECT_EQ(r.status, 200);
                                          EXPECT_THAT(r.headers.Get("Content-Length"),
                                                      Optional(std::to_string(content.size())));
                                          return absl::OkStatus();
                                        },
                                    .body_sink =
                                        [&](std::string_view piece) {
                                          received.append(piece);
                                          return absl::OkStatus();
                                        }}));
  EXPECT_EQ(response.status, 200);
  EXPECT_TRUE(response.body.empty());
  EXPECT_EQ(header_calls, 1);
  EXPECT_EQ(received.size(), content.size());
  EXPECT_TRUE(received == content);
}

TEST(ClientServerTest, StreamsChunkedResponse) {
  ASSERT_OK_AND_ASSIGN(
      auto server, Serve([](const ServerRequest&, ResponseWriter& w) {
        if (!w.Begin(200, Headers({{"Content-Type", "text/plain"}}), std::nullopt).ok()) return;
        for (int i = 0; i < 100; ++i) {
          if (!w.Write(StrCat("line ", i, "\n")).ok()) return;
          if (!w.Write("").ok()) return;  // an empty write must not end the chunked body
        }
        EXPECT_OK(w.End());
        EXPECT_OK(w.End());  // idempotent
      }));
  HttpClient client;
  ASSERT_OK_AND_ASSIGN(HttpResponse response, client.Get(Url(server, "/chunked")));
  EXPECT_EQ(response.status, 200);
  EXPECT_THAT(response.headers.Get("Transfer-Encoding"), Optional(std::string("chunked")));
  EXPECT_FALSE(response.headers.Has("Content-Length"));
  std::string expected;
  for (int i = 0; i < 100; ++i) StrAppend(&expected, "line ", i, "\n");
  EXPECT_EQ(response.body, expected);
  // The connection is still usable after a chunked body.
  ASSERT_OK_AND_ASSIGN(response, client.Get(Url(server, "/chunked")));
  EXPECT_EQ(response.body, expected);
  EXPECT_EQ(client.connections_opened(), 1u);
}

TEST(ClientServerTest, UploadsBodyFromFile) {
  const std::string content = Pattern(3 << 20);
  ASSERT_OK_AND_ASSIGN(
      auto server, Serve([&](const ServerRequest& r, ResponseWriter& w) {
        bool same = r.body == content;
        w.Respond(same ? 200 : 400, {}, StrCat(r.method, " ", r.body.size())).IgnoreError();
      }));
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("naiad-net-test-"));
  ASSERT_OK(WriteFileAtomically(dir.Join("upload"), content));
  HttpClient client;
  ASSERT_OK_AND_ASSIGN(HttpResponse response, client.Send({.method = "PUT",
                                                           .url = Url(server, "/upload"),
                                                           .body_file = dir.Join("upload")}));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, StrCat("PUT ", content.size()));
  EXPECT_THAT(
      client.Send({.method = "PUT", .url = Url(server, "/upload"), .body_file = dir.Join("none")}),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("none")));
}

TEST(ClientServerTest, SinkAndOnHeadersErrorsAbortTheTransfer) {
  const std::string content = Pattern(4 << 20);
  ASSERT_OK_AND_ASSIGN(auto server, Serve([&](const ServerRequest& r, ResponseWriter& w) {
                         ServeContent(content, r, w);
                       }));
  HttpClient client;
  int pieces = 0;
  EXPECT_THAT(client.Send({.url = Url(server, "/x"),
                           .body_sink =
                               [&](std::string_view) {
                                 ++pieces;
                                 return absl::DataLossError("digest mismatch");
                               }}),
              StatusIs(absl::StatusCode::kDataLoss, "digest mismatch"));
  EXPECT_EQ(pieces, 1);
  bool sink_called = false;
  EXPECT_THAT(client.Send({.url = Url(server, "/x"),
                           .on_headers =
                               [](const HttpResponse& r) {
                                 return absl::PermissionDeniedError(StrCat("status ", r.status));
                               },
                           .body_sink =
                               [&](std::string_view) {
                                 sink_called = true;
                                 return absl::OkStatus();
                               }}),
              StatusIs(absl::StatusCode::kPermissionDenied, "status 200"));
  EXPECT_FALSE(sink_called);
  // The client still works afterwards.
  ASSERT_OK_AND_ASSIGN(HttpResponse response, client.Get(Url(server, "/x")));
  EXPECT_EQ(response.body.size(), content.size());
}

TEST(ClientServerTest, OnHeadersRunsOnceForEmptyBody) {
  ASSERT_OK_AND_ASSIGN(auto server, Serve([](const ServerRequest&, ResponseWriter& w) {
                         w.Respond(204, {}, "").IgnoreError();
                       }));
  HttpClient client;
  int calls = 0;
  ASSERT_OK_AND_ASSIGN(
      HttpResponse response,
      client.Send({.url = Url(server, "/empty"), .on_headers = [&](const HttpResponse& r) {
                     ++calls;
                     EXPECT_EQ(r.status, 204);
                     return absl::OkStatus();
                   }}));
  EXPECT_EQ(response.status, 204);
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(response.headers.Has("Content-Length"));
  ASSERT_OK_AND_ASSIGN(response, client.Get(Url(server, "/again")));
  EXPECT_EQ(response.status, 204);
  EXPECT_EQ(client.connections_opened(), 1u);
}

TEST(ClientServerTest, FollowsRedirects) {
  ASSERT_OK_AND_ASSIGN(
      auto server, Serve([](const ServerRequest& r, ResponseWriter& w) {
        if (r.path == "/old") {
          w.Respond(302, Headers({{"Location", "/new"}, {"X-Hop", "1"}}), "moved").IgnoreError();
        } else {
          w.Respond(200, Headers({{"X-Final", "yes"}}), "new body").IgnoreError();
        }
      }));
  HttpClient client;
  std::vector<int> seen_statuses;
  ASSERT_OK_AND_ASSIGN(
      HttpResponse response,
      client.Send({.url = Url(server, "/old"), .on_headers = [&](const HttpResponse& r) {
                     seen_statuses.push_back(r.status);
                     return absl::OkStatus();
                   }}));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "new body");
  EXPECT_EQ(response.effective_url, Url(server, "/new"));
  EXPECT_TRUE(response.headers.Has("X-Final"));
  EXPECT_FALSE(response.headers.Has("X-Hop"));
  EXPECT_FALSE(response.headers.Has("Location"));
  EXPECT_EQ(seen_statuses, std::vector<int>{200});

  ASSERT_OK_AND_ASSIGN(response,
                       client.Send({.url = Url(server, "/old"), .follow_redirects = false}));
  EXPECT_EQ(response.status, 302);
  EXPECT_THAT(response.headers.Get("Location"), Optional(std::string("/new")));
  EXPECT_EQ(response.body, "moved");
}

TEST(ClientServerTest, TooManyRedirectsFails) {
  ASSERT_OK_AND_ASSIGN(auto server, Serve([](const ServerRequest&, ResponseWriter& w) {
                         w.Respond(302, Headers({{"Location", "/loop"}}), "").IgnoreError();
                       }));
  HttpClient client({.max_redirects = 3});
  EXPECT_THAT(client.Get(Url(server, "/loop")), StatusIs(absl::StatusCode::kFailedPrecondition, _));
}

TEST(ClientServerTest, ReusesOneConnectionAcrossRequestsAndThreads) {
  ASSERT_OK_AND_ASSIGN(auto server, Serve([](const ServerRequest& r, ResponseWriter& w) {
                         w.Respond(200, {}, r.path).IgnoreError();
                       }));
  HttpClient client;
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK_AND_ASSIGN(HttpResponse response, client.Get(Url(server, StrCat("/", i))));
    EXPECT_EQ(response.body, StrCat("/", i));
  }
  EXPECT_EQ(client.connections_opened(), 1u);
  std::thread other([&] { EXPECT_OK(client.Get(Url(server, "/other")).status()); });
  other.join();
  EXPECT_EQ(client.connections_opened(), 1u);
}

TEST(ClientServerTest, ConcurrentRequests) {
  const std::string content = Pattern(100000);
  ASSERT_OK_AND_ASSIGN(auto server, Serve([&](const ServerRequest& r,
                                              ResponseWriter& w) { ServeContent(content, r, w); },
                                          {.threads = 4}));
  HttpClient client;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        ByteRange range{static_cast<uint64_t>(t * 1000 + i), 5000};
        absl::StatusOr<HttpResponse> r = client.Send({.url = Url(server, "/c"), .range = range});
        if (r.ok() && r->status == 206 && r->body == content.substr(range.offset, range.length)) {
          ++ok;
        } else {
          ADD_FAILURE() << (r.ok() ? StrCat("status ", r->status) : r.status().ToString());
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 120);
}

TEST(ClientServerTest, RequestTimeoutIsDeadlineExceeded) {
  Gate release;
  ASSERT_OK_AND_ASSIGN(auto server, Serve([&](const ServerRequest&, ResponseWriter& w) {
                         release.WaitFor(absl::Seconds(30));
                         w.Respond(200, {}, "late").IgnoreError();
                       }));
  OpenOnExit open{release};
  HttpClient client({.timeout = absl::Seconds(30)});
  absl::Time start = absl::Now();
  EXPECT_THAT(client.Send({.url = Url(server, "/stall"), .timeout = absl::Milliseconds(500)}),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr(Url(server, "/stall"))));
  EXPECT_LT(Since(start), absl::Seconds(10));
}

TEST(ClientServerTest, LowSpeedLimitAbortsStalledTransfer) {
  Gate release;
  ASSERT_OK_AND_ASSIGN(auto server, Serve([&](const ServerRequest&, ResponseWriter& w) {
                         if (!w.Begin(200, {}, 1 << 20).ok() || !w.Write("a few bytes").ok())
                           return;
                         release.WaitFor(absl::Seconds(30));
                       }));
  OpenOnExit open{release};
  HttpClient client({.low_speed_time = absl::Seconds(1), .low_speed_bytes_per_second = 1000});
  absl::Time start = absl::Now();
  EXPECT_THAT(client.Get(Url(server, "/slow")), StatusIs(absl::StatusCode::kDeadlineExceeded, _));
  EXPECT_LT(Since(start), absl::Seconds(15));
}

TEST(ClientServerTest, CancellationFromAnotherThread) {
  Gate release;
  ASSERT_OK_AND_ASSIGN(auto server, Serve([&](const ServerRequest&, ResponseWriter& w) {
                         release.WaitFor(absl::Seconds(30));
                         w.Respond(200, {}, "late").IgnoreError();
                       }));
  OpenOnExit open{release};
  HttpClient client;
  CancellationToken token;
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(300));
    token.Cancel();
  });
  absl::Time start = absl::Now();
  EXPECT_THAT(client.Send({.url = Url(server, "/stall"), .cancel = &token}),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr(Url(server, "/stall"))));
  EXPECT_LT(Since(start), absl::Seconds(10));
  canceller.join();
  // An already cancelled token fails at once.
  EXPECT_THAT(client.Send({.url = Url(server, "/stall"), .cancel = &token}),
              StatusIs(absl::StatusCode::kCancelled, _));
}

TEST(ClientServerTest, ConnectionRefusedIsUnavailable) {
  ASSERT_OK_AND_ASSIGN(auto server, Serve([](const ServerRequest&, ResponseWriter& w) {
                         w.Respond(200, {}, "").IgnoreError();
                       }));
  const std::string url = Url(server, "/gone");
  server->Shutdown();
  HttpClient client;
  EXPECT_THAT(client.Get(url), StatusIs(absl::StatusCode::kUnavailable, HasSubstr(url)));
}

TEST(ClientServerTest, HeadGetsHeadersWithoutBody) {
  ASSERT_OK_AND_ASSIGN(auto server, Serve([](const ServerRequest& r, ResponseWriter& w) {
                         if (r.path == "/respond") {
                           w.Respond(200, {}, "hello world").IgnoreError();
                           return;
                         }
                         if (!w.Begin(200, {}, 5).ok()) return;
                         EXPECT_OK(w.Write("hello"));
                         EXPECT_OK(w.End());
                       }));
  HttpClient client;
  for (const char* path : {"/respond", "/stream"}) {
    ASSERT_OK_AND_ASSIGN(HttpResponse response,
                         client.Send({.method = "HEAD", .url = Url(server, path)}));
    EXPECT_EQ(response.status, 200);
    EXPECT_TRUE(response.body.empty());
    EXPECT_THAT(response.headers.Get("Content-Length"),
                Optional(std::string(path == std::string("/respond") ? "11" : "5")));
  }
  // Had the server sent a body, it would have corrupted the reused connection.
  ASSERT_OK_AND_ASSIGN(HttpResponse response, client.Get(Url(server, "/respond")));
  EXPECT_EQ(response.body, "hello world");
  EXPECT_EQ(client.connections_opened(), 1u);
}

TEST(ClientServerTest, RequestBodyOverLimitIs413) {
  ASSERT_OK_AND_ASSIGN(auto server,
                       Serve(
                           [](const ServerRequest& r, ResponseWriter& w) {
                             w.Respond(200, {}, std::to_string(r.body.size())).IgnoreError();
                           },
                           {.max_request_body = 1024}));
  HttpClient client;
  ASSERT_OK_AND_ASSIGN(
      HttpResponse response,
      client.Send({.method = "POST", .url = Url(server, "/p"), .body = Pattern(1024)}));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "1024");
  ASSERT_OK_AND_ASSIGN(
      response,
      client.Send({.method = "POST", .url = Url(server, "/p"), .body = Pattern(1 << 20)}));
  EXPECT_EQ(response.status, 413);
}

TEST(ClientServerTest, HandlerWithoutResponseOrThrowingGets500) {
  ASSERT_OK_AND_ASSIGN(auto server, Serve([](const ServerRequest& r, ResponseWriter&) {
                         if (r.path == "/throw") throw std::runtime_error("boom");
                       }));
  HttpClient client;
  ASSERT_OK_AND_ASSIGN(HttpResponse response, client.Get(Url(server, "/nothing")));
  EXPECT_EQ(response.status, 500);
  ASSERT_OK_AND_ASSIGN(response, client.Get(Url(server, "/throw")));
  EXPECT_EQ(response.status, 500);
  EXPECT_THAT(HttpStatusToStatus(response.status, "x"),
              StatusIs(absl::StatusCode::kUnavailable, _));
}

TEST(ClientServerTest, TruncatedStreamedResponseIsAnError) {
  std::mutex mu;
  absl::Status end_status;
  ASSERT_OK_AND_ASSIGN(auto server, Serve([&](const ServerRequest& r, ResponseWriter& w) {
                         std::optional<uint64_t> length;
                         if (r.path != "/chunked") length = 1000;
                         if (!w.Begin(200, {}, length).ok() || !w.Write(Pattern(500)).ok()) return;
                         if (r.path == "/short-end") {
                           std::lock_guard lock(mu);
                           end_status = w.End();
                         }
                       }));
  HttpClient client;
  for (const char* path : {"/short", "/short-end", "/chunked"}) {
    EXPECT_THAT(client.Get(Url(server, path)), StatusIs(absl::StatusCode::kUnavailable, _)) << path;
    std::string received;
    EXPECT_FALSE(client
                     .Send({.url = Url(server, path),
                            .body_sink =
                                [&](std::string_view piece) {
                                  received.append(piece);
                                  return absl::OkStatus();
                                }})
                     .ok())
        << path;
    EXPECT_LE(received.size(), 500u);
  }
  server->Shutdown();
  std::lock_guard lock(mu);
  EXPECT_THAT(end_status,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("500 of 1000")));
}

TEST(ClientServerTest, WriterEnforcesItsContract) {
  std::mutex mu;
  std::vector<absl::StatusCode> codes;
  ASSERT_OK_AND_ASSIGN(auto server, Serve([&](const ServerRequest& r, ResponseWriter& w) {
                         std::vector<absl::StatusCode> c;
                         c.push_back(w.Write("x").code());  // before Begin
                         c.push_back(w.End().code());       // before Begin
                         c.push_back(w.Respond(99, {}, "").code());
                         EXPECT_FALSE(w.started());
                         c.push_back(w.Begin(200, {}, 3).code());
                         EXPECT_TRUE(w.started());
                         c.push_back(w.Respond(200, {}, "").code());  // already started
                         c.push_back(w.Write("abcd").code());         // past the length
                         c.push_back(w.Write("abc").code());
                         c.push_back(w.End().code());
                         std::lock_guard lock(mu);
                         codes = c;
                       }));
  HttpClient client;
  ASSERT_OK_AND_ASSIGN(HttpResponse response, client.Get(Url(server, "/")));
  EXPECT_EQ(response.body, "abc");
  server->Shutdown();  // the handler may still run after the client has the whole body
  std::lock_guard lock(mu);
  using C = absl::StatusCode;
  EXPECT_EQ(codes, (std::vector<C>{C::kFailedPrecondition, C::kFailedPrecondition,
                                   C::kInvalidArgument, C::kOk, C::kFailedPrecondition,
                                   C::kFailedPrecondition, C::kOk, C::kOk}));
}

TEST(ClientServerTest, IdleKeepAliveConnectionYieldsToQueuedOne) {
  ASSERT_OK_AND_ASSIGN(
      auto server,
      Serve([](const ServerRequest&, ResponseWriter& w) { w.Respond(200, {}, "ok").IgnoreError(); },
            {.threads = 1}));
  HttpClient first;
  ASSERT_OK(first.Get(Url(server, "/a")).status());  // now idle, holding the only worker
  HttpClient second;
  absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(HttpResponse response,
                       second.Send({.url = Url(server, "/b"), .timeout = absl::Seconds(20)}));
  EXPECT_EQ(response.status, 200);
  EXPECT_LT(Since(start), absl::Seconds(10));
  ASSERT_OK_AND_ASSIGN(response, first.Get(Url(server, "/a")));  // reconnects
  EXPECT_EQ(response.status, 200);
}

TEST(ClientServerTest, ServerAnswersMalformedAndSlowRequests) {
  ASSERT_OK_AND_ASSIGN(
      auto server,
      Serve([](const ServerRequest&, ResponseWriter& w) { w.Respond(200, {}, "").IgnoreError(); },
            {.idle_timeout = absl::Milliseconds(300), .io_timeout = absl::Milliseconds(300)}));
  {
    UniqueFd fd = Connect(server->port());
    ASSERT_TRUE(fd.valid());
    ASSERT_OK(WriteFull(fd.get(), "NOT HTTP AT ALL\r\n\r\n"));
    EXPECT_THAT(ReadUntilClosed(fd.get(), absl::Seconds(10)), StartsWith("HTTP/1.1 400"));
  }
  {
    UniqueFd fd = Connect(server->port());
    ASSERT_TRUE(fd.valid());
    ASSERT_OK(WriteFull(fd.get(), "GET / HTTP/1.1\r\nHost: x\r\n"));  // and then nothing
    EXPECT_THAT(ReadUntilClosed(fd.get(), absl::Seconds(10)), StartsWith("HTTP/1.1 408"));
  }
  {
    UniqueFd fd = Connect(server->port());
    ASSERT_TRUE(fd.valid());
    absl::Time start = absl::Now();
    EXPECT_EQ(ReadUntilClosed(fd.get(), absl::Seconds(10)), "");  // idle: closed quietly
    EXPECT_LT(Since(start), absl::Seconds(8));
  }
}

TEST(ClientServerTest, ShutdownLetsInFlightRequestFinishThenRefuses) {
  Gate entered;
  ASSERT_OK_AND_ASSIGN(auto server, Serve([&](const ServerRequest&, ResponseWriter& w) {
                         entered.Open();
                         absl::SleepFor(absl::Seconds(1));
                         w.Respond(200, {}, "done").IgnoreError();
                       }));
  HttpClient client;
  absl::StatusOr<HttpResponse> result;
  std::thread request([&] { result = client.Get(Url(server, "/slow")); });
  ASSERT_TRUE(entered.WaitFor(absl::Seconds(10)));
  absl::Time start = absl::Now();
  server->Shutdown(absl::Seconds(10));
  absl::Duration took = Since(start);
  request.join();
  ASSERT_OK(result.status());
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body, "done");
  EXPECT_LT(took, absl::Seconds(12));
  HttpClient fresh;
  EXPECT_THAT(fresh.Get(Url(server, "/slow")), StatusIs(absl::StatusCode::kUnavailable, _));
  server->Shutdown();  // idempotent
}

TEST(ClientServerTest, ShutdownClosesIdleConnectionsAtOnce) {
  ASSERT_OK_AND_ASSIGN(auto server, Serve([](const ServerRequest&, ResponseWriter& w) {
                         w.Respond(200, {}, "").IgnoreError();
                       }));
  HttpClient client;
  ASSERT_OK(client.Get(Url(server, "/")).status());  // leaves an idle keep-alive connection
  absl::Time start = absl::Now();
  server->Shutdown(absl::Seconds(30));
  EXPECT_LT(Since(start), absl::Seconds(5));
}

TEST(ClientServerTest, ShutdownCutsOffRequestsAfterGrace) {
  Gate streaming;
  ASSERT_OK_AND_ASSIGN(auto server, Serve([&](const ServerRequest&, ResponseWriter& w) {
                         if (!w.Begin(200, {}, std::nullopt).ok()) return;
                         for (absl::Time end = absl::Now() + absl::Seconds(30);
                              absl::Now() < end;) {
                           if (!w.Write("tick").ok()) return;
                           streaming.Open();
                           absl::SleepFor(absl::Milliseconds(20));
                         }
                       }));
  HttpClient client;
  absl::StatusOr<HttpResponse> result;
  std::thread request([&] { result = client.Get(Url(server, "/forever")); });
  ASSERT_TRUE(streaming.WaitFor(absl::Seconds(10)));
  absl::Time start = absl::Now();
  server->Shutdown(absl::Milliseconds(300));
  EXPECT_LT(Since(start), absl::Milliseconds(300) + absl::Seconds(3));
  request.join();
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable, _));
}

TEST(ClientServerTest, ShutdownFromAHandler) {
  std::atomic<HttpServer*> self{nullptr};
  std::atomic<bool> shut_down{false};
  std::mutex mu;
  absl::Duration took;
  ASSERT_OK_AND_ASSIGN(
      auto server, Serve([&](const ServerRequest&, ResponseWriter& w) {
        w.Respond(200, {}, "bye").IgnoreError();
        absl::Time start = absl::Now();
        self.load()->Shutdown(absl::Seconds(30));  // must not wait for this very request
        std::lock_guard lock(mu);
        took = Since(start);
        shut_down = true;
      }));
  self = server.get();
  HttpClient client;
  ASSERT_OK_AND_ASSIGN(HttpResponse response, client.Get(Url(server, "/quit")));
  EXPECT_EQ(response.body, "bye");
  for (absl::Time end = absl::Now() + absl::Seconds(20); !shut_down && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(shut_down);
  {
    std::lock_guard lock(mu);
    EXPECT_LT(took, absl::Seconds(10));
  }
  HttpClient fresh;
  EXPECT_THAT(fresh.Get(Url(server, "/")), StatusIs(absl::StatusCode::kUnavailable, _));
  server.reset();  // joins the worker that ran the handler
}

// The file at `path`: whether it exists, is a socket, and its permission bits.
struct FileKind {
  bool exists = false;
  bool socket = false;
  mode_t mode = 0;
};
FileKind Inspect(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return {};
  return {true, S_ISSOCK(st.st_mode), st.st_mode & 07777};
}

TEST(ClientServerTest, UnixSocketRoundTrip) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("naiad-unix-"));
  const std::string path = dir.Join("api.sock");
  std::mutex mu;
  std::string remote;
  ASSERT_OK_AND_ASSIGN(auto server, Serve(
                                        [&](const ServerRequest& r, ResponseWriter& w) {
                                          {
                                            std::lock_guard lock(mu);
                                            remote = r.remote_address;
                                          }
                                          if (r.path == "/stream") {  // chunked, in pieces
                                            if (!w.Begin(200, {}, std::nullopt).ok()) return;
                                            for (int i = 0; i < 100; ++i) {
                                              if (!w.Write(Pattern(10000)).ok()) return;
                                            }
                                            w.End().IgnoreError();
                                            return;
                                          }
                                          w.Respond(200, Headers({{"X-Path", r.path}}),
                                                    StrCat(r.method, " ", r.body))
                                              .IgnoreError();
                                        },
                                        {.unix_socket_path = path}));
  EXPECT_EQ(server->port(), 0);
  EXPECT_EQ(server->url(), "http://localhost");
  FileKind kind = Inspect(path);
  EXPECT_TRUE(kind.socket);
  EXPECT_EQ(kind.mode, 0600u);

  HttpClient client({.unix_socket_path = path});
  ASSERT_OK_AND_ASSIGN(HttpResponse response, client.Get(Url(server, "/api/v1/daemon")));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "GET ");
  EXPECT_THAT(response.headers.Get("X-Path"), Optional(std::string("/api/v1/daemon")));
  ASSERT_OK_AND_ASSIGN(response, client.Send({.method = "PUT",
                                              .url = "http://localhost/api/v1/mount?mountpoint=/x",
                                              .body = "{}"}));
  EXPECT_EQ(response.body, "PUT {}");
  ASSERT_OK_AND_ASSIGN(response, client.Get(Url(server, "/stream")));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body.size(), 100u * 10000u);
  EXPECT_EQ(response.body.substr(0, 10000), Pattern(10000));
  EXPECT_EQ(client.connections_opened(), 1u);  // keep-alive over the socket
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(remote, "unix");
  }

  server->Shutdown();
  EXPECT_FALSE(Inspect(path).exists);
  EXPECT_THAT(client.Get("http://localhost/"), StatusIs(absl::StatusCode::kUnavailable, _));
}

TEST(ClientServerTest, UnixSocketReplacesOnlyAStaleSocket) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("naiad-unix-"));
  const std::string path = dir.Join("api.sock");
  auto handler = [](const ServerRequest&, ResponseWriter& w) {
    w.Respond(200, {}, "ok").IgnoreError();
  };
  {
    // What a killed server leaves: a bound socket file nobody listens on.
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path.copy(address.sun_path, path.size());
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  }
  ASSERT_TRUE(Inspect(path).socket);
  {
    ASSERT_OK_AND_ASSIGN(auto server, Serve(handler, {.unix_socket_path = path}));
    HttpClient client({.unix_socket_path = path});
    ASSERT_OK_AND_ASSIGN(HttpResponse response, client.Get("http://localhost/"));
    EXPECT_EQ(response.body, "ok");
    // A socket a live server answers on is not taken over.
    EXPECT_THAT(Serve(handler, {.unix_socket_path = path}),
                StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("listening")));
    ASSERT_OK_AND_ASSIGN(response, client.Get("http://localhost/"));
    EXPECT_EQ(response.body, "ok");
  }
  EXPECT_FALSE(Inspect(path).exists);  // the destructor shuts down and removes it

  // Anything but a socket is left alone.
  ASSERT_OK(WriteFileAtomically(path, "data"));
  EXPECT_THAT(Serve(handler, {.unix_socket_path = path}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a socket")));
  EXPECT_THAT(ReadFileToString(path), ::naiad::testing::IsOkAndHolds(std::string("data")));
  EXPECT_THAT(Serve(handler, {.unix_socket_path = dir.Join(std::string(200, 'x'))}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer")));
}

TEST(HttpClientTls, VerifiesByDefaultAndTrustsExtraCaFiles) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("naiad-net-tls-"));
  const std::string cert = dir.Join("cert.pem");
  const std::string key = dir.Join("key.pem");
  ASSERT_OK(RunCommandOk({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                          "-days", "2", "-subj", "/CN=localhost", "-addext",
                          "subjectAltName=IP:127.0.0.1,DNS:localhost"})
                .status());
  const uint16_t port = FreePort();
  ASSERT_NE(port, 0);
  ASSERT_OK_AND_ASSIGN(
      Subprocess s_server,
      Subprocess::Start({"openssl", "s_server", "-accept", StrCat("127.0.0.1:", port), "-cert",
                         cert, "-key", key, "-www"},
                        {.output_path = dir.Join("s_server.log")}));
  ASSERT_TRUE(WaitForPort(port, absl::Seconds(20)));
  const std::string url = StrCat("https://127.0.0.1:", port, "/");

  HttpClient default_client;
  EXPECT_THAT(default_client.Get(url),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr(url)));

  HttpClient trusting({.ca_files = {cert}});
  ASSERT_OK_AND_ASSIGN(HttpResponse response, trusting.Get(url));
  EXPECT_EQ(response.status, 200);
  EXPECT_FALSE(response.body.empty());

  HttpClient unverified({.verify_tls = false});
  ASSERT_OK_AND_ASSIGN(response, unverified.Get(url));
  EXPECT_EQ(response.status, 200);

  HttpClient bad_ca({.ca_files = {dir.Join("missing.pem")}});
  EXPECT_THAT(bad_ca.Get(url), StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.pem")));
  EXPECT_OK(s_server.Stop().status());
}

TEST(HttpClientTest, RejectsInvalidRequests) {
  HttpClient client;
  EXPECT_THAT(client.Send({.url = ""}), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(client.Send({.method = "GET X", .url = "http://127.0.0.1:1/"}),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(client.Send({.url = "http://127.0.0.1:1/", .range = ByteRange{0, 0}}),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(client.Send({.url = "ftp://127.0.0.1:1/"}),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(client.Get("http://127.0.0.1:1:2:3/"),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
}

}  // namespace
}  // namespace naiad::net
