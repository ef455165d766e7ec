// Downloads in the swarm, against a scripted scheduler (the one fake here), a real origin (an
// HttpServer with ranges) and real parents (piece stores behind the upload service).
#include "peer/downloads.h"

#include <algorithm>
#include <bitset>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
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
using ::naiad::testing::StatusIs;

using ::testing::_;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint32_t kPiece = 256 << 10;  // PieceSizeFor() of a small task
constexpr int kPieces = 6;
constexpr uint64_t kLength = uint64_t{kPieces} * kPiece - 4321;  // the last piece short

// The origin: serves `content` at /blob with HEAD and single ranges; records the ranges asked.
// A range can be made slow, or fail once.
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
    std::vector<uint64_t> offsets;
    for (const net::ByteRange& range : ranges_) offsets.push_back(range.offset);
    return offsets;
  }
  int heads() {
    absl::MutexLock lock(&mu_);
    return heads_;
  }
  std::vector<net::ByteRange> ranges() {
    absl::MutexLock lock(&mu_);
    return ranges_;
  }
  // The range at `offset` is answered after `delay`.
  void SetDelay(uint64_t offset, absl::Duration delay) {
    absl::MutexLock lock(&mu_);
    delays_[offset] = delay;
  }
  // Every ranged request is answered with `status` and no body from now on.
  void RefuseAll(int status) {
    absl::MutexLock lock(&mu_);
    refusal_ = status;
  }
  // The next request of the range at `offset` gets a 503.
  void FailOnce(uint64_t offset) {
    absl::MutexLock lock(&mu_);
    fail_once_.insert(offset);
  }

 private:
  void Serve(const net::ServerRequest& request, net::ResponseWriter& writer) {
    net::HttpHeaders headers;
    if (request.method == "HEAD") {
      absl::MutexLock lock(&mu_);
      ++heads_;
    }
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
    absl::Duration delay;
    bool fail = false;
    {
      absl::MutexLock lock(&mu_);
      ranges_.push_back(*parsed);
      if (auto it = delays_.find(parsed->offset); it != delays_.end()) delay = it->second;
      fail = fail_once_.erase(parsed->offset) > 0;
      if (refusal_ != 0) {
        writer.Respond(refusal_, headers, "no").IgnoreError();
        return;
      }
    }
    absl::SleepFor(delay);
    if (fail) {
      writer.Respond(503, headers, "try again").IgnoreError();
      return;
    }
    headers.Add("Content-Range", parsed->ToContentRange(content_.size())).IgnoreError();
    writer.Respond(206, headers, std::string_view(content_).substr(parsed->offset, parsed->length))
        .IgnoreError();
  }

  const std::string content_;
  std::unique_ptr<net::HttpServer> server_;
  absl::Mutex mu_;
  std::vector<net::ByteRange> ranges_ ABSL_GUARDED_BY(mu_);
  int heads_ ABSL_GUARDED_BY(mu_) = 0;
  int refusal_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, absl::Duration> delays_ ABSL_GUARDED_BY(mu_);
  std::set<uint64_t> fail_once_ ABSL_GUARDED_BY(mu_);
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
  absl::StatusOr<schedv1::StatTaskResponse> StatTask(const std::string& task_id) override {
    absl::MutexLock lock(&mu_);
    if (!known_.has_value() || known_->task_id() != task_id) {
      return absl::NotFoundError(StrCat("task ", task_id));
    }
    schedv1::StatTaskResponse response;
    *response.mutable_task() = *known_;
    return response;
  }
  // StatTask answers with `task` for its id.
  void Know(schedv1::TaskInfo task) {
    absl::MutexLock lock(&mu_);
    known_ = std::move(task);
  }

  std::vector<schedv1::SyncTaskRequest> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }
  // What an AnnounceHost answered with `new_host` does: the scheduler forgot this host.
  void ForgetHost() { CountNewHostAnswer(); }

 private:
  Script script_;
  absl::Mutex mu_;
  std::vector<schedv1::SyncTaskRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::optional<schedv1::TaskInfo> known_ ABSL_GUARDED_BY(mu_);
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

