// `naiad get` end to end in one process: a real `naiad peer` (no scheduler) serving its local
// API on a unix socket in a temporary directory, and a real origin on loopback. The command runs
// through RunGet() (and the registered command, for its exit code and error line).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "cli/command.h"
#include "get/daemon_client.h"
#include "get/get_command.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/http_server.h"
#include "peer/peer.h"

namespace naiad::get {
namespace {

using ::naiad::testing::IsOkAndHolds;
using ::naiad::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "Bearer let-me-in";

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937_64 random(seed);
  std::string data(size, '\0');
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t v = random();
    std::memcpy(data.data() + i, &v, 8);
  }
  return data;
}

// An origin: GET/HEAD of /blob, /other, /private/blob (401 without kToken) and /slow (the body
// waits until the test ends), with single ranges; 404 for anything else. The query is ignored.
// Counts the body bytes it sends and keeps the requests' Authorization headers.
class Origin {
 public:
  explicit Origin(std::map<std::string, std::string> files) : files_(std::move(files)) {}
  ~Origin() {
    Release();
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(1));
  }

  // Lets /slow answer.
  void Release() {
    if (!release_.HasBeenNotified()) release_.Notify();
  }

  absl::Status Start() {
    ASSIGN_OR_RETURN(server_, net::HttpServer::Start({}, [this](const net::ServerRequest& request,
                                                                net::ResponseWriter& writer) {
                       Serve(request, writer);
                     }));
    return absl::OkStatus();
  }

  std::string Url(std::string_view target) const { return StrCat(server_->url(), target); }

  uint64_t body_bytes() const {
    absl::MutexLock lock(&mu_);
    return body_bytes_;
  }
  std::vector<std::string> authorizations() const {
    absl::MutexLock lock(&mu_);
    return authorizations_;
  }

 private:
  void Serve(const net::ServerRequest& request, net::ResponseWriter& writer) {
    std::optional<std::string> authorization = request.headers.Get("Authorization");
    {
      absl::MutexLock lock(&mu_);
      authorizations_.push_back(authorization.value_or(""));
    }
    auto file = files_.find(request.path);
    if (file == files_.end()) {
      writer.Respond(404, {}, "no such file here\n").IgnoreError();
      return;
    }
    if (request.path.starts_with("/private/") && authorization != kToken) {
      writer.Respond(401, {}, "who are you?\n").IgnoreError();
      return;
    }
    const std::string& content = file->second;
    net::ByteRange range{0, content.size()};
    int status = 200;
    net::HttpHeaders headers;
    headers.Add("Accept-Ranges", "bytes").IgnoreError();
    if (std::optional<std::string> header = request.headers.Get("Range")) {
      absl::StatusOr<net::ByteRange> parsed = net::ParseRangeHeader(*header, content.size());
      if (!parsed.ok()) {
        writer.Respond(416, {}, "").IgnoreError();
        return;
      }
      range = *parsed;
      status = 206;
      headers.Add("Content-Range", range.ToContentRange(content.size())).IgnoreError();
    }
    if (request.method == "GET" && request.path == "/slow") {
      release_.WaitForNotificationWithTimeout(absl::Seconds(20));
    }
    if (request.method == "GET") {
      absl::MutexLock lock(&mu_);
      body_bytes_ += range.length;
    }
    writer.Respond(status, headers, std::string_view(content).substr(range.offset, range.length))
        .IgnoreError();
  }

  const std::map<std::string, std::string> files_;
  absl::Notification release_;
  mutable absl::Mutex mu_;
  uint64_t body_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> authorizations_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<net::HttpServer> server_;
};

// What RunGet() wrote to its messages stream.
class Messages {
 public:
  Messages() : file_(std::tmpfile()) {}
  ~Messages() { std::fclose(file_); }
  FILE* file() const { return file_; }
  std::string Text() const {
    std::fflush(file_);
    std::rewind(file_);
    std::string text;
    char buffer[4096];
    while (size_t n = std::fread(buffer, 1, sizeof(buffer), file_)) text.append(buffer, n);
    std::fseek(file_, 0, SEEK_END);  // RunGet() may write more
    return text;
  }

