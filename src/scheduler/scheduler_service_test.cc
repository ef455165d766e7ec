#include "scheduler/scheduler_service.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "base/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "naiad/scheduler/v1/scheduler.grpc.pb.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "nlohmann/json.hpp"
#include "peer/downloads.h"
#include "peer/scheduler_client.h"
#include "piece/piece_store.h"

namespace naiad::scheduler {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string kTaskId(64, 'e');

class FakeSeedTrigger : public SeedTrigger {
 public:
  absl::Status Trigger(const Host& seed, const TaskInfo& task) override {
    absl::MutexLock lock(&mu_);
    calls_.push_back({seed, task});
    return result_;
  }
  void set_result(absl::Status status) {
    absl::MutexLock lock(&mu_);
    result_ = std::move(status);
  }
  std::vector<SeedDecision> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  std::vector<SeedDecision> calls_ ABSL_GUARDED_BY(mu_);
  absl::Status result_ ABSL_GUARDED_BY(mu_);
};

// An HTTP server standing in for a seed peer's upload service: records requests, answers with
// `status`.
class FakeSeedPeer {
 public:
  explicit FakeSeedPeer(int status = 202) {
    auto server = net::HttpServer::Start(
        {}, [this, status](const net::ServerRequest& request, net::ResponseWriter& writer) {
          {
            absl::MutexLock lock(&mu_);
            requests_.push_back(request);
          }
          writer.Respond(status, {}, status == 202 ? "" : "seed is full").IgnoreError();
        });
    EXPECT_OK(server);
    if (server.ok()) server_ = *std::move(server);
  }
  uint16_t port() const { return server_->port(); }
  std::vector<net::ServerRequest> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  absl::Mutex mu_;
  std::vector<net::ServerRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<net::HttpServer> server_;
};

v1::Host ProtoHost(const std::string& id, v1::HostType type = v1::HOST_TYPE_NORMAL,
                   uint32_t upload_port = 65002) {
  v1::Host host;
  host.set_id(id);
  host.set_hostname(id);
  host.set_ip("127.0.0.1");
  host.set_upload_port(upload_port);
  host.set_type(type);
  host.set_upload_limit(10);
  return host;
}

v1::SyncTaskRequest SyncRequestFor(const std::string& host_id) {
  v1::SyncTaskRequest request;
  request.set_host_id(host_id);
  v1::TaskInfo* task = request.mutable_task();
  task->set_task_id(kTaskId);
  task->set_url("http://registry:5000/v2/lib/python/blobs/sha256:" + kTaskId);
  task->set_content_length(8 * 1024 * 1024 - 1);
  task->set_piece_size(1024 * 1024);
  task->set_digest("sha256:" + kTaskId);
  (*task->mutable_origin_headers())["Authorization"] = "Basic dTpw";
  return request;
}

class SchedulerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(&trigger_); }

  void StartServer(SeedTrigger* trigger) {
    ASSERT_OK_AND_ASSIGN(
        server_,
        SchedulerServer::Start(
            {.address = "127.0.0.1", .port = 0, .metrics_port = 0, .seed_trigger = trigger}));
    ASSERT_NE(server_->port(), 0);
    stub_ = v1::Scheduler::NewStub(grpc::CreateChannel(StrCat("127.0.0.1:", server_->port()),
                                                       grpc::InsecureChannelCredentials()));
  }

  static std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return context;
  }

  grpc::Status Announce(const v1::Host& host, v1::AnnounceHostResponse* response = nullptr) {
    v1::AnnounceHostRequest request;
    *request.mutable_host() = host;
    v1::AnnounceHostResponse ignored;
    return stub_->AnnounceHost(Context().get(), request, response ? response : &ignored);
  }

  grpc::Status Sync(const v1::SyncTaskRequest& request, v1::SyncTaskResponse* response) {
    return stub_->SyncTask(Context().get(), request, response);
  }

  grpc::Status Stat(v1::StatTaskResponse* response) {
    v1::StatTaskRequest request;
    request.set_task_id(kTaskId);
    return stub_->StatTask(Context().get(), request, response);
  }

  std::string GetMetricsPath(const std::string& path, int* status) {
    net::HttpClient client;
    auto response = client.Get(StrCat("http://127.0.0.1:", server_->metrics_port(), path));
    EXPECT_OK(response);
    if (!response.ok()) return "";
    *status = response->status;
    return response->body;
  }

  FakeSeedTrigger trigger_;
  std::unique_ptr<SchedulerServer> server_;
  std::unique_ptr<v1::Scheduler::Stub> stub_;
};

