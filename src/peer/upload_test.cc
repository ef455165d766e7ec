// UploadService on a real net::HttpServer over a real PieceStore in a temporary directory, and
// PieceClient against it. Timing bounds are generous lower bounds (a limit is real) or loose
// upper bounds that only separate "answered at once" from "waited for a timeout".
#include "peer/upload.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/test_files.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "nlohmann/json.hpp"
#include "peer/piece_client.h"
#include "piece/piece_store.h"

namespace naiad::peer {
namespace {

using ::naiad::testing::PseudoRandomBytes;

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::_;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::StartsWith;

constexpr uint32_t kPiece = 64 << 10;
constexpr uint64_t kLength = 4 * uint64_t{kPiece} + 1000;  // five pieces, the last one short

std::string Id(char c) { return std::string(64, c); }

std::string CrcHex(std::string_view bytes) { return absl::StrFormat("%08x", Crc32c(bytes)); }

net::HttpHeaders Headers(std::initializer_list<std::pair<std::string, std::string>> fields) {
  net::HttpHeaders headers;
  for (const auto& [name, value] : fields) EXPECT_OK(headers.Add(name, value));
  return headers;
}

// Sends `text` on a fresh loopback connection and returns what comes back until the server
// closes the connection (or 5 s pass).
std::string RawExchange(uint16_t port, std::string_view text) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return "";
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) return "";
  std::string out;
  char buffer[4096];
  for (absl::Time deadline = absl::Now() + absl::Seconds(5); absl::Now() < deadline;) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

// A port nothing listens on (bound, never listened to, then closed).
uint16_t DeadPort() {
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

class UploadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("upload-test-"));
    ASSERT_OK_AND_ASSIGN(store_, piece::PieceStore::Open({.dir = dir_.path()}));
  }

  void TearDown() override {
    if (service_ != nullptr) service_->Stop();  // ends waits of requests still held
    for (std::thread& thread : threads_) thread.join();
    if (server_ != nullptr) server_->Shutdown();
  }

  void Start(const UploadConfig& config = {}, SeedHandler on_seed = nullptr) {
    ASSERT_OK_AND_ASSIGN(service_, UploadService::Create(store_.get(), config, std::move(on_seed)));
    ASSERT_OK_AND_ASSIGN(server_, net::HttpServer::Start({.port = 0, .threads = 32},
                                                         [this](const net::ServerRequest& request,
                                                                net::ResponseWriter& writer) {
                                                           service_->Handle(request, writer);
                                                         }));
  }

  // A task of `length` bytes of PseudoRandomBytes(length, seed) with the pieces `present` written.
  std::shared_ptr<piece::Task> MakeTask(char id, uint64_t length,
                                        const std::vector<uint32_t>& present,
                                        uint32_t piece_size = kPiece, uint64_t seed = 1) {
    piece::TaskMeta meta{.task_id = Id(id),
                         .url = "http://origin.test/blob",
                         .content_length = length,
                         .piece_size = piece_size};
    absl::StatusOr<std::shared_ptr<piece::Task>> task = store_->CreateOrOpen(meta);
    EXPECT_OK(task);
    if (!task.ok()) return nullptr;
    content_[Id(id)] = PseudoRandomBytes(length, seed);
    for (uint32_t n : present) EXPECT_OK(WritePiece(**task, n));
    return *task;
  }
  std::shared_ptr<piece::Task> MakeCompleteTask(char id, uint64_t length,
                                                uint32_t piece_size = kPiece) {
    std::vector<uint32_t> all;
    uint32_t count = static_cast<uint32_t>((length + piece_size - 1) / piece_size);
    for (uint32_t n = 0; n < count; ++n) all.push_back(n);
    return MakeTask(id, length, all, piece_size);
  }

  std::string PieceBytes(const piece::Task& task, uint32_t n) {
    const piece::TaskMeta& meta = task.meta();
    return content_[meta.task_id].substr(meta.PieceOffset(n), meta.PieceLength(n));
  }
  absl::Status WritePiece(piece::Task& task, uint32_t n) {
    return task.WritePiece(n, PieceBytes(task, n));
  }

  static std::string DownloadPath(const std::string& task_id, std::string_view peer = "child") {
    return StrCat("/download/", task_id.substr(0, 3), "/", task_id, "?peerId=", peer);
  }

  net::HttpResponse Get(std::string_view path, net::HttpHeaders headers = {},
                        std::string method = "GET", std::string body = "") {
    net::HttpClient client;
    absl::StatusOr<net::HttpResponse> response = client.Send({.method = std::move(method),
                                                              .url = StrCat(server_->url(), path),
                                                              .headers = std::move(headers),
                                                              .body = std::move(body)});
    EXPECT_OK(response);
    return response.ok() ? *response : net::HttpResponse{};
  }

  // Runs `request` on a thread of its own (joined by TearDown); the answer's status lands in
  // `*status`.
  void GetInBackground(std::string path, net::HttpHeaders headers, std::atomic<int>* status) {
    threads_.emplace_back([this, path = std::move(path), headers = std::move(headers), status] {
      *status = Get(path, headers).status;
    });
  }

  // Waits (up to 10 s) until the service has `n` uploads in progress.
  bool WaitForActive(int n) {
    for (absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;) {
      if (service_->active() == n) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  TempDir dir_;
  std::unique_ptr<piece::PieceStore> store_;
  std::unique_ptr<UploadService> service_;
  std::unique_ptr<net::HttpServer> server_;
  std::map<std::string, std::string> content_;
  std::vector<std::thread> threads_;
};

// --- /download ---

TEST_F(UploadTest, ServesAPresentPieceWithItsCrc) {
  Start();
  auto task = MakeTask('a', kLength, {1, 2});
  const std::string piece = PieceBytes(*task, 1);
  net::HttpResponse response = Get(
      DownloadPath(Id('a')), Headers({{"Range", net::ByteRange{kPiece, kPiece}.ToRangeHeader()}}));
  EXPECT_EQ(response.status, 206);
  EXPECT_EQ(response.body, piece);
  EXPECT_THAT(response.headers.Get("Content-Range"),
              Optional(StrCat("bytes ", kPiece, "-", 2 * kPiece - 1, "/", kLength)));
  EXPECT_THAT(response.headers.Get(kPieceCrcHeader), Optional(CrcHex(piece)));
  EXPECT_EQ(service_->metrics().bytes_served.load(), kPiece);
  EXPECT_EQ(service_->metrics().pieces_served.load(), 1u);

  // The short last piece is a piece too.
  ASSERT_OK(WritePiece(*task, 4));
  response = Get(DownloadPath(Id('a')),
                 Headers({{"Range", StrCat("bytes=", 4 * kPiece, "-", kLength - 1)}}));
  EXPECT_EQ(response.status, 206);
  EXPECT_EQ(response.body, PieceBytes(*task, 4));
  EXPECT_THAT(response.headers.Get(kPieceCrcHeader), Optional(CrcHex(PieceBytes(*task, 4))));
}

TEST_F(UploadTest, RangeSpanningTwoPieces) {
  Start();
  auto task = MakeTask('a', kLength, {1, 2});
  const uint64_t first = kPiece + 1000;
  const uint64_t last = 2 * kPiece + 5000;
  net::HttpResponse response =
      Get(DownloadPath(Id('a')), Headers({{"Range", StrCat("bytes=", first, "-", last)}}));
  EXPECT_EQ(response.status, 206);
  EXPECT_EQ(response.body, content_[Id('a')].substr(first, last - first + 1));
  EXPECT_FALSE(response.headers.Has(kPieceCrcHeader));  // not exactly one piece
  EXPECT_EQ(service_->metrics().pieces_served.load(), 2u);
}

TEST_F(UploadTest, WholeTaskWithoutRangeOnlyWhenComplete) {
  Start();
  MakeCompleteTask('a', kLength);
  MakeTask('b', kLength, {0, 1, 2, 3});
  net::HttpResponse response = Get(DownloadPath(Id('a')));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, content_[Id('a')]);
  response = Get(DownloadPath(Id('b')));
  EXPECT_EQ(response.status, 404);
  EXPECT_THAT(response.body, HasSubstr("piece 4"));
}

