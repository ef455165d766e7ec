// Downloads in the swarm, against a scripted scheduler (the one fake here), a real origin (an
// HttpServer with ranges) and real parents (piece stores behind the upload service).
#include "peer/downloads.h"

#include <bitset>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/http_server.h"
#include "peer/upload.h"

namespace naiad::peer {
namespace {

using ::naiad::testing::PseudoRandomBytes;

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint32_t kPiece = 1 << 20;  // PieceSizeFor() of a small task
constexpr int kPieces = 6;
constexpr uint64_t kLength = uint64_t{kPieces} * kPiece - 4321;  // the last piece short

// The origin: serves `content` at /blob with HEAD and single ranges; records the ranges asked.
class Origin {
 public:
  explicit Origin(std::string content) : content_(std::move(content)) {
    auto server = net::HttpServer::Start(
        {.port = 0}, [this](const net::ServerRequest& request, net::ResponseWriter& writer) {
          Serve(request, writer);
        });
    EXPECT_OK(server);
    if (server.ok()) server_ = std::move(*server);
  }
  ~Origin() { server_->Shutdown(); }

  std::string url() const { return server_->url() + "/blob"; }
  std::vector<uint64_t> range_offsets() {
    absl::MutexLock lock(&mu_);
    return range_offsets_;
  }

 private:
  void Serve(const net::ServerRequest& request, net::ResponseWriter& writer) {
    net::HttpHeaders headers;
    std::optional<std::string> range = request.headers.Get("Range");
    if (!range.has_value()) {
      writer.Respond(200, headers, content_).IgnoreError();
      return;
    }
    absl::StatusOr<net::ByteRange> parsed = net::ParseRangeHeader(*range, content_.size());
    if (!parsed.ok()) {
      writer.Respond(416, headers, "").IgnoreError();
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      range_offsets_.push_back(parsed->offset);
    }
    headers.Add("Content-Range", parsed->ToContentRange(content_.size())).IgnoreError();
    writer.Respond(206, headers, std::string_view(content_).substr(parsed->offset, parsed->length))
        .IgnoreError();
  }

  const std::string content_;
  std::unique_ptr<net::HttpServer> server_;
  absl::Mutex mu_;
  std::vector<uint64_t> range_offsets_ ABSL_GUARDED_BY(mu_);
};

// A parent: its own piece store with the task's pieces, served by the upload service.
class Parent {
 public:
  explicit Parent(std::string id) : id_(std::move(id)) {}
  // Holds `pieces` of the task (piece `corrupt_piece` with a flipped bit) and serves them.
  void Start(const piece::TaskMeta& meta, std::string_view content,
             const std::vector<uint32_t>& pieces, uint32_t corrupt_piece = ~0u) {
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("downloads-test-parent-"));
    ASSERT_OK_AND_ASSIGN(store_, piece::PieceStore::Open({.dir = dir_.path()}));
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<piece::Task> task, store_->CreateOrOpen(meta));
    for (uint32_t n : pieces) {
      std::string bytes(content.substr(meta.PieceOffset(n), meta.PieceLength(n)));
      if (n == corrupt_piece) bytes[0] ^= 1;
      ASSERT_OK(task->WritePiece(n, bytes));
    }
    ASSERT_OK_AND_ASSIGN(upload_, UploadService::Create(store_.get(), {}, nullptr));
    ASSERT_OK_AND_ASSIGN(
        server_, net::HttpServer::Start(
                     {.port = 0}, [this](const net::ServerRequest& r, net::ResponseWriter& w) {
                       upload_->Handle(r, w);
                     }));
    for (uint32_t n : pieces) bitmap_.set(n);
  }
  ~Parent() {
    if (upload_ != nullptr) upload_->Stop();
    if (server_ != nullptr) server_->Shutdown();
  }