TEST_F(SchedulerServiceTest, AnnounceSyncLeaseStat) {
  v1::AnnounceHostResponse announced;
  ASSERT_TRUE(Announce(ProtoHost("seed", v1::HOST_TYPE_SEED), &announced).ok());
  EXPECT_EQ(announced.keepalive_interval_ms(), 5000u);
  EXPECT_TRUE(announced.new_host());
  ASSERT_TRUE(Announce(ProtoHost("seed", v1::HOST_TYPE_SEED), &announced).ok());
  EXPECT_FALSE(announced.new_host());
  ASSERT_TRUE(Announce(ProtoHost("a")).ok());
  ASSERT_TRUE(Announce(ProtoHost("b")).ok());

  v1::SyncTaskRequest request = SyncRequestFor("a");
  request.set_whole(true);
  request.add_want_origin(0);
  request.add_want_origin(1);
  v1::SyncTaskResponse a;
  ASSERT_TRUE(Sync(request, &a).ok());
  EXPECT_THAT(a.origin_granted(), ElementsAre(0, 1));
  EXPECT_EQ(a.lease_timeout_ms(), 30000u);
  EXPECT_TRUE(a.seed_active());
  EXPECT_FALSE(a.origin_in_progress());
  ASSERT_EQ(a.parents_size(), 1);
  EXPECT_EQ(a.parents(0).host_id(), "seed");
  EXPECT_EQ(a.parents(0).type(), v1::HOST_TYPE_SEED);
  EXPECT_EQ(a.parents(0).ip(), "127.0.0.1");
  EXPECT_EQ(a.parents(0).upload_port(), 65002u);
  EXPECT_EQ(a.parents(0).bitmap(), std::string(1, '\0'));
  EXPECT_EQ(a.crc32c_size(), 8);
  EXPECT_EQ(a.crc32c_known(), std::string(1, '\0'));

  server_->WaitForSeedTriggers();
  std::vector<SeedDecision> calls = trigger_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].seed.id, "seed");
  EXPECT_EQ(calls[0].task.task_id, kTaskId);
  EXPECT_EQ(calls[0].task.piece_size, 1024u * 1024);
  EXPECT_EQ(calls[0].task.origin_headers.at("Authorization"), "Basic dTpw");

  request = SyncRequestFor("a");
  v1::PieceReport* piece = request.add_pieces();
  piece->set_number(0);
  piece->set_crc32c(0xdeadbeef);
  piece->set_source(v1::PIECE_SOURCE_ORIGIN);
  ASSERT_TRUE(Sync(request, &a).ok());

  request = SyncRequestFor("b");
  request.add_want_origin(0);
  request.add_want_origin(1);
  request.add_want_origin(2);
  v1::SyncTaskResponse b;
  ASSERT_TRUE(Sync(request, &b).ok());
  EXPECT_THAT(b.origin_granted(), ElementsAre(2));
  EXPECT_TRUE(b.origin_in_progress());
  EXPECT_EQ(b.crc32c(0), 0xdeadbeefu);
  EXPECT_EQ(b.crc32c_known(), std::string(1, '\x80'));
  ASSERT_EQ(b.parents_size(), 2);
  EXPECT_EQ(b.parents(0).host_id(), "a");  // holds a piece; the seed holds none yet
  EXPECT_EQ(b.parents(0).bitmap(), std::string(1, '\x80'));
  EXPECT_GT(b.parents(0).score(), b.parents(1).score());

  v1::StatTaskResponse stat;
  ASSERT_TRUE(Stat(&stat).ok());
  EXPECT_EQ(stat.task().url(), request.task().url());
  EXPECT_THAT(stat.task().origin_headers(), IsEmpty());
  ASSERT_EQ(stat.holders_size(), 2);
  EXPECT_EQ(stat.holders(0).host_id(), "a");
  EXPECT_EQ(stat.holders(0).pieces(), 1u);
  EXPECT_EQ(stat.origin_leases_granted(), 3u);
  EXPECT_EQ(stat.origin_leases_expired(), 0u);
  EXPECT_THAT(stat.leased_now(), ElementsAre(1, 2));
  EXPECT_EQ(stat.seed_host_id(), "seed");

  v1::LeaveHostRequest leave;
  leave.set_host_id("a");
  v1::LeaveHostResponse left;
  ASSERT_TRUE(stub_->LeaveHost(Context().get(), leave, &left).ok());
  ASSERT_TRUE(Stat(&stat).ok());
  EXPECT_EQ(stat.origin_leases_expired(), 1u);
  EXPECT_THAT(stat.leased_now(), ElementsAre(2));

  v1::LeaveTaskRequest leave_task;
  leave_task.set_host_id("b");
  leave_task.set_task_id(kTaskId);
  v1::LeaveTaskResponse left_task;
  ASSERT_TRUE(stub_->LeaveTask(Context().get(), leave_task, &left_task).ok());
  ASSERT_TRUE(Stat(&stat).ok());
  EXPECT_EQ(stat.holders_size(), 0);
  EXPECT_THAT(stat.leased_now(), IsEmpty());
}