// Metrics and piece reports are updated just after a piece is stored, so a reader that has all
// the data can be a moment ahead of them: waits (up to 10 s) until `done` holds.
bool Eventually(const std::function<bool()>& done) {
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
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

  void Start(ScriptedScheduler::Script script,
             absl::Duration sync_interval = absl::Milliseconds(20),
             std::function<void()> reannounce = nullptr) {
    scheduler_ = std::make_unique<ScriptedScheduler>(std::move(script));
    downloads_ = std::make_unique<Downloads>(
        DownloadsOptions{.store = store_.get(),
                         .config = {.concurrent_pieces = 4, .piece_timeout = absl::Seconds(5)},
                         .metrics = &metrics_,
                         .scheduler = scheduler_.get(),
                         .piece_client = &piece_client_,
                         .host_id = "me",
                         .reannounce = std::move(reannounce),
                         .sync_interval = sync_interval});
  }

  // Opens the task and asks for pieces [first, last].
  std::shared_ptr<piece::Task> OpenAndWant(uint32_t first, uint32_t last, bool whole,
                                           bool urgent = true) {
    OriginError error;
    absl::StatusOr<std::shared_ptr<piece::Task>> task =
        downloads_->Open(meta_.task_id, {.url = origin_->url()}, &error);
    EXPECT_OK(task);
    if (!task.ok()) return nullptr;
    downloads_->Want(*task, first, last, whole, urgent);
    return *task;
  }

  // Bytes the origin was asked for, over every ranged request.
  uint64_t OriginBytes() {
    uint64_t bytes = 0;
    for (const net::ByteRange& range : origin_->ranges()) bytes += range.length;
    return bytes;
  }
  // The task's bytes [offset, offset + length) are the content's.
  void ExpectContent(const piece::Task& task, uint64_t offset, uint64_t length) {
    std::string out(length, '\0');
    ASSERT_OK(task.ReadRange(offset, std::span<char>(out)));
    EXPECT_EQ(out, content_.substr(offset, length));
  }

  // Opens the task and reads `bytes` (inside piece 1) as a reader would; nullptr on failure.
  std::shared_ptr<piece::Task> ReadInPart(piece::ByteSpan bytes) {
    OriginError error;
    absl::StatusOr<std::shared_ptr<piece::Task>> task =
        downloads_->Open(meta_.task_id, {.url = origin_->url()}, &error);
    EXPECT_OK(task);
    if (!task.ok()) return nullptr;
    downloads_->Want(*task, 1, 1, /*whole=*/false, /*urgent=*/true, /*reader=*/true, bytes);
    EXPECT_TRUE((*task)->WaitForRange(bytes, absl::Now() + absl::Seconds(10)));
    return *task;
  }

  // A task of the store that is not being downloaded, holding `pieces` of its content.
  void Hold(const std::string& url, const std::vector<uint32_t>& pieces) {
    piece::TaskMeta meta{.task_id = piece::TaskIdForUrl(url, {}),
                         .url = url,
                         .content_length = kLength,
                         .piece_size = kPiece};
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<piece::Task> task, store_->CreateOrOpen(meta));
    for (uint32_t n : pieces) {
      ASSERT_OK(task->WritePiece(
          n, std::string_view(content_).substr(meta.PieceOffset(n), meta.PieceLength(n))));
    }
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
  EXPECT_TRUE(Eventually([&] { return metrics_.peer_pieces.load() == uint64_t{kPieces}; }));
  EXPECT_EQ(metrics_.peer_bytes.load(), kLength);
  EXPECT_EQ(parent.metrics().bytes_served.load(), kLength);
  // Every piece was reported as coming from the parent, with its crc.
  auto count_reports = [&] {
    size_t n = 0;
    for (const schedv1::SyncTaskRequest& request : scheduler_->requests())
      n += request.pieces_size();
    return n;
  };
  EXPECT_TRUE(Eventually([&] { return count_reports() == size_t{kPieces}; }));
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
  // The peer asked for leases, no more at once than it fetches at once (its origin slots, plus
  // the pieces readers wait for, which go in runs), and reported the piece as an origin fetch.
  bool asked = false;
  bool reported = false;
  for (const schedv1::SyncTaskRequest& request : scheduler_->requests()) {
    if (request.want_origin_size() > 0) {
      asked = true;
      EXPECT_LE(request.max_origin_grants(), 4u + kPieces);
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
  EXPECT_TRUE(Eventually([&] { return metrics_.origin_bytes.load() == kLength; }));
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
  for (const auto& request : requests) EXPECT_TRUE(request.whole());  // a seed fetches it all
  std::vector<uint32_t> reported;
  for (const auto& request : requests) {
    for (const auto& report : request.pieces()) reported.push_back(report.number());
  }
  EXPECT_EQ(reported.size(), size_t{kPieces});
  EXPECT_THAT(reported, Contains(0u));
}

// Grants every piece asked for; says leases last `lease_timeout`.
ScriptedScheduler::Script GrantEverything(absl::Duration lease_timeout = absl::Seconds(30)) {
  return [lease_timeout](
             const schedv1::SyncTaskRequest& request) -> absl::StatusOr<schedv1::SyncTaskResponse> {
    schedv1::SyncTaskResponse response;
    response.set_lease_timeout_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(lease_timeout)));
    for (uint32_t n : request.want_origin()) {
      if (static_cast<uint32_t>(response.origin_granted_size()) < request.max_origin_grants()) {
        response.add_origin_granted(n);
      }
    }
    return response;
  };
}