  schedv1::Parent Describe() const {
    schedv1::Parent parent;
    parent.set_host_id(id_);
    parent.set_ip("127.0.0.1");
    parent.set_upload_port(server_->port());
    std::string bits((kPieces + 7) / 8, '\0');
    for (int n = 0; n < kPieces; ++n) {
      if (bitmap_.test(n)) bits[n / 8] = static_cast<char>(bits[n / 8] | (0x80 >> (n % 8)));
    }
    parent.set_bitmap(bits);
    return parent;
  }
  const UploadMetrics& metrics() const { return upload_->metrics(); }

 private:
  std::string id_;
  TempDir dir_;
  std::unique_ptr<piece::PieceStore> store_;
  std::unique_ptr<UploadService> upload_;
  std::unique_ptr<net::HttpServer> server_;
  std::bitset<64> bitmap_;
};

// The scheduler, scripted by the test; records every request.
class ScriptedScheduler : public SchedulerClient {
 public:
  using Script =
      std::function<absl::StatusOr<schedv1::SyncTaskResponse>(const schedv1::SyncTaskRequest&)>;
  explicit ScriptedScheduler(Script script) : script_(std::move(script)) {}

  absl::StatusOr<absl::Duration> AnnounceHost(const schedv1::Host&) override {
    return absl::Seconds(1);
  }
  void LeaveHost(const std::string&) override {}
  absl::StatusOr<schedv1::SyncTaskResponse> SyncTask(
      const schedv1::SyncTaskRequest& request) override {
    absl::MutexLock lock(&mu_);
    requests_.push_back(request);
    return script_(request);
  }
  void LeaveTask(const std::string&, const std::string&) override {}

  std::vector<schedv1::SyncTaskRequest> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  Script script_;
  absl::Mutex mu_;
  std::vector<schedv1::SyncTaskRequest> requests_ ABSL_GUARDED_BY(mu_);
};

// The crcs of every piece of `content`, all known.
void SetCrcs(std::string_view content, schedv1::SyncTaskResponse& response) {
  for (int n = 0; n < kPieces; ++n) {
    uint64_t offset = uint64_t{kPiece} * n;
    response.add_crc32c(
        Crc32c(content.substr(offset, std::min<uint64_t>(kPiece, kLength - offset))));
  }
  response.set_crc32c_known(std::string(1, static_cast<char>(0xFC)));  // pieces 0-5
}

class DownloadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    content_ = PseudoRandomBytes(kLength, 7);
    origin_ = std::make_unique<Origin>(content_);
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("downloads-test-"));
    ASSERT_OK_AND_ASSIGN(store_, piece::PieceStore::Open({.dir = dir_.path()}));
    meta_ = {.task_id = piece::TaskIdForUrl(origin_->url(), {}),
             .url = origin_->url(),
             .content_length = kLength,
             .piece_size = kPiece};
  }
  void TearDown() override { downloads_.reset(); }

  void Start(ScriptedScheduler::Script script) {
    scheduler_ = std::make_unique<ScriptedScheduler>(std::move(script));
    downloads_ = std::make_unique<Downloads>(
        DownloadsOptions{.store = store_.get(),
                         .config = {.concurrent_pieces = 4, .piece_timeout = absl::Seconds(5)},
                         .metrics = &metrics_,
                         .scheduler = scheduler_.get(),
                         .piece_client = &piece_client_,
                         .host_id = "me",
                         .sync_interval = absl::Milliseconds(20)});
  }

  // Opens the task, asks for all of it, and waits until it is complete.
  std::shared_ptr<piece::Task> Fetch(absl::Duration limit = absl::Seconds(20)) {
    OriginError error;
    absl::StatusOr<std::shared_ptr<piece::Task>> task =
        downloads_->Open(meta_.task_id, {.url = origin_->url()}, &error);
    EXPECT_OK(task);
    if (!task.ok()) return nullptr;
    downloads_->Want(*task, 0, kPieces - 1, /*whole=*/true);
    EXPECT_TRUE((*task)->WaitForPieces(0, kPieces - 1, absl::Now() + limit))
        << (*task)->pieces_present() << " pieces present";
    return *task;
  }

  std::string ReadAll(const piece::Task& task) {
    std::string out(kLength, '\0');
    EXPECT_OK(task.ReadRange(0, std::span<char>(out)));
    return out;
  }

  std::string content_;
  std::unique_ptr<Origin> origin_;
  TempDir dir_;
  std::unique_ptr<piece::PieceStore> store_;
  piece::TaskMeta meta_;
  PeerMetrics metrics_;
  PieceClient piece_client_;
  std::unique_ptr<ScriptedScheduler> scheduler_;
  std::unique_ptr<Downloads> downloads_;
};