TEST_F(SchedulerServiceTest, ErrorsKeepTheirCodes) {
  v1::SyncTaskResponse response;
  grpc::Status status = Sync(SyncRequestFor("ghost"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("host not announced"));

  ASSERT_TRUE(Announce(ProtoHost("a")).ok());
  v1::SyncTaskRequest request = SyncRequestFor("a");
  request.mutable_task()->set_task_id("ABC");
  status = Sync(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("task.task_id"));

  request = SyncRequestFor("a");
  request.clear_task();
  status = Sync(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("task is missing"));

  request = SyncRequestFor("a");
  request.add_pieces()->set_source(static_cast<v1::PieceSource>(7));
  status = Sync(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("pieces[0].source"));

  status = Announce(ProtoHost("x", static_cast<v1::HostType>(9)));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("host.type"));

  status = Announce(ProtoHost("x", v1::HOST_TYPE_NORMAL, /*upload_port=*/0));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::AnnounceHostResponse announced;
  status = stub_->AnnounceHost(Context().get(), v1::AnnounceHostRequest(), &announced);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::StatTaskResponse stat;
  status = Stat(&stat);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SchedulerServiceTest, FailedTriggerForgetsTheSeed) {
  trigger_.set_result(absl::UnavailableError("connection refused"));
  ASSERT_TRUE(Announce(ProtoHost("seed", v1::HOST_TYPE_SEED)).ok());
  ASSERT_TRUE(Announce(ProtoHost("a")).ok());
  v1::SyncTaskRequest request = SyncRequestFor("a");
  request.set_whole(true);
  v1::SyncTaskResponse response;
  ASSERT_TRUE(Sync(request, &response).ok());
  EXPECT_TRUE(response.seed_active());
  server_->WaitForSeedTriggers();
  v1::StatTaskResponse stat;
  ASSERT_TRUE(Stat(&stat).ok());
  EXPECT_EQ(stat.seed_host_id(), "");
  ASSERT_TRUE(Sync(request, &response).ok());
  EXPECT_FALSE(response.seed_active());  // the only seed failed: not asked again for a while
  EXPECT_EQ(trigger_.calls().size(), 1u);
  EXPECT_EQ(server_->state().Counters().seed_trigger_failures, 1u);
}