 private:
  FILE* file_;
};

class GetDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    blob_ = RandomBytes((5 << 20) + 4321, 1);
    other_ = RandomBytes((2 << 20) + 17, 2);
    origin_ = std::make_unique<Origin>(std::map<std::string, std::string>{
        {"/blob", blob_}, {"/other", other_}, {"/private/blob", other_}, {"/slow", other_}});
    ASSERT_OK(origin_->Start());
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("naiad-get-"));
    ASSERT_OK(CreateDirectories(dir_.Join("out")));
    socket_ = dir_.Join("peer.sock");
    StartPeer();
  }

  void TearDown() override {
    // A request the daemon still waits on (/slow) must end before the daemon can stop.
    if (origin_ != nullptr) origin_->Release();
    if (peer_ != nullptr) peer_->Stop();
    peer_.reset();
    origin_.reset();
  }

  void StartPeer() {
    peer::PeerConfig config;
    config.data_dir = dir_.Join("peer");
    config.download.unix_socket = socket_;
    config.download.piece_timeout = absl::Seconds(5);
    for (peer::TcpListenConfig* listen :
         {&config.proxy.tcp_listen, &config.health.tcp_listen, &config.upload.tcp_listen}) {
      *listen = {.listen = "127.0.0.1", .port = 0};
    }
    ASSERT_OK_AND_ASSIGN(peer_, peer::Peer::Start(config));
  }

  GetFlags Flags(std::string_view target, std::string_view output) const {
    return {.url = origin_->Url(target),
            .output = dir_.Join(StrCat("out/", output)),
            .daemon_socket = socket_};
  }

  // The daemon's traffic for `task_id` once it counts `bytes` from the origin (it counts a
  // piece just after handing it out), or as it is after a second.
  TaskTraffic TrafficOnceItCounts(const std::string& task_id, uint64_t bytes) {
    DaemonClient daemon(socket_);
    absl::StatusOr<TaskTraffic> traffic;
    for (int i = 0; i < 50; ++i) {
      traffic = daemon.Traffic(task_id);
      if (traffic.ok() && traffic->origin_bytes >= bytes) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_OK(traffic.status());
    return traffic.value_or(TaskTraffic{});
  }

  // The names in the output directory: temporaries would show up here.
  std::vector<std::string> OutputFiles() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.Join("out"))) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string blob_;
  std::string other_;
  std::unique_ptr<Origin> origin_;
  TempDir dir_;
  std::string socket_;
  std::unique_ptr<peer::Peer> peer_;
};

TEST_F(GetDaemonTest, DownloadsThroughTheDaemonThenFromItsStore) {
  Messages messages;
  GetFlags flags = Flags("/blob", "first");
  flags.digest = Digest::Of(DigestAlgorithm::kSha256, blob_).ToString();
  ASSERT_OK_AND_ASSIGN(GetResult first, RunGet(flags, messages.file()));
  EXPECT_TRUE(first.via_daemon);
  EXPECT_THAT(ReadFileToString(flags.output), IsOkAndHolds(blob_));
  EXPECT_EQ(first.sources, (ByteSources{.origin = blob_.size()}));
  EXPECT_EQ(TrafficOnceItCounts(first.task_id, blob_.size()),
            (TaskTraffic{.origin_bytes = blob_.size()}));
  EXPECT_EQ(origin_->body_bytes(), blob_.size());
  std::string text = messages.Text();
  EXPECT_THAT(text, Not(HasSubstr("no peer daemon")));
  EXPECT_THAT(text, HasSubstr(StrCat(flags.output, ": 5.0 MiB in ")));
  EXPECT_THAT(text, HasSubstr("origin 5.0 MiB \u00b7 peers 0 B \u00b7 local 0 B"));

  flags.output = dir_.Join("out/second");
  ASSERT_OK_AND_ASSIGN(GetResult second, RunGet(flags, messages.file()));
  EXPECT_THAT(ReadFileToString(flags.output), IsOkAndHolds(blob_));
  EXPECT_EQ(second.task_id, first.task_id);
  EXPECT_EQ(second.sources, (ByteSources{.local = blob_.size()}));
  EXPECT_EQ(TrafficOnceItCounts(first.task_id, blob_.size()),
            (TaskTraffic{.origin_bytes = blob_.size()}));
  EXPECT_EQ(origin_->body_bytes(), blob_.size());
  EXPECT_THAT(messages.Text(), HasSubstr("origin 0 B \u00b7 peers 0 B \u00b7 local 5.0 MiB"));
  EXPECT_EQ(OutputFiles(), (std::vector<std::string>{"first", "second"}));
}