TEST_F(UploadTest, HeadGivesHeadersOnly) {
  Start();
  MakeTask('a', kLength, {0});
  net::HttpResponse response =
      Get(DownloadPath(Id('a')), Headers({{"Range", StrCat("bytes=0-", kPiece - 1)}}), "HEAD");
  EXPECT_EQ(response.status, 206);
  EXPECT_THAT(response.headers.Get("Content-Length"), Optional(StrCat(kPiece)));
  EXPECT_TRUE(response.body.empty());
  EXPECT_EQ(service_->metrics().bytes_served.load(), 0u);
}

TEST_F(UploadTest, MissingPieceIsNotFoundAtOnce) {
  Start();
  MakeTask('a', kLength, {0, 1});
  absl::Time start = absl::Now();
  net::HttpResponse response =
      Get(DownloadPath(Id('a')), Headers({{"Range", StrCat("bytes=0-", 3 * kPiece - 1)}}));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(response.status, 404);
  EXPECT_THAT(response.body, HasSubstr("piece 2 of task " + Id('a')));
  EXPECT_EQ(service_->metrics().not_found.load(), 1u);
  EXPECT_EQ(service_->active(), 0);
}

TEST_F(UploadTest, WaitsForAPieceThatArrives) {
  Start();
  auto task = MakeTask('a', kLength, {0});
  std::thread writer([&] {
    absl::SleepFor(absl::Milliseconds(300));
    EXPECT_OK(WritePiece(*task, 2));
  });
  net::HttpResponse response = Get(
      DownloadPath(Id('a')), Headers({{"Range", StrCat("bytes=", 2 * kPiece, "-", 3 * kPiece - 1)},
                                      {std::string(kWaitMsHeader), "5000"}}));
  writer.join();
  EXPECT_EQ(response.status, 206);
  EXPECT_EQ(response.body, PieceBytes(*task, 2));
  EXPECT_THAT(response.headers.Get(kPieceCrcHeader), Optional(CrcHex(PieceBytes(*task, 2))));
}