TEST_F(SchedulerServiceTest, FetchingRenewsAndWholeTriggersTheSeedOverGrpc) {
  ASSERT_TRUE(Announce(ProtoHost("seed", v1::HOST_TYPE_SEED)).ok());
  ASSERT_TRUE(Announce(ProtoHost("a")).ok());
  v1::SyncTaskRequest request = SyncRequestFor("a");
  request.add_want_origin(4);
  v1::SyncTaskResponse response;
  ASSERT_TRUE(Sync(request, &response).ok());
  EXPECT_THAT(response.origin_granted(), ElementsAre(4));
  EXPECT_FALSE(response.seed_active());  // a range reader: no seed
  request = SyncRequestFor("a");
  request.add_fetching(4);
  ASSERT_TRUE(Sync(request, &response).ok());
  EXPECT_EQ(server_->state().Counters().leases_renewed, 1u);
  request.set_whole(true);
  ASSERT_TRUE(Sync(request, &response).ok());
  EXPECT_TRUE(response.seed_active());
  server_->WaitForSeedTriggers();
  EXPECT_EQ(trigger_.calls().size(), 1u);
  int status = 0;
  EXPECT_THAT(GetMetricsPath("/metrics", &status),
              HasSubstr("\nnaiad_scheduler_origin_leases_renewed_total 2\n"));
}

TEST_F(SchedulerServiceTest, MetricsAndHealthy) {
  ASSERT_TRUE(Announce(ProtoHost("a")).ok());
  v1::SyncTaskRequest request = SyncRequestFor("a");
  request.add_want_origin(3);
  v1::SyncTaskResponse response;
  ASSERT_TRUE(Sync(request, &response).ok());
  ASSERT_NE(server_->metrics_port(), 0);
  int status = 0;
  std::string metrics = GetMetricsPath("/metrics", &status);
  EXPECT_EQ(status, 200);
  EXPECT_THAT(metrics, HasSubstr("# TYPE naiad_scheduler_hosts gauge\nnaiad_scheduler_hosts 1\n"));
  EXPECT_THAT(metrics, HasSubstr("\nnaiad_scheduler_tasks 1\n"));
  EXPECT_THAT(metrics, HasSubstr("\nnaiad_scheduler_sync_calls_total 1\n"));
  EXPECT_THAT(metrics, HasSubstr("\nnaiad_scheduler_origin_leases_granted_total 1\n"));
  EXPECT_THAT(metrics, HasSubstr("\nnaiad_scheduler_origin_leases_expired_total 0\n"));
  EXPECT_THAT(metrics, HasSubstr("\nnaiad_scheduler_seed_triggers_total 0\n"));
  EXPECT_EQ(GetMetricsPath("/healthy", &status), "OK");
  EXPECT_EQ(status, 200);
  GetMetricsPath("/nothing", &status);
  EXPECT_EQ(status, 404);
}

TEST_F(SchedulerServiceTest, NoMetricsServerWhenDisabled) {
  ASSERT_OK_AND_ASSIGN(auto server, SchedulerServer::Start({.address = "127.0.0.1",
                                                            .port = 0,
                                                            .metrics_port = std::nullopt,
                                                            .seed_trigger = &trigger_}));
  EXPECT_EQ(server->metrics_port(), 0);
  server->Shutdown();
  server->Shutdown();
}

TEST_F(SchedulerServiceTest, BusyPortIsUnavailable) {
  auto second = SchedulerServer::Start(
      {.address = "127.0.0.1", .port = server_->port(), .metrics_port = std::nullopt});
  EXPECT_THAT(second, ::naiad::testing::StatusIs(absl::StatusCode::kUnavailable,
                                                 HasSubstr("cannot listen")));
}