TEST_F(DownloadsTest, PiecesComeFromAParentThatHoldsThem) {
  Parent parent("parent-1");
  ASSERT_NO_FATAL_FAILURE(parent.Start(meta_, content_, {0, 1, 2, 3, 4, 5}));
  Start([&](const schedv1::SyncTaskRequest&) -> absl::StatusOr<schedv1::SyncTaskResponse> {
    schedv1::SyncTaskResponse response;
    *response.add_parents() = parent.Describe();
    SetCrcs(content_, response);
    return response;
  });
  std::shared_ptr<piece::Task> task = Fetch();
  ASSERT_NE(task, nullptr);
  EXPECT_EQ(ReadAll(*task), content_);
  EXPECT_THAT(origin_->range_offsets(), IsEmpty());  // only the HEAD went to the origin
  EXPECT_EQ(metrics_.peer_pieces.load(), uint64_t{kPieces});
  EXPECT_EQ(metrics_.peer_bytes.load(), kLength);
  EXPECT_EQ(parent.metrics().bytes_served.load(), kLength);
  // Every piece was reported as coming from the parent, with its crc.
  int reported = 0;
  for (const schedv1::SyncTaskRequest& request : scheduler_->requests()) {
    EXPECT_EQ(request.host_id(), "me");
    EXPECT_EQ(request.task().task_id(), meta_.task_id);
    for (const schedv1::PieceReport& report : request.pieces()) {
      EXPECT_EQ(report.source(), schedv1::PIECE_SOURCE_PEER);
      EXPECT_EQ(report.parent_id(), "parent-1");
      uint64_t offset = uint64_t{kPiece} * report.number();
      EXPECT_EQ(report.crc32c(), Crc32c(std::string_view(content_).substr(
                                     offset, std::min<uint64_t>(kPiece, kLength - offset))));
      ++reported;
    }
  }
  EXPECT_EQ(reported, kPieces);
}

TEST_F(DownloadsTest, OriginOnlyUnderALease) {
  absl::Mutex mu;
  bool granted = false;
  Start([&](const schedv1::SyncTaskRequest& request) -> absl::StatusOr<schedv1::SyncTaskResponse> {
    schedv1::SyncTaskResponse response;
    absl::MutexLock lock(&mu);
    for (uint32_t n : request.want_origin()) {
      if (n == 3 && !granted) {
        response.add_origin_granted(3);
        granted = true;
      }
    }
    return response;
  });
  OriginError error;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<piece::Task> task,
                       downloads_->Open(meta_.task_id, {.url = origin_->url()}, &error));
  downloads_->Want(task, 0, kPieces - 1, /*whole=*/true);
  ASSERT_TRUE(task->WaitForPieces(3, 3, absl::Now() + absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(300));  // time for anything else (wrongly) to be fetched
  EXPECT_THAT(origin_->range_offsets(), ElementsAre(uint64_t{3} * kPiece));
  EXPECT_EQ(task->pieces_present(), 1u);
  // The peer asked for leases, no more at once than it fetches at once, and reported the piece
  // as an origin fetch.
  bool asked = false;
  bool reported = false;
  for (const schedv1::SyncTaskRequest& request : scheduler_->requests()) {
    if (request.want_origin_size() > 0) {
      asked = true;
      EXPECT_LE(request.max_origin_grants(), 4u);
    }
    for (const schedv1::PieceReport& report : request.pieces()) {
      EXPECT_EQ(report.number(), 3u);
      EXPECT_EQ(report.source(), schedv1::PIECE_SOURCE_ORIGIN);
      reported = true;
    }
  }
  EXPECT_TRUE(asked);
  EXPECT_TRUE(reported);
}