// A waiting request tells the peer's downloads which pieces someone waits for (so that a piece
// held in part is completed now); the piece then arrives and is served. Requests that do not
// wait tell nobody.
TEST_F(UploadTest, AWaitingRequestUrgesTheMissingPieces) {
  Start();
  auto task = MakeTask('a', kLength, {0});
  absl::Mutex mu;
  std::vector<std::string> urged;
  service_->SetWaitHandler([&](const std::string& task_id, uint32_t first, uint32_t last) {
    absl::MutexLock lock(&mu);
    urged.push_back(StrCat(task_id, ":", first, "-", last));
  });
  net::HttpResponse response =
      Get(DownloadPath(Id('a')), Headers({{"Range", StrCat("bytes=0-", 2 * kPiece - 1)}}));
  EXPECT_EQ(response.status, 404);
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(urged.empty());
  }
  std::thread writer([&] {
    absl::SleepFor(absl::Milliseconds(200));
    EXPECT_OK(WritePiece(*task, 1));
  });
  response = Get(DownloadPath(Id('a')), Headers({{"Range", StrCat("bytes=0-", 2 * kPiece - 1)},
                                                 {std::string(kWaitMsHeader), "5000"}}));
  writer.join();
  EXPECT_EQ(response.status, 206);
  absl::MutexLock lock(&mu);
  EXPECT_THAT(urged, ::testing::ElementsAre(StrCat(Id('a'), ":1-1")));
}

TEST_F(UploadTest, WaitEndsInNotFound) {
  Start();
  MakeTask('a', kLength, {0});
  absl::Time start = absl::Now();
  net::HttpResponse response =
      Get(DownloadPath(Id('a')), Headers({{"Range", StrCat("bytes=0-", 2 * kPiece - 1)},
                                          {std::string(kWaitMsHeader), "300"}}));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
  EXPECT_EQ(response.status, 404);
  EXPECT_THAT(response.body, HasSubstr("waited 300 ms"));

  response = Get(DownloadPath(Id('a')), Headers({{std::string(kWaitMsHeader), "soon"}}));
  EXPECT_EQ(response.status, 400);
}

TEST_F(UploadTest, StopEndsWaits) {
  Start();
  MakeTask('a', kLength, {});
  std::atomic<int> status{0};
  GetInBackground(DownloadPath(Id('a')), Headers({{std::string(kWaitMsHeader), "10000"}}), &status);
  ASSERT_TRUE(WaitForActive(1));
  absl::Time start = absl::Now();
  service_->Stop();
  threads_.back().join();
  threads_.pop_back();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(status.load(), 503);
}

TEST_F(UploadTest, RangesOutsideTheTask) {
  Start();
  MakeCompleteTask('a', kLength);
  for (std::string range :
       {StrCat("bytes=", kLength, "-"), StrCat("bytes=0-", kLength),
        StrCat("bytes=", kLength + 5, "-", kLength + 10), StrCat("bytes=-", kLength + 1)}) {
    net::HttpResponse response = Get(DownloadPath(Id('a')), Headers({{"Range", range}}));
    EXPECT_EQ(response.status, 416) << range;
    EXPECT_THAT(response.headers.Get("Content-Range"), Optional(StrCat("bytes */", kLength)));
  }
  // The last byte exactly, and a suffix within the task, are fine.
  EXPECT_EQ(
      Get(DownloadPath(Id('a')), Headers({{"Range", StrCat("bytes=0-", kLength - 1)}})).status,
      206);
  EXPECT_EQ(Get(DownloadPath(Id('a')), Headers({{"Range", "bytes=-100"}})).body,
            content_[Id('a')].substr(kLength - 100));
}

TEST_F(UploadTest, MultipleOrMalformedRangesAreBadRequests) {
  Start();
  MakeCompleteTask('a', kLength);
  for (std::string range : {"bytes=0-1,5-9", "bytes=x-y", "bytes=5-1", "items=0-1", "bytes"}) {
    net::HttpResponse response = Get(DownloadPath(Id('a')), Headers({{"Range", range}}));
    EXPECT_EQ(response.status, 400) << range;
  }
  EXPECT_EQ(service_->metrics().rejected_bad.load(), 5u);
}

TEST_F(UploadTest, UnknownTaskIsNotFound) {
  Start();
  net::HttpResponse response = Get(DownloadPath(Id('e')));
  EXPECT_EQ(response.status, 404);
  EXPECT_THAT(response.body, HasSubstr("task " + Id('e')));
}