TEST(HttpSeedTrigger, PostsTheSeedRequest) {
  FakeSeedPeer peer;
  HttpSeedTrigger trigger;
  Host seed{.id = "seed", .ip = "127.0.0.1", .upload_port = peer.port()};
  TaskInfo task{.task_id = kTaskId,
                .url = "https://registry/v2/x/blobs/sha256:" + kTaskId,
                .content_length = 12345,
                .piece_size = 4096,
                .digest = "sha256:" + kTaskId,
                .origin_headers = {{"Authorization", "Bearer t"}, {"X-Extra", "1"}}};
  ASSERT_OK(trigger.Trigger(seed, task));
  std::vector<net::ServerRequest> requests = peer.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].path, "/v1/seed");
  EXPECT_EQ(requests[0].headers.Get("Content-Type"), "application/json");
  nlohmann::json body = nlohmann::json::parse(requests[0].body);
  EXPECT_EQ(body.size(), 6u);
  EXPECT_EQ(body["task_id"], kTaskId);
  EXPECT_EQ(body["url"], task.url);
  EXPECT_EQ(body["content_length"], 12345);
  EXPECT_EQ(body["piece_size"], 4096);
  EXPECT_EQ(body["digest"], "sha256:" + kTaskId);
  EXPECT_EQ(body["headers"], nlohmann::json({{"Authorization", "Bearer t"}, {"X-Extra", "1"}}));

  task.digest = "";
  task.origin_headers.clear();
  body = nlohmann::json::parse(SeedRequestJson(task));
  EXPECT_EQ(body["digest"], "");
  EXPECT_TRUE(body["headers"].is_object());
  EXPECT_TRUE(body["headers"].empty());
}

TEST(HttpSeedTrigger, RefusalAndUnreachableSeedAreErrors) {
  FakeSeedPeer peer(503);
  HttpSeedTrigger trigger;
  TaskInfo task{.task_id = kTaskId, .url = "http://x/y", .content_length = 1, .piece_size = 1};
  EXPECT_THAT(
      trigger.Trigger({.id = "seed", .ip = "127.0.0.1", .upload_port = peer.port()}, task),
      ::naiad::testing::StatusIs(absl::StatusCode::kUnavailable, HasSubstr("seed is full")));
  // Nothing listens on port 1.
  EXPECT_FALSE(trigger.Trigger({.id = "seed", .ip = "127.0.0.1", .upload_port = 1}, task).ok());
}

TEST(SchedulerServer, TriggersASeedOverHttp) {
  FakeSeedPeer peer;
  ASSERT_OK_AND_ASSIGN(
      auto server,
      SchedulerServer::Start({.address = "127.0.0.1", .port = 0, .metrics_port = std::nullopt}));
  auto stub = v1::Scheduler::NewStub(grpc::CreateChannel(StrCat("127.0.0.1:", server->port()),
                                                         grpc::InsecureChannelCredentials()));
  for (const v1::Host& host :
       {ProtoHost("seed", v1::HOST_TYPE_SEED, peer.port()), ProtoHost("a")}) {
    grpc::ClientContext context;
    v1::AnnounceHostRequest request;
    *request.mutable_host() = host;
    v1::AnnounceHostResponse response;
    ASSERT_TRUE(stub->AnnounceHost(&context, request, &response).ok());
  }
  grpc::ClientContext context;
  v1::SyncTaskRequest request = SyncRequestFor("a");
  request.set_whole(true);
  v1::SyncTaskResponse response;
  ASSERT_TRUE(stub->SyncTask(&context, request, &response).ok());
  server->WaitForSeedTriggers();
  std::vector<net::ServerRequest> requests = peer.requests();
  ASSERT_EQ(requests.size(), 1u);
  nlohmann::json body = nlohmann::json::parse(requests[0].body);
  EXPECT_EQ(body["task_id"], kTaskId);
  EXPECT_EQ(body["headers"]["Authorization"], "Basic dTpw");
  EXPECT_EQ(server->state().Counters().seed_trigger_failures, 0u);
}