bool Lists(const google::protobuf::RepeatedField<uint32_t>& pieces, uint32_t n) {
  return std::find(pieces.begin(), pieces.end(), n) != pieces.end();
}

TEST_F(DownloadsTest, ARunningOriginFetchRenewsItsLeaseEveryThirdOfTheTimeout) {
  // A slow origin fetch of piece 3 under a 300 ms lease: the peer must renew it every 100 ms,
  // although nothing else is news and its sync interval (1 s) is much longer.
  origin_->SetDelay(uint64_t{3} * kPiece, absl::Milliseconds(1500));
  Start(GrantEverything(absl::Milliseconds(300)), /*sync_interval=*/absl::Seconds(1));
  std::shared_ptr<piece::Task> task = OpenAndWant(3, 3, /*whole=*/false);
  ASSERT_NE(task, nullptr);
  ASSERT_TRUE(task->WaitForPieces(3, 3, absl::Now() + absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(300));
  std::vector<schedv1::SyncTaskRequest> requests = scheduler_->requests();
  int renewals = 0;
  bool reported = false;
  for (const schedv1::SyncTaskRequest& request : requests) {
    EXPECT_FALSE(request.whole());  // a range only
    for (const schedv1::PieceReport& report : request.pieces()) reported |= report.number() == 3;
    if (Lists(request.fetching(), 3)) {
      EXPECT_FALSE(reported) << "a fetched piece is still listed as fetching";
      ++renewals;
    }
    for (uint32_t n : request.fetching()) EXPECT_EQ(n, 3u);
  }
  EXPECT_TRUE(reported);
  // About 15 over the 1.5 s fetch; a loaded machine may skip some.
  EXPECT_GE(renewals, 6) << requests.size() << " syncs";
  EXPECT_EQ(origin_->range_offsets().size(), 1u);
}

TEST_F(DownloadsTest, AFailedOriginFetchIsReleasedNotRenewedAndRetriedUnderANewLease) {
  origin_->SetDelay(uint64_t{2} * kPiece, absl::Milliseconds(300));
  origin_->FailOnce(uint64_t{2} * kPiece);
  Start(GrantEverything(absl::Milliseconds(300)));
  std::shared_ptr<piece::Task> task = OpenAndWant(2, 2, /*whole=*/false);
  ASSERT_NE(task, nullptr);
  ASSERT_TRUE(task->WaitForPieces(2, 2, absl::Now() + absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_THAT(origin_->range_offsets(), ElementsAre(2 * kPiece, 2 * kPiece));
  // Renewed while the first fetch ran; then released (and not listed as fetching any more) and
  // asked for again; renewed while the second ran.
  enum { kFirstFetch, kReleased, kSecondFetch } phase = kFirstFetch;
  int grants_asked_after_release = 0;
  int renewals[3] = {0, 0, 0};
  for (const schedv1::SyncTaskRequest& request : scheduler_->requests()) {
    if (Lists(request.released(), 2)) {
      EXPECT_EQ(phase, kFirstFetch);
      EXPECT_FALSE(Lists(request.fetching(), 2));
      phase = kReleased;
    }
    if (phase != kFirstFetch && Lists(request.want_origin(), 2)) ++grants_asked_after_release;
    if (Lists(request.fetching(), 2)) {
      if (phase == kReleased) phase = kSecondFetch;
      ++renewals[phase];
    }
  }
  EXPECT_EQ(phase, kSecondFetch);
  EXPECT_GE(renewals[kFirstFetch], 1);
  EXPECT_EQ(renewals[kReleased], 0);
  EXPECT_GE(grants_asked_after_release, 1);
}

TEST_F(DownloadsTest, SyncsSayWholeOnlyOnceTheWholeTaskIsWanted) {
  Start(GrantEverything());
  std::shared_ptr<piece::Task> task = OpenAndWant(1, 1, /*whole=*/false);
  ASSERT_NE(task, nullptr);
  ASSERT_TRUE(task->WaitForPieces(1, 1, absl::Now() + absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(100));
  std::vector<schedv1::SyncTaskRequest> ranged = scheduler_->requests();
  ASSERT_FALSE(ranged.empty());
  for (const auto& request : ranged) EXPECT_FALSE(request.whole());
  EXPECT_EQ(task->pieces_present(), 1u);  // nothing beyond the range was fetched
  // A whole GET of the same task (not urgent: the swarm's order).
  downloads_->Want(task, 0, kPieces - 1, /*whole=*/true, /*urgent=*/false);
  ASSERT_TRUE(task->WaitForPieces(0, kPieces - 1, absl::Now() + absl::Seconds(10)));
  EXPECT_EQ(ReadAll(*task), content_);
  std::vector<schedv1::SyncTaskRequest> all = scheduler_->requests();
  ASSERT_GT(all.size(), ranged.size());
  for (size_t i = ranged.size(); i < all.size(); ++i) EXPECT_TRUE(all[i].whole()) << i;
}

// download.prefetch behind a reader's ranges: the rest of the task waits until the readers have
// been quiet for a second, so that it does not compete with them for the origin's link.
TEST_F(DownloadsTest, BackgroundPrefetchWaitsUntilReadersAreQuiet) {
  Start(GrantEverything());
  OriginError error;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<piece::Task> task,
                       downloads_->Open(meta_.task_id, {.url = origin_->url()}, &error));
  // A reader keeps reading pieces 0, 1, 2 (every 200 ms) for 600 ms.
  for (uint32_t n = 0; n < 3; ++n) {
    downloads_->Want(task, n, n, /*whole=*/true, /*urgent=*/true, /*reader=*/true);
    ASSERT_TRUE(task->WaitForPieces(n, n, absl::Now() + absl::Seconds(10)));
    absl::SleepFor(absl::Milliseconds(200));
  }
  const absl::Time last_read = absl::Now() - absl::Milliseconds(200);
  EXPECT_EQ(task->pieces_present(), 3u) << "the prefetch started while the reader was reading";
  for (const auto& request : scheduler_->requests()) EXPECT_FALSE(request.whole());
  ASSERT_TRUE(task->WaitForPieces(0, kPieces - 1, absl::Now() + absl::Seconds(10)));
  EXPECT_GE(absl::Now() - last_read, absl::Seconds(1));
  EXPECT_EQ(ReadAll(*task), content_);
  bool said_whole = false;
  for (const auto& request : scheduler_->requests()) said_whole = said_whole || request.whole();
  EXPECT_TRUE(said_whole);
}

TEST_F(DownloadsTest, HeldTasksAreSyncedOnceEachTimeTheSchedulerForgetsTheHost) {
  ASSERT_NO_FATAL_FAILURE(Hold("http://origin/complete", {0, 1, 2, 3, 4, 5}));
  ASSERT_NO_FATAL_FAILURE(Hold("http://origin/partial", {1, 4}));
  ASSERT_NO_FATAL_FAILURE(Hold("http://origin/empty", {}));
  const std::string complete_id = piece::TaskIdForUrl("http://origin/complete", {});
  const std::string partial_id = piece::TaskIdForUrl("http://origin/partial", {});
  Start([](const schedv1::SyncTaskRequest&) -> absl::StatusOr<schedv1::SyncTaskResponse> {
    return schedv1::SyncTaskResponse();
  });
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_THAT(scheduler_->requests(), IsEmpty());  // the scheduler never said it forgot us
  auto check = [&](const std::vector<schedv1::SyncTaskRequest>& requests) {
    ASSERT_EQ(requests.size(), 2u);
    for (const schedv1::SyncTaskRequest& request : requests) {
      EXPECT_EQ(request.host_id(), "me");
      EXPECT_EQ(request.task().content_length(), kLength);
      EXPECT_EQ(request.task().piece_size(), kPiece);
      EXPECT_FALSE(request.whole());
      EXPECT_THAT(request.want_origin(), IsEmpty());
      if (request.task().task_id() == complete_id) {
        EXPECT_TRUE(request.complete());
        EXPECT_THAT(request.pieces(), IsEmpty());  // `complete` says it all
      } else {
        EXPECT_EQ(request.task().task_id(), partial_id);
        EXPECT_FALSE(request.complete());
        std::vector<uint32_t> numbers;
        for (const auto& report : request.pieces()) {
          numbers.push_back(report.number());
          EXPECT_EQ(report.source(), schedv1::PIECE_SOURCE_PEER);
          EXPECT_EQ(report.crc32c(), Crc32c(std::string_view(content_).substr(
                                         uint64_t{kPiece} * report.number(), kPiece)));
        }
        EXPECT_THAT(numbers, ::testing::UnorderedElementsAre(1u, 4u));
      }
    }
  };
  scheduler_->ForgetHost();
  absl::SleepFor(absl::Milliseconds(500));  // one sync per held task, then quiet
  std::vector<schedv1::SyncTaskRequest> first = scheduler_->requests();
  ASSERT_NO_FATAL_FAILURE(check(first));
  scheduler_->ForgetHost();
  absl::SleepFor(absl::Milliseconds(500));
  std::vector<schedv1::SyncTaskRequest> both = scheduler_->requests();
  ASSERT_EQ(both.size(), 4u);
  ASSERT_NO_FATAL_FAILURE(
      check(std::vector<schedv1::SyncTaskRequest>(both.begin() + 2, both.end())));
  EXPECT_EQ(metrics_.origin_requests.load(), 0u);
}

TEST_F(DownloadsTest, HostNotAnnouncedReannouncesAndRegistersHeldTasks) {
  ASSERT_NO_FATAL_FAILURE(Hold("http://origin/complete", {0, 1, 2, 3, 4, 5}));
  const std::string complete_id = piece::TaskIdForUrl("http://origin/complete", {});
  absl::Mutex mu;
  bool restarted = false;  // the first sync finds a scheduler that forgot us
  Start(
      [&](const schedv1::SyncTaskRequest& request) -> absl::StatusOr<schedv1::SyncTaskResponse> {
        absl::MutexLock lock(&mu);
        if (!restarted) {
          restarted = true;
          return absl::FailedPreconditionError("host not announced: me");
        }
        return GrantEverything()(request);
      },
      absl::Milliseconds(20), /*reannounce=*/[this] { scheduler_->ForgetHost(); });
  std::shared_ptr<piece::Task> task = OpenAndWant(0, kPieces - 1, /*whole=*/true);
  ASSERT_NE(task, nullptr);
  ASSERT_TRUE(task->WaitForPieces(0, kPieces - 1, absl::Now() + absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(200));
  int held_syncs = 0;
  for (const schedv1::SyncTaskRequest& request : scheduler_->requests()) {
    if (request.task().task_id() != complete_id) continue;
    ++held_syncs;
    EXPECT_TRUE(request.complete());
  }
  EXPECT_EQ(held_syncs, 1);
  EXPECT_EQ(metrics_.origin_fallbacks.load(), 0u);
}

// A reader's range that starts and ends inside pieces: the origin is asked for exactly its bytes,
// in one request; the pieces at its ends are held in part (readable here, never offered to
// peers) and their other bytes follow once readers are quiet, each byte fetched once.
TEST_F(DownloadsTest, AReadersRangeIsFetchedExactlyAndItsEndPiecesCompletedLater) {
  Start(GrantEverything());
  OriginError error;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<piece::Task> task,
                       downloads_->Open(meta_.task_id, {.url = origin_->url()}, &error));
  const piece::ByteSpan bytes{kPiece + 100, 3 * kPiece + 200};
  downloads_->Want(task, 1, 3, /*whole=*/false, /*urgent=*/true, /*reader=*/true, bytes);
  ASSERT_TRUE(task->WaitForRange(bytes, absl::Now() + absl::Seconds(10)));
  const absl::Time read_at = absl::Now();
  ExpectContent(*task, bytes.begin, bytes.length());
  ASSERT_FALSE(origin_->ranges().empty());
  EXPECT_EQ(origin_->ranges().front().offset, bytes.begin);
  EXPECT_EQ(origin_->ranges().front().length, bytes.length());
  EXPECT_TRUE(task->HasPiece(2));
  EXPECT_FALSE(task->HasPiece(0));

  // Pieces 1 and 3 complete after a quiet second (until then the syncs say we are fetching
  // them, so that peers wanting them ask us rather than the origin).
  ASSERT_TRUE(task->WaitForPieces(1, 3, absl::Now() + absl::Seconds(10)));
  EXPECT_GE(absl::Now() - read_at, absl::Milliseconds(900));
  EXPECT_FALSE(task->HasPiece(0));
  EXPECT_EQ(OriginBytes(), 3 * kPiece) << "a byte was fetched twice";
  ExpectContent(*task, kPiece, 3 * kPiece);
  bool said_fetching = false;
  for (const schedv1::SyncTaskRequest& request : scheduler_->requests()) {
    for (uint32_t n : request.fetching()) said_fetching = said_fetching || n == 3;
  }
  EXPECT_TRUE(said_fetching);
}

// A peer waiting for a piece we hold in part (Urge, from the upload service) does not wait for
// the readers to be quiet.
TEST_F(DownloadsTest, APieceHeldInPartIsCompletedAtOnceWhenAPeerWaitsForIt) {
  Start(GrantEverything());
  const piece::ByteSpan bytes{kPiece + 100, kPiece + 5000};
  std::shared_ptr<piece::Task> task = ReadInPart(bytes);
  ASSERT_NE(task, nullptr);
  const absl::Time read_at = absl::Now();
  EXPECT_FALSE(task->HasPiece(1));
  downloads_->Urge(meta_.task_id, 0, 2);
  ASSERT_TRUE(task->WaitForPieces(1, 1, absl::Now() + absl::Seconds(10)));
  EXPECT_LT(absl::Now() - read_at, absl::Milliseconds(900)) << "waited for the readers' quiet";
  EXPECT_FALSE(task->HasPiece(0)) << "Urge fetched a piece nobody held in part";
  ExpectContent(*task, kPiece, kPiece);
  // The head and the tail of the piece, each once.
  EXPECT_EQ(OriginBytes(), kPiece);
}

// A peer that waits for a piece while our reader's part of it is still arriving: the rest of the
// piece follows right after that part, not a quiet second later.
TEST_F(DownloadsTest, APieceUrgedWhileItsPartIsArrivingIsCompletedRightAfter) {
  Start(GrantEverything());
  OriginError error;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<piece::Task> task,
                       downloads_->Open(meta_.task_id, {.url = origin_->url()}, &error));
  const piece::ByteSpan bytes{kPiece + 100, kPiece + 5000};
  origin_->SetDelay(bytes.begin, absl::Milliseconds(300));
  const absl::Time asked = absl::Now();
  downloads_->Want(task, 1, 1, /*whole=*/false, /*urgent=*/true, /*reader=*/true, bytes);
  absl::SleepFor(absl::Milliseconds(100));  // the part's fetch is running
  downloads_->Urge(meta_.task_id, 1, 1);
  ASSERT_TRUE(task->WaitForPieces(1, 1, absl::Now() + absl::Seconds(10)));
  EXPECT_LT(absl::Now() - asked, absl::Milliseconds(800)) << "waited for the readers' quiet";
  ExpectContent(*task, kPiece, kPiece);
  EXPECT_EQ(OriginBytes(), kPiece);
}

// A blob the scheduler knows (another host registered it) is opened with its length and piece
// size from there, without a HEAD to the origin; the origin's answers still check the length.
// Content not named by its digest is always measured by the origin (it may have changed).
TEST_F(DownloadsTest, ABlobTheSchedulerKnowsIsOpenedWithoutAskingTheOrigin) {
  Start(GrantEverything());
  const std::string base = origin_->url().substr(0, origin_->url().rfind('/'));
  const std::string url = StrCat(
      base, "/v2/library/x/blobs/sha256:", Digest::Of(DigestAlgorithm::kSha256, content_).Hex());
  const std::string id = piece::TaskIdForUrl(url, {});
  schedv1::TaskInfo info;
  info.set_task_id(id);
  info.set_content_length(kLength);
  info.set_piece_size(kPiece);
  scheduler_->Know(info);
  OriginError error;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<piece::Task> task,
                       downloads_->Open(id, {.url = url}, &error));
  downloads_->Want(task, 0, kPieces - 1, /*whole=*/true);
  ASSERT_TRUE(task->WaitForPieces(0, kPieces - 1, absl::Now() + absl::Seconds(20)));
  EXPECT_TRUE(task->complete());
  EXPECT_EQ(ReadAll(*task), content_);
  EXPECT_EQ(origin_->heads(), 0);

  // The same for a URL that is not a blob's: the origin is asked.
  info.set_task_id(meta_.task_id);
  scheduler_->Know(info);
  ASSERT_OK(downloads_->Open(meta_.task_id, {.url = origin_->url()}, &error).status());
  EXPECT_EQ(origin_->heads(), 1);

  // A scheduler that has the length wrong: the first range from the origin says otherwise, and
  // the task fails instead of storing bytes at the wrong places.
  task.reset();
  downloads_.reset();
  ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("downloads-test-wrong-"));
  ASSERT_OK_AND_ASSIGN(store_, piece::PieceStore::Open({.dir = dir_.path()}));
  Start(GrantEverything());
  info.set_task_id(id);
  info.set_content_length(kLength + kPiece);
  scheduler_->Know(info);
  ASSERT_OK_AND_ASSIGN(task, downloads_->Open(id, {.url = url}, &error));
  EXPECT_EQ(task->meta().content_length, kLength + kPiece);
  downloads_->Want(task, 0, 0, /*whole=*/false);
  EXPECT_FALSE(task->WaitForPieces(0, 0, absl::Now() + absl::Seconds(10)));
  EXPECT_THAT(task->failure(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bytes")));
  EXPECT_EQ(origin_->heads(), 1);
}

// An origin that refuses the content (401, 403, 404) fails the task at once, with a status the
// proxy recognises (it then relays the origin's own answer to its client): no retries.
TEST_F(DownloadsTest, AnOriginRefusalFailsTheTaskAtOnce) {
  Start(GrantEverything());
  OriginError error;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<piece::Task> task,
                       downloads_->Open(meta_.task_id, {.url = origin_->url()}, &error));
  origin_->RefuseAll(401);
  downloads_->Want(task, 0, 0, /*whole=*/false);
  EXPECT_FALSE(task->WaitForPieces(0, 0, absl::Now() + absl::Seconds(10)));
  EXPECT_THAT(task->failure(), StatusIs(absl::StatusCode::kUnauthenticated, _));
  EXPECT_EQ(origin_->ranges().size(), 1u);
}

// A piece held in part is someone's lease in the swarm: it is completed within a few seconds
// even while this peer's readers never go quiet.
TEST_F(DownloadsTest, APieceHeldInPartIsCompletedEvenIfReadersNeverGoQuiet) {
  Start(GrantEverything());
  const piece::ByteSpan bytes{kPiece + 100, kPiece + 5000};
  std::shared_ptr<piece::Task> task = ReadInPart(bytes);
  ASSERT_NE(task, nullptr);
  const absl::Time read_at = absl::Now();
  // A reader keeps reading bytes it already has (every 200 ms): never a quiet second.
  while (!task->HasPiece(1) && absl::Now() - read_at < absl::Seconds(10)) {
    downloads_->Want(task, 1, 1, /*whole=*/false, /*urgent=*/true, /*reader=*/true, bytes);
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_TRUE(task->HasPiece(1));
  EXPECT_GE(absl::Now() - read_at, absl::Milliseconds(2500)) << "did not wait for the readers";
}

}  // namespace
}  // namespace naiad::peer