TEST_F(UploadTest, TaskIdsThatAreNotIdsAreBadRequests) {
  Start();
  MakeCompleteTask('a', kLength);
  const std::string upper = "AAA" + Id('a').substr(3);
  for (const std::string& path :
       {StrCat("/download/AAA/", upper), StrCat("/download/aaa/", Id('a'), "0"),
        StrCat("/download/aab/", Id('a')), StrCat("/download/", Id('a')),
        std::string("/download/%2e%/%2e%2e%2fetc%2fpasswd"), StrCat("/download/aaa/aaa"),
        StrCat("/download/aaa/", Id('a'), "/x"), std::string("/v1/tasks/") + upper}) {
    net::HttpResponse response = Get(path);
    EXPECT_EQ(response.status, 400) << path;
  }
  // Dot segments, which an HTTP client would remove, sent as they are.
  for (std::string target : {"/download/../../etc/passwd", "/download/aaa/../../../etc/passwd",
                             "/v1/tasks/../../etc/passwd"}) {
    std::string answer =
        RawExchange(server_->port(),
                    StrCat("GET ", target, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 400")) << target;
  }
}

TEST_F(UploadTest, PerPeerLimit) {
  UploadConfig config;
  config.concurrent_limit = 10;
  config.per_peer_concurrent_limit = 2;
  Start(config);
  auto task = MakeTask('a', kLength, {0});
  const net::HttpHeaders wait_for_piece_1 =
      Headers({{"Range", StrCat("bytes=", kPiece, "-", 2 * kPiece - 1)},
               {std::string(kWaitMsHeader), "10000"}});
  std::atomic<int> first{0};
  std::atomic<int> second{0};
  GetInBackground(DownloadPath(Id('a'), "p1"), wait_for_piece_1, &first);
  GetInBackground(DownloadPath(Id('a'), "p1"), wait_for_piece_1, &second);
  ASSERT_TRUE(WaitForActive(2));

  absl::Time start = absl::Now();
  net::HttpResponse busy =
      Get(DownloadPath(Id('a'), "p1"), Headers({{"Range", StrCat("bytes=0-", kPiece - 1)}}));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));  // no queueing
  EXPECT_EQ(busy.status, 429);
  EXPECT_THAT(busy.headers.Get("Retry-After"), Optional(std::string("1")));
  EXPECT_EQ(service_->metrics().rejected_busy.load(), 1u);
  // Another requester still gets through.
  EXPECT_EQ(
      Get(DownloadPath(Id('a'), "p2"), Headers({{"Range", StrCat("bytes=0-", kPiece - 1)}})).status,
      206);

  ASSERT_OK(WritePiece(*task, 1));  // the held requests complete
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
  EXPECT_EQ(first.load(), 206);
  EXPECT_EQ(second.load(), 206);
  EXPECT_EQ(service_->active(), 0);
}

TEST_F(UploadTest, APieceBeingSentIsRefusedToANonUrgentSecondRequester) {
  UploadConfig config;
  config.rate_limit = "512Ki";  // a 1 MiB piece takes a second: the first upload stays in progress
  Start(config);
  constexpr uint32_t kBigPiece = 1 << 20;
  MakeTask('a', 2 * kBigPiece, {0, 1}, kBigPiece);
  const net::HttpHeaders piece_0 = Headers({{"Range", StrCat("bytes=0-", kBigPiece - 1)}});
  std::atomic<int> first{0};
  GetInBackground(DownloadPath(Id('a'), "p1"), piece_0, &first);
  ASSERT_TRUE(WaitForActive(1));

  net::HttpResponse busy = Get(DownloadPath(Id('a'), "p2"), piece_0);
  EXPECT_EQ(busy.status, 429);
  EXPECT_THAT(busy.body, HasSubstr("being sent to another peer"));
  // A reader waits on it elsewhere: urgent requests are served anyway.
  net::HttpHeaders urgent = piece_0;
  ASSERT_OK(urgent.Add(std::string(kUrgentHeader), "true"));
  EXPECT_EQ(Get(DownloadPath(Id('a'), "p3"), urgent).status, 206);
  // Another piece is not affected.
  EXPECT_EQ(Get(DownloadPath(Id('a'), "p4"),
                Headers({{"Range", StrCat("bytes=", kBigPiece, "-", 2 * kBigPiece - 1)}}))
                .status,
            206);
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
  EXPECT_EQ(first.load(), 206);
}

TEST_F(UploadTest, APieceJustSentIsNotSentAgainAtOnceToANonUrgentRequester) {
  Start();
  MakeTask('a', kLength, {0});
  const net::HttpHeaders piece_0 = Headers({{"Range", StrCat("bytes=0-", kPiece - 1)}});
  EXPECT_EQ(Get(DownloadPath(Id('a'), "p1"), piece_0).status, 206);
  // Its receiver has it now and is the place to get it from.
  net::HttpResponse again = Get(DownloadPath(Id('a'), "p2"), piece_0);
  EXPECT_EQ(again.status, 429);
  EXPECT_THAT(again.body, HasSubstr("just sent"));
  absl::SleepFor(kResendDelay);
  EXPECT_EQ(Get(DownloadPath(Id('a'), "p2"), piece_0).status, 206);
}