TEST_F(GetDaemonTest, FilteredQueryParametersMakeOneTask) {
  Messages messages;
  GetFlags flags = Flags("/other?Signature=aaa&v=1", "a");
  flags.filter = "Expires&Signature";
  ASSERT_OK_AND_ASSIGN(GetResult first, RunGet(flags, messages.file()));
  EXPECT_EQ(first.sources.origin, other_.size());

  flags = Flags("/other?Signature=bbb&v=1&Expires=9", "b");
  flags.filter = "Expires&Signature";
  ASSERT_OK_AND_ASSIGN(GetResult second, RunGet(flags, messages.file()));
  EXPECT_EQ(second.task_id, first.task_id);
  EXPECT_EQ(second.sources, (ByteSources{.local = other_.size()}));
  EXPECT_THAT(ReadFileToString(flags.output), IsOkAndHolds(other_));

  // Without the filter the signature is part of the identity: another task, from the origin.
  flags = Flags("/other?Signature=ccc&v=1", "c");
  ASSERT_OK_AND_ASSIGN(GetResult third, RunGet(flags, messages.file()));
  EXPECT_NE(third.task_id, first.task_id);
  EXPECT_EQ(third.sources.origin, other_.size());
  EXPECT_EQ(origin_->body_bytes(), 2 * other_.size());
}

TEST_F(GetDaemonTest, HeadersReachTheOrigin) {
  Messages messages;
  GetFlags flags = Flags("/private/blob", "private");
  EXPECT_THAT(RunGet(flags, messages.file()),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       AllOf(HasSubstr(flags.url), HasSubstr("the origin answered HTTP 401"),
                             HasSubstr(socket_))));
  EXPECT_TRUE(OutputFiles().empty());

  flags.headers = {StrCat("Authorization: ", kToken), "X-Extra:  spaced"};
  ASSERT_OK_AND_ASSIGN(GetResult result, RunGet(flags, messages.file()));
  EXPECT_TRUE(result.via_daemon);
  EXPECT_THAT(ReadFileToString(flags.output), IsOkAndHolds(other_));
  std::vector<std::string> seen = origin_->authorizations();
  ASSERT_GE(seen.size(), 3u);  // 401, then HEAD and GETs of the pieces
  // Every request carried the token, but the first (the daemon's HEAD, refused).
  EXPECT_EQ(static_cast<size_t>(std::count(seen.begin(), seen.end(), kToken)), seen.size() - 1);
}

TEST_F(GetDaemonTest, DigestMismatchLeavesNothingBehind) {
  Messages messages;
  GetFlags flags = Flags("/blob", "blob");
  flags.digest = Digest::Of(DigestAlgorithm::kSha256, "not the blob").ToString();
  EXPECT_THAT(RunGet(flags, messages.file()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("digest mismatch")));
  EXPECT_TRUE(OutputFiles().empty());
  EXPECT_THAT(messages.Text(), Not(HasSubstr("MiB in")));  // no summary of a failure
}