// A peer's downloads against a real scheduler that restarts: the tasks the peer holds (and is
// not downloading) are registered when it starts and again when the restarted scheduler answers
// its keepalive with `new_host`, once each.
TEST(SchedulerRestart, APeerRegistersTheTasksItHoldsAgain) {
  constexpr uint32_t kPiece = 1 << 20;
  const std::string content = naiad::testing::PseudoRandomBytes(3 * kPiece + 5, 3);
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("scheduler-restart-test-"));
  ASSERT_OK_AND_ASSIGN(auto store, piece::PieceStore::Open({.dir = dir.path()}));
  const std::string whole_id(64, 'f');
  const std::string part_id(64, 'd');
  for (const std::string& id : {whole_id, part_id}) {
    piece::TaskMeta meta{.task_id = id,
                         .url = "http://origin/" + id.substr(0, 4),
                         .content_length = content.size(),
                         .piece_size = kPiece};
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<piece::Task> task, store->CreateOrOpen(meta));
    for (uint32_t n = 0; n < meta.piece_count(); ++n) {
      if (id == part_id && n != 1) continue;
      ASSERT_OK(task->WritePiece(
          n, std::string_view(content).substr(meta.PieceOffset(n), meta.PieceLength(n))));
    }
  }

  SchedulerServerOptions options{.address = "127.0.0.1", .port = 0, .metrics_port = std::nullopt};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SchedulerServer> server, SchedulerServer::Start(options));
  options.port = server->port();
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<peer::SchedulerClient> client,
      peer::SchedulerClient::Connect({StrCat("127.0.0.1:", options.port)}, absl::Seconds(5)));
  const v1::Host host = ProtoHost("me");
  // What the peer's keepalive does: announce until a scheduler answers.
  auto announce = [&] {
    absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (!client->AnnounceHost(host).ok() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  };
  // The holders the scheduler knows of, once it knows both tasks (empty after 10 s).
  auto holders = [&](SchedulerServer& s) {
    std::vector<std::string> found;
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      absl::StatusOr<TaskStat> whole = s.state().StatTask(whole_id);
      absl::StatusOr<TaskStat> part = s.state().StatTask(part_id);
      if (whole.ok() && part.ok() && whole->holders.size() == 1 && part->holders.size() == 1) {
        for (const TaskStat* stat : {&*whole, &*part}) {
          const TaskStat::Holder& holder = stat->holders[0];
          found.push_back(StrCat(holder.host_id, " ", holder.pieces, " ",
                                 holder.complete ? "complete" : "partial"));
        }
        return found;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return found;
  };

  announce();  // the daemon's start: new to this scheduler
  peer::PeerMetrics metrics;
  peer::PieceClient piece_client;
  peer::Downloads downloads({.store = store.get(),
                             .metrics = &metrics,
                             .scheduler = client.get(),
                             .piece_client = &piece_client,
                             .host_id = "me",
                             .reannounce = announce});
  EXPECT_THAT(holders(*server), ElementsAre("me 4 complete", "me 1 partial"));

  server.reset();  // the scheduler restarts with nothing
  ASSERT_OK_AND_ASSIGN(server, SchedulerServer::Start(options));
  EXPECT_FALSE(server->state().StatTask(whole_id).ok());
  announce();  // the next keepalive
  EXPECT_THAT(holders(*server), ElementsAre("me 4 complete", "me 1 partial"));
  // One sync per task; a keepalive that is not news re-registers nothing.
  announce();
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(server->state().Counters().sync_calls, 2u);
  EXPECT_EQ(metrics.scheduler_errors.load(), 0u);
}

}  // namespace
}  // namespace naiad::scheduler