TEST_F(UploadTest, PerPeerLimitFallsBackToTheRemoteAddress) {
  UploadConfig config;
  config.per_peer_concurrent_limit = 1;
  Start(config);
  MakeTask('a', kLength, {0});
  std::atomic<int> held{0};
  const std::string path = StrCat("/download/aaa/", Id('a'));  // no peerId
  GetInBackground(path,
                  Headers({{"Range", StrCat("bytes=", kPiece, "-", 2 * kPiece - 1)},
                           {std::string(kWaitMsHeader), "10000"}}),
                  &held);
  ASSERT_TRUE(WaitForActive(1));
  EXPECT_EQ(Get(path, Headers({{"Range", StrCat("bytes=0-", kPiece - 1)}})).status, 429);
}

TEST_F(UploadTest, TotalLimit) {
  UploadConfig config;
  config.concurrent_limit = 3;
  config.per_peer_concurrent_limit = 2;
  Start(config);
  auto task = MakeTask('a', kLength, {0});
  const net::HttpHeaders wait_for_piece_1 =
      Headers({{"Range", StrCat("bytes=", kPiece, "-", 2 * kPiece - 1)},
               {std::string(kWaitMsHeader), "10000"}});
  std::atomic<int> statuses[3] = {0, 0, 0};
  GetInBackground(DownloadPath(Id('a'), "p1"), wait_for_piece_1, &statuses[0]);
  GetInBackground(DownloadPath(Id('a'), "p1"), wait_for_piece_1, &statuses[1]);
  GetInBackground(DownloadPath(Id('a'), "p2"), wait_for_piece_1, &statuses[2]);
  ASSERT_TRUE(WaitForActive(3));
  net::HttpResponse busy = Get(DownloadPath(Id('a'), "p3"));
  EXPECT_EQ(busy.status, 429);
  EXPECT_THAT(busy.body, HasSubstr("limit of 3"));
  // Requests that are not uploads are not limited.
  EXPECT_EQ(Get("/healthy").status, 200);
  EXPECT_EQ(Get(StrCat("/v1/tasks/", Id('a'))).status, 200);

  ASSERT_OK(WritePiece(*task, 1));
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
  for (const std::atomic<int>& status : statuses) EXPECT_EQ(status.load(), 206);
  EXPECT_EQ(Get(DownloadPath(Id('a'), "p3"), Headers({{"Range", "bytes=0-9"}})).status, 206);
}

TEST_F(UploadTest, RateLimitSlowsATransfer) {
  constexpr uint64_t kSize = 4 << 20;
  constexpr double kRate = 4 << 20;  // "4Mi": the ideal time is one second
  UploadConfig config;
  config.rate_limit = "4Mi";
  Start(config);
  MakeCompleteTask('a', kSize, /*piece_size=*/1 << 20);
  absl::Time start = absl::Now();
  net::HttpResponse response = Get(DownloadPath(Id('a')));
  absl::Duration elapsed = absl::Now() - start;
  ASSERT_EQ(response.status, 200);
  EXPECT_EQ(response.body, content_[Id('a')]);
  EXPECT_GE(elapsed, absl::Seconds(0.5 * kSize / kRate));
}

TEST_F(UploadTest, BadRateLimitFailsCreate) {
  UploadConfig config;
  config.rate_limit = "fast";
  EXPECT_THAT(UploadService::Create(store_.get(), config, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("upload.rateLimit"), HasSubstr("\"fast\""))));
  config.rate_limit = "0";
  EXPECT_OK(UploadService::Create(store_.get(), config, nullptr));
}

// --- /v1/tasks ---

TEST_F(UploadTest, TaskStateJsonAndBitmap) {
  Start();
  MakeTask('a', 9 * uint64_t{kPiece} + 1, {0, 2, 9});  // ten pieces
  net::HttpResponse response = Get(StrCat("/v1/tasks/", Id('a')));
  ASSERT_EQ(response.status, 200);
  EXPECT_THAT(response.headers.Get("Content-Type"), Optional(std::string("application/json")));
  nlohmann::json json = nlohmann::json::parse(response.body, nullptr, false);
  ASSERT_TRUE(json.is_object()) << response.body;
  EXPECT_EQ(json["task_id"], Id('a'));
  EXPECT_EQ(json["content_length"], 9 * uint64_t{kPiece} + 1);
  EXPECT_EQ(json["piece_size"], kPiece);
  EXPECT_EQ(json["piece_count"], 10);
  EXPECT_EQ(json["pieces_present"], 3);
  EXPECT_EQ(json["complete"], false);
  std::string bitmap;
  ASSERT_TRUE(absl::Base64Unescape(json["bitmap"].get<std::string>(), &bitmap));
  EXPECT_EQ(bitmap, std::string("\xA0\x40", 2));  // 1010 0000, 0100 0000
  EXPECT_TRUE(BitmapHasPiece(bitmap, 0));
  EXPECT_FALSE(BitmapHasPiece(bitmap, 1));
  EXPECT_TRUE(BitmapHasPiece(bitmap, 9));
  EXPECT_FALSE(BitmapHasPiece(bitmap, 16));

  EXPECT_EQ(Get(StrCat("/v1/tasks/", Id('b'))).status, 404);
  EXPECT_EQ(Get("/v1/tasks/abc").status, 400);
}