TEST_F(GetDaemonTest, OriginErrorsThroughTheDaemonNameTheirStatus) {
  Messages messages;
  GetFlags flags = Flags("/missing", "missing");
  EXPECT_THAT(
      RunGet(flags, messages.file()),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr(flags.url), HasSubstr("HTTP 404"))));
  EXPECT_TRUE(OutputFiles().empty());
  EXPECT_EQ(origin_->body_bytes(), 0u);
}

TEST_F(GetDaemonTest, TimeoutThroughTheDaemon) {
  Messages messages;
  GetFlags flags = Flags("/slow", "slow");
  flags.timeout = "0.5";
  EXPECT_THAT(RunGet(flags, messages.file()),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr(flags.url), HasSubstr("timed out after 500ms"),
                             HasSubstr("via the peer daemon"))));
  EXPECT_TRUE(OutputFiles().empty());
}

TEST_F(GetDaemonTest, WithoutADaemonDownloadsDirectlyAndSaysSo) {
  Messages messages;
  GetFlags flags = Flags("/blob", "blob");
  flags.daemon_socket = dir_.Join("absent.sock");
  ASSERT_OK_AND_ASSIGN(GetResult result, RunGet(flags, messages.file()));
  EXPECT_FALSE(result.via_daemon);
  EXPECT_EQ(result.sources, (ByteSources{.origin = blob_.size(), .direct = true}));
  EXPECT_THAT(ReadFileToString(flags.output), IsOkAndHolds(blob_));
  std::string text = messages.Text();
  EXPECT_THAT(text, HasSubstr(StrCat("naiad get: no peer daemon at ", flags.daemon_socket,
                                     "; downloading from the origin\n")));
  EXPECT_EQ(text.find("no peer daemon"), text.rfind("no peer daemon"));  // once
  EXPECT_THAT(text, HasSubstr("origin 5.0 MiB (direct)"));
  EXPECT_THAT(peer_->MetricsText(), HasSubstr("naiad_peer_p2p_requests_total 0"));
}

// A socket file nobody listens on (a daemon that died) refuses the connection.
TEST_F(GetDaemonTest, ADeadDaemonsSocketMeansDirect) {
  std::string stale = dir_.Join("stale.sock");
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, stale.data(), stale.size());
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
  }
  Messages messages;
  GetFlags flags = Flags("/other", "other");
  flags.daemon_socket = stale;
  ASSERT_OK_AND_ASSIGN(GetResult result, RunGet(flags, messages.file()));
  EXPECT_FALSE(result.via_daemon);
  EXPECT_THAT(messages.Text(), HasSubstr(StrCat("no peer daemon at ", stale)));
}

TEST_F(GetDaemonTest, DirectNeverAsksTheDaemon) {
  Messages messages;
  GetFlags flags = Flags("/blob", "blob");
  flags.direct = true;
  ASSERT_OK_AND_ASSIGN(GetResult result, RunGet(flags, messages.file()));
  EXPECT_FALSE(result.via_daemon);
  EXPECT_THAT(messages.Text(), Not(HasSubstr("peer daemon")));
  EXPECT_THAT(peer_->MetricsText(), HasSubstr("naiad_peer_p2p_requests_total 0"));
}

TEST_F(GetDaemonTest, ProgressOnRequestShowsWhereBytesComeFrom) {
  Messages messages;
  GetFlags flags = Flags("/blob", "blob");
  flags.progress = true;
  ASSERT_OK(RunGet(flags, messages.file()).status());
  std::string text = messages.Text();
  EXPECT_THAT(text, HasSubstr(" / 5.0 MiB "));  // a progress line, with the total
  EXPECT_THAT(text, HasSubstr("/s  "));
  EXPECT_THAT(text, HasSubstr("\u00b7 peers "));

  Messages quiet;
  flags.output = dir_.Join("out/quiet");
  flags.progress = false;
  flags.quiet = true;
  ASSERT_OK(RunGet(flags, quiet.file()).status());
  EXPECT_EQ(quiet.Text(), "");
}