TEST_F(DownloadsTest, SchedulerDownFallsBackToTheOrigin) {
  Start([](const schedv1::SyncTaskRequest&) -> absl::StatusOr<schedv1::SyncTaskResponse> {
    return absl::UnavailableError("connection refused");
  });
  std::shared_ptr<piece::Task> task = Fetch();
  ASSERT_NE(task, nullptr);
  EXPECT_EQ(ReadAll(*task), content_);
  EXPECT_EQ(metrics_.origin_fallbacks.load(), 1u);
  EXPECT_EQ(metrics_.origin_bytes.load(), kLength);
}

TEST_F(DownloadsTest, ABadParentIsReportedAndAnotherServesThePiece) {
  // "bad" sends a corrupt piece 2; "good" is offered only once "bad" was reported.
  Parent bad("bad");
  ASSERT_NO_FATAL_FAILURE(bad.Start(meta_, content_, {0, 1, 2, 3, 4, 5}, /*corrupt_piece=*/2));
  Parent good("good");
  ASSERT_NO_FATAL_FAILURE(good.Start(meta_, content_, {0, 1, 2, 3, 4, 5}));
  absl::Mutex mu;
  bool bad_reported = false;
  Start([&](const schedv1::SyncTaskRequest& request) -> absl::StatusOr<schedv1::SyncTaskResponse> {
    absl::MutexLock lock(&mu);
    for (const std::string& failed : request.failed_parents()) {
      if (failed == "bad") bad_reported = true;
    }
    schedv1::SyncTaskResponse response;
    *response.add_parents() = bad.Describe();
    if (bad_reported) *response.add_parents() = good.Describe();
    SetCrcs(content_, response);
    return response;
  });
  std::shared_ptr<piece::Task> task = Fetch();
  ASSERT_NE(task, nullptr);
  EXPECT_EQ(ReadAll(*task), content_);
  absl::MutexLock lock(&mu);
  EXPECT_TRUE(bad_reported);
  EXPECT_GE(metrics_.peer_failures.load(), 1u);
  EXPECT_THAT(origin_->range_offsets(), IsEmpty());
}

TEST_F(DownloadsTest, SeedFetchesTheWholeTaskUnderLeasesWithoutProbing) {
  Start([](const schedv1::SyncTaskRequest& request) -> absl::StatusOr<schedv1::SyncTaskResponse> {
    schedv1::SyncTaskResponse response;
    uint32_t granted = 0;
    for (uint32_t n : request.want_origin()) {
      if (granted++ < request.max_origin_grants()) response.add_origin_granted(n);
    }
    return response;
  });
  ASSERT_OK(downloads_->Seed({.meta = meta_, .origin = {.url = origin_->url()}}));
  std::shared_ptr<piece::Task> task = store_->Find(meta_.task_id);
  ASSERT_NE(task, nullptr);
  ASSERT_TRUE(task->WaitForPieces(0, kPieces - 1, absl::Now() + absl::Seconds(20)));
  EXPECT_EQ(ReadAll(*task), content_);
  EXPECT_EQ(origin_->range_offsets().size(), size_t{kPieces});  // one request per piece
  EXPECT_EQ(metrics_.seed_tasks.load(), 1u);
  // The last report says the task is complete.
  absl::SleepFor(absl::Milliseconds(200));
  std::vector<schedv1::SyncTaskRequest> requests = scheduler_->requests();
  ASSERT_FALSE(requests.empty());
  EXPECT_TRUE(requests.back().complete());
  std::vector<uint32_t> reported;
  for (const auto& request : requests) {
    for (const auto& report : request.pieces()) reported.push_back(report.number());
  }
  EXPECT_EQ(reported.size(), size_t{kPieces});
  EXPECT_THAT(reported, Contains(0u));
}

}  // namespace
}  // namespace naiad::peer