// --- /v1/seed ---

class SeedTest : public UploadTest {
 protected:
  void StartSeed(const absl::Status& answer = absl::OkStatus()) {
    Start({}, [this, answer](const SeedRequest& request) {
      absl::MutexLock lock(&mu_);
      seen_.push_back(request);
      return answer;
    });
  }
  net::HttpResponse Post(std::string body) { return Get("/v1/seed", {}, "POST", std::move(body)); }

  absl::Mutex mu_;
  std::vector<SeedRequest> seen_;
};

nlohmann::json GoodSeedJson() {
  return {{"task_id", Id('c')},
          {"url", "https://registry.test/v2/library/python/blobs/sha256:" + Id('c')},
          {"content_length", 123456789},
          {"piece_size", 4 << 20},
          {"digest", "sha256:" + Id('c')},
          {"headers", {{"Authorization", "Bearer token"}, {"X-Extra", "1"}}}};
}

TEST_F(SeedTest, GoodRequestCallsTheHandler) {
  StartSeed();
  net::HttpResponse response = Post(GoodSeedJson().dump());
  EXPECT_EQ(response.status, 202) << response.body;
  EXPECT_EQ(nlohmann::json::parse(response.body, nullptr, false),
            nlohmann::json({{"task_id", Id('c')}}));
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(seen_.size(), 1u);
  const SeedRequest& seed = seen_[0];
  EXPECT_EQ(seed.task_id, Id('c'));
  EXPECT_EQ(seed.url, "https://registry.test/v2/library/python/blobs/sha256:" + Id('c'));
  EXPECT_EQ(seed.content_length, 123456789u);
  EXPECT_EQ(seed.piece_size, 4u << 20);
  EXPECT_EQ(seed.digest, "sha256:" + Id('c'));
  EXPECT_THAT(seed.headers.Get("Authorization"), Optional(std::string("Bearer token")));
  EXPECT_THAT(seed.headers.Get("X-Extra"), Optional(std::string("1")));
}

TEST_F(SeedTest, OptionalFieldsAndRoundTrip) {
  nlohmann::json json = GoodSeedJson();
  json.erase("headers");
  json["digest"] = "";
  json["piece_size"] = 0;  // the store's rule
  ASSERT_OK_AND_ASSIGN(SeedRequest parsed, ParseSeedRequest(json.dump()));
  EXPECT_EQ(parsed.piece_size, piece::PieceSizeFor(123456789));
  EXPECT_TRUE(parsed.digest.empty());
  EXPECT_TRUE(parsed.headers.entries().empty());

  ASSERT_OK_AND_ASSIGN(SeedRequest full, ParseSeedRequest(GoodSeedJson().dump()));
  ASSERT_OK_AND_ASSIGN(SeedRequest again, ParseSeedRequest(SeedRequestToJson(full)));
  EXPECT_EQ(again.task_id, full.task_id);
  EXPECT_EQ(again.url, full.url);
  EXPECT_EQ(again.content_length, full.content_length);
  EXPECT_EQ(again.piece_size, full.piece_size);
  EXPECT_EQ(again.digest, full.digest);
  EXPECT_EQ(again.headers.entries(), full.headers.entries());
}

TEST_F(SeedTest, BadBodiesNameTheField) {
  StartSeed();
  struct Case {
    std::function<void(nlohmann::json&)> spoil;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](nlohmann::json& j) { j.erase("task_id"); }, "task_id"},
      {[](nlohmann::json& j) { j["task_id"] = 5; }, "task_id"},
      {[](nlohmann::json& j) { j["task_id"] = "../../etc/passwd"; }, "task_id"},
      {[](nlohmann::json& j) { j["task_id"] = "C" + Id('c').substr(1); }, "task_id"},
      {[](nlohmann::json& j) { j.erase("url"); }, "url"},
      {[](nlohmann::json& j) { j["url"] = "ftp://x/y"; }, "url"},
      {[](nlohmann::json& j) { j["url"] = "http:///path"; }, "url"},
      {[](nlohmann::json& j) { j.erase("content_length"); }, "content_length"},
      {[](nlohmann::json& j) { j["content_length"] = "12"; }, "content_length"},
      {[](nlohmann::json& j) { j["content_length"] = -1; }, "content_length"},
      {[](nlohmann::json& j) { j["content_length"] = 1.5; }, "content_length"},
      {[](nlohmann::json& j) { j.erase("piece_size"); }, "piece_size"},
      {[](nlohmann::json& j) { j["piece_size"] = uint64_t{1} << 32; }, "piece_size"},
      {[](nlohmann::json& j) { j["digest"] = "md5:abc"; }, "digest"},
      {[](nlohmann::json& j) { j["digest"] = 7; }, "digest"},
      {[](nlohmann::json& j) { j["headers"] = "Authorization: x"; }, "headers"},
      {[](nlohmann::json& j) {
         j["headers"] = {{"Bad Name", "x"}};
       },
       "headers.Bad Name"},
      {[](nlohmann::json& j) {
         j["headers"] = {{"X-Number", 1}};
       },
       "headers.X-Number"},
  };
  for (const Case& c : cases) {
    nlohmann::json json = GoodSeedJson();
    c.spoil(json);
    net::HttpResponse response = Post(json.dump());
    EXPECT_EQ(response.status, 400) << json.dump();
    EXPECT_THAT(response.body, HasSubstr(StrCat("\"", c.field, "\""))) << json.dump();
  }
  for (std::string body : {"", "not json", "[1,2]", "{\"task_id\": "}) {
    net::HttpResponse response = Post(body);
    EXPECT_EQ(response.status, 400) << body;
    EXPECT_THAT(response.body, HasSubstr("not a JSON object")) << body;
  }
  absl::MutexLock lock(&mu_);
  EXPECT_TRUE(seen_.empty());
}