TEST_F(GetDaemonTest, BadInputIsRejectedBeforeAnything) {
  Messages messages;
  GetFlags flags = Flags("/blob", "blob");
  flags.url = "ftp://example.com/x";
  EXPECT_THAT(RunGet(flags, messages.file()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("http://")));
  flags = Flags("/blob", "blob");
  flags.digest = "sha256:abc";
  EXPECT_THAT(RunGet(flags, messages.file()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--digest")));
  flags = Flags("/blob", "blob");
  flags.headers = {"no colon"};
  EXPECT_THAT(RunGet(flags, messages.file()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--header")));
  flags = Flags("/blob", "blob");
  flags.timeout = "soon";
  EXPECT_THAT(RunGet(flags, messages.file()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--timeout")));
  EXPECT_TRUE(OutputFiles().empty());
  EXPECT_EQ(origin_->body_bytes(), 0u);
}

// The registered command (as `dfget`): exit code and the one-line error.
TEST_F(GetDaemonTest, CommandLine) {
  const cli::Command* command = cli::FindCommand("dfget");
  ASSERT_NE(command, nullptr);
  auto run = [&](std::vector<std::string> args) {
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    return command->run(static_cast<int>(argv.size()), argv.data());
  };
  std::string output = dir_.Join("out/cli");
  ::testing::internal::CaptureStderr();
  int code = run({"naiad get", origin_->Url("/other"), "-O", output, "--daemon-socket", socket_,
                  "--header", StrCat("Authorization: ", kToken), "-e", "1m", "--digest",
                  Digest::Of(DigestAlgorithm::kSha256, other_).ToString()});
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 0) << err;
  EXPECT_THAT(ReadFileToString(output), IsOkAndHolds(other_));
  EXPECT_THAT(err, HasSubstr("2.0 MiB in"));

  ::testing::internal::CaptureStderr();
  code =
      run({"naiad get", origin_->Url("/missing"), "-O", output + "2", "--daemon-socket", socket_});
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  std::vector<std::string> errors;
  for (absl::string_view line : absl::StrSplit(err, '\n')) {
    if (absl::StartsWith(line, "naiad get: error: ")) errors.emplace_back(line);
  }
  ASSERT_EQ(errors.size(), 1u) << err;
  EXPECT_THAT(errors[0], AllOf(HasSubstr(origin_->Url("/missing")), HasSubstr("HTTP 404")));
}

TEST(ParseTimeout, GoDurationsAndSeconds) {
  EXPECT_THAT(ParseTimeout("30"), IsOkAndHolds(absl::Seconds(30)));
  EXPECT_THAT(ParseTimeout("0.5"), IsOkAndHolds(absl::Milliseconds(500)));
  EXPECT_THAT(ParseTimeout("1h30m"), IsOkAndHolds(absl::Minutes(90)));
  EXPECT_THAT(ParseTimeout("250ms"), IsOkAndHolds(absl::Milliseconds(250)));
  EXPECT_THAT(ParseTimeout("10\u00b5s"), IsOkAndHolds(absl::Microseconds(10)));
  EXPECT_THAT(ParseTimeout("0"), IsOkAndHolds(absl::ZeroDuration()));
  EXPECT_FALSE(ParseTimeout("-1s").ok());
  EXPECT_FALSE(ParseTimeout("inf").ok());
  EXPECT_FALSE(ParseTimeout("soon").ok());
}

TEST(SourcesFromTraffic, CountsGrowthAndClampsTheRest) {
  EXPECT_EQ(SourcesFromTraffic(100, {.origin_bytes = 60, .peer_bytes = 30}, {}),
            (ByteSources{.origin = 60, .peers = 30, .local = 10}));
  // Counters from an earlier download of the task are not ours.
  EXPECT_EQ(SourcesFromTraffic(100, {.origin_bytes = 160}, {.origin_bytes = 100}),
            (ByteSources{.origin = 60, .local = 40}));
  // The daemon may be ahead of what we received.
  EXPECT_EQ(SourcesFromTraffic(10, {.origin_bytes = 40}, {}), (ByteSources{.origin = 40}));
}

}  // namespace
}  // namespace naiad::get