TEST_F(SeedTest, HandlerErrorsBecomeTheirHttpStatus) {
  StartSeed(absl::ResourceExhaustedError("too many seed downloads"));
  net::HttpResponse response = Post(GoodSeedJson().dump());
  EXPECT_EQ(response.status, 429);
  EXPECT_THAT(response.body, HasSubstr("too many seed downloads"));
}

TEST_F(UploadTest, SeedWithoutHandlerIsNotFound) {
  Start();
  net::HttpResponse response = Get("/v1/seed", {}, "POST", GoodSeedJson().dump());
  EXPECT_EQ(response.status, 404);
  EXPECT_THAT(response.body, HasSubstr("not a seed peer"));
}

// --- everything else ---

TEST_F(UploadTest, OtherPathsAndMethods) {
  Start();
  MakeCompleteTask('a', kLength);
  EXPECT_EQ(Get("/healthy").status, 200);
  EXPECT_EQ(Get("/").status, 404);
  EXPECT_EQ(Get("/download").status, 404);
  EXPECT_EQ(Get("/v1/tasks").status, 404);
  net::HttpResponse response = Get(DownloadPath(Id('a')), {}, "POST", "x");
  EXPECT_EQ(response.status, 405);
  EXPECT_THAT(response.headers.Get("Allow"), Optional(std::string("GET, HEAD")));
  EXPECT_EQ(Get(DownloadPath(Id('a')), {}, "DELETE").status, 405);
  response = Get("/v1/seed");
  EXPECT_EQ(response.status, 405);
  EXPECT_THAT(response.headers.Get("Allow"), Optional(std::string("POST")));
}

TEST_F(UploadTest, MalformedRequestsOverARawSocket) {
  Start();
  MakeCompleteTask('a', kLength);
  for (const std::string& request :
       {std::string("BLAH\r\n\r\n"),
        std::string("GET /healthy HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n"),
        std::string("GET /healthy HTTP/9.9.9\r\n\r\n"),
        std::string("GET /healthy HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"),
        StrCat("GET ", DownloadPath(Id('a')), " HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n",
               "Transfer-Encoding: chunked\r\n\r\nzz\r\n")}) {
    std::string answer = RawExchange(server_->port(), request);
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 4")) << request;
  }
  // The server still serves.
  EXPECT_EQ(Get("/healthy").status, 200);
  EXPECT_EQ(Get(DownloadPath(Id('a')), Headers({{"Range", "bytes=0-9"}})).body,
            content_[Id('a')].substr(0, 10));
}

// --- PieceClient ---

class PieceClientTest : public UploadTest {
 protected:
  ParentAddress Parent() const {
    return {.host_id = "10.0.0.1-parent", .ip = "127.0.0.1", .port = server_->port()};
  }
  absl::StatusOr<std::string> Fetch(const piece::TaskMeta& meta, uint32_t n,
                                    std::optional<uint32_t> crc = std::nullopt,
                                    absl::Duration wait = absl::ZeroDuration(),
                                    std::string_view me = "child") {
    return client_.FetchPiece(Parent(), meta, n, crc, wait, absl::Seconds(30), nullptr, me);
  }

  PieceClient client_;
};

TEST_F(PieceClientTest, FetchesAGoodPiece) {
  Start();
  auto task = MakeTask('a', kLength, {1, 4});
  EXPECT_THAT(Fetch(task->meta(), 1), IsOkAndHolds(PieceBytes(*task, 1)));
  EXPECT_THAT(Fetch(task->meta(), 4, Crc32c(PieceBytes(*task, 4))),
              IsOkAndHolds(PieceBytes(*task, 4)));
}

TEST_F(PieceClientTest, WrongExpectedCrcIsDataLoss) {
  Start();
  auto task = MakeTask('a', kLength, {1});
  EXPECT_THAT(Fetch(task->meta(), 1, Crc32c(PieceBytes(*task, 1)) ^ 1),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("piece 1 of task " + Id('a')), HasSubstr("10.0.0.1-parent"),
                             HasSubstr("scheduler"))));
}

TEST_F(PieceClientTest, MissingPieceIsNotFoundUnlessItArrivesDuringTheWait) {
  Start();
  auto task = MakeTask('a', kLength, {1});
  EXPECT_THAT(Fetch(task->meta(), 2), StatusIs(absl::StatusCode::kNotFound, HasSubstr("piece 2")));
  EXPECT_THAT(Fetch(piece::TaskMeta{.task_id = Id('f'), .content_length = 10, .piece_size = 10}, 0),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("task " + Id('f'))));
  std::thread writer([&] {
    absl::SleepFor(absl::Milliseconds(200));
    EXPECT_OK(WritePiece(*task, 2));
  });
  EXPECT_THAT(Fetch(task->meta(), 2, std::nullopt, absl::Seconds(5)),
              IsOkAndHolds(PieceBytes(*task, 2)));
  writer.join();
}

TEST_F(PieceClientTest, BusyParentIsResourceExhausted) {
  UploadConfig config;
  config.per_peer_concurrent_limit = 1;
  Start(config);
  auto task = MakeTask('a', kLength, {0});
  std::atomic<int> held{0};
  GetInBackground(DownloadPath(Id('a'), "child"),
                  Headers({{"Range", StrCat("bytes=", kPiece, "-", 2 * kPiece - 1)},
                           {std::string(kWaitMsHeader), "10000"}}),
                  &held);
  ASSERT_TRUE(WaitForActive(1));
  EXPECT_THAT(Fetch(task->meta(), 0),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("10.0.0.1-parent")));
  EXPECT_OK(Fetch(task->meta(), 0, std::nullopt, absl::ZeroDuration(), "another-child"));
}

TEST_F(PieceClientTest, MismatchedTaskIsInvalidArgument) {
  Start();
  auto task = MakeTask('a', kLength, {0, 1, 2, 3, 4});
  piece::TaskMeta longer = task->meta();
  longer.content_length += 2 * kPiece;  // the child thinks the task is longer
  EXPECT_THAT(Fetch(longer, 6), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(Fetch(task->meta(), 5), StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST_F(PieceClientTest, UnreachableParentIsUnavailable) {
  ParentAddress parent{.host_id = "gone", .ip = "127.0.0.1", .port = DeadPort()};
  piece::TaskMeta meta{.task_id = Id('a'), .content_length = 10, .piece_size = 10};
  EXPECT_THAT(client_.FetchPiece(parent, meta, 0, std::nullopt, absl::ZeroDuration(),
                                 absl::Seconds(5), nullptr, "child"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("gone")));
}

// A parent that lies: wrong crc header, or a short body.
TEST_F(PieceClientTest, LyingParentIsDataLoss) {
  const std::string bytes = PseudoRandomBytes(kPiece);
  std::atomic<int> mode{0};
  ASSERT_OK_AND_ASSIGN(
      server_, net::HttpServer::Start({.port = 0}, [&](const net::ServerRequest& request,
                                                       net::ResponseWriter& writer) {
        net::HttpHeaders headers;
        headers.Add("Content-Range", StrCat("bytes 0-", kPiece - 1, "/", kPiece)).IgnoreError();
        if (mode == 0) {
          headers.Add(kPieceCrcHeader, absl::StrFormat("%08x", Crc32c(bytes) + 1)).IgnoreError();
          writer.Respond(206, headers, bytes).IgnoreError();
        } else if (mode == 1) {
          writer.Respond(206, headers, std::string_view(bytes).substr(1)).IgnoreError();
        } else {
          headers.Add(kPieceCrcHeader, "zzzzzzzz").IgnoreError();
          writer.Respond(206, headers, bytes).IgnoreError();
        }
      }));
  piece::TaskMeta meta{.task_id = Id('a'), .content_length = kPiece, .piece_size = kPiece};
  EXPECT_THAT(Fetch(meta, 0), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("parent says")));
  mode = 1;
  EXPECT_THAT(Fetch(meta, 0), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bytes received")));
  mode = 2;
  EXPECT_THAT(Fetch(meta, 0), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("malformed")));
  server_->Shutdown();  // before `bytes` and `mode` go
}

TEST_F(PieceClientTest, FetchesTheBitmap) {
  Start();
  auto task = MakeTask('a', kLength, {0, 3});
  ASSERT_OK_AND_ASSIGN(std::string bitmap,
                       client_.FetchBitmap(Parent(), task->meta(), absl::Seconds(5), nullptr));
  EXPECT_EQ(bitmap, std::string("\x90", 1));
  piece::TaskMeta other = task->meta();
  other.task_id = Id('f');
  EXPECT_THAT(client_.FetchBitmap(Parent(), other, absl::Seconds(5), nullptr),
              StatusIs(absl::StatusCode::kNotFound, _));
  other = task->meta();
  other.content_length *= 3;
  EXPECT_THAT(client_.FetchBitmap(Parent(), other, absl::Seconds(5), nullptr),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("pieces")));
}

}  // namespace
}  // namespace naiad::peer
