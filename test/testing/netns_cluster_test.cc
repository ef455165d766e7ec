#include "test/testing/netns_cluster.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/logging.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/testing/net_util.h"
#include "test/testing/test_env.h"

namespace naiad::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint64_t kFileSize = 50 << 20;
constexpr uint16_t kPort = 8080;
constexpr double kLimitMbit = 100;
// 50 MiB at 100 Mbit/s takes 4.19 s; anything under 4 s means the shaping is not real.
constexpr double kMinShapedSeconds = 4.0;

absl::Status WriteRandomFile(const std::string& path, uint64_t size) {
  std::mt19937_64 rng(42);
  std::string data(size, '\0');
  for (size_t i = 0; i + 8 <= data.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&data[i], &v, 8);
  }
  return WriteFileAtomically(path, data);
}

absl::StatusOr<Digest> FileSha256(const std::string& path) {
  ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  return Digest::Of(DigestAlgorithm::kSha256, file.data());
}

// Serves `dir` from host `i` on kPort and waits until host `probe_from` can connect.
absl::StatusOr<Subprocess> StartFileServer(const NetnsCluster& cluster, int i,
                                           const std::string& dir, int probe_from) {
  std::vector<std::string> argv = {BuildPath("test/testing/naiad_test_fileserver"),
                                   "--dir",
                                   dir,
                                   "--address",
                                   cluster.Address(i),
                                   "--port",
                                   StrCat(kPort)};
  ASSIGN_OR_RETURN(Subprocess server,
                   cluster.Spawn(i, argv, {.output_path = StrCat(dir, "/../server-", i, ".log")}));
  RETURN_IF_ERROR(cluster.RunIn(
      probe_from, [&] { return WaitForTcp(cluster.Address(i), kPort, absl::Seconds(30)); }));
  return server;
}

// Downloads `url` from inside host `i` into `out` with curl; returns curl's total time.
absl::StatusOr<double> Download(const NetnsCluster& cluster, int i, const std::string& url,
                                const std::string& out) {
  ASSIGN_OR_RETURN(std::string output,
                   cluster.ExecOk(i, {"curl", "-sS", "--fail", "--max-time", "120", "-o", out, "-w",
                                      "%{time_total}", url}));
  double seconds = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(output), &seconds)) {
    return absl::InternalError(StrCat("unexpected curl output: ", output));
  }
  return seconds;
}

class NetnsClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NAIAD_SKIP_UNLESS_ROOT();
    ASSERT_OK_AND_ASSIGN(dir_, CreateOwnedTempDir("naiad-netns-test-"));
    ASSERT_OK(CreateDirectories(dir_.Join("www")));
    ASSERT_OK(WriteRandomFile(dir_.Join("www/f50m.bin"), kFileSize));
    ASSERT_OK_AND_ASSIGN(want_, FileSha256(dir_.Join("www/f50m.bin")));
    ASSERT_OK_AND_ASSIGN(cluster_, NetnsCluster::Create(3));
  }

  std::string FileUrl(int host) const {
    return StrCat("http://", cluster_->Address(host), ":", kPort, "/f50m.bin");
  }

  // Downloads from host `server` to host `client`; checks the bytes; returns the seconds taken.
  double CheckedDownload(int client, int server, const std::string& name) {
    std::string out = dir_.Join(name);
    absl::StatusOr<double> seconds = Download(*cluster_, client, FileUrl(server), out);
    EXPECT_OK(seconds);
    EXPECT_THAT(FileSha256(out), IsOkAndHolds(want_));
    RemoveAll(out).IgnoreError();
    LogInfo("download", {{"name", name}, {"seconds", seconds.value_or(-1)}});
    return seconds.value_or(0);
  }

  TempDir dir_;
  Digest want_;
  std::unique_ptr<NetnsCluster> cluster_;
};

TEST_F(NetnsClusterTest, EgressLimitShapesDownloads) {
  ASSERT_OK_AND_ASSIGN(Subprocess server, StartFileServer(*cluster_, 0, dir_.Join("www"), 1));
  double unshaped = CheckedDownload(1, 0, "unshaped.bin");
  ASSERT_OK(cluster_->SetEgressLimit(0, kLimitMbit));
  double shaped = CheckedDownload(1, 0, "shaped.bin");
  EXPECT_GE(shaped, kMinShapedSeconds);
  ASSERT_OK(cluster_->ClearLimits(0));
  double cleared = CheckedDownload(1, 0, "cleared.bin");
  EXPECT_LT(cleared, shaped);  // only "faster", never a tight bound
  RecordProperty("unshaped_s", StrCat(unshaped));
  RecordProperty("shaped_s", StrCat(shaped));
}

TEST_F(NetnsClusterTest, IngressLimitShapesDownloads) {
  ASSERT_OK_AND_ASSIGN(Subprocess server, StartFileServer(*cluster_, 0, dir_.Join("www"), 2));
  ASSERT_OK(cluster_->SetIngressLimit(2, kLimitMbit));
  double shaped = CheckedDownload(2, 0, "ingress.bin");
  EXPECT_GE(shaped, kMinShapedSeconds);
  // Host 1 is not limited while host 2 is.
  double other = CheckedDownload(1, 0, "other.bin");
  EXPECT_LT(other, shaped);
  ASSERT_OK(cluster_->ClearLimits(2));
  CheckedDownload(2, 0, "after.bin");
  RecordProperty("ingress_shaped_s", StrCat(shaped));
}

TEST_F(NetnsClusterTest, HostsReachEachOther) {
  ASSERT_OK_AND_ASSIGN(Subprocess server0, StartFileServer(*cluster_, 0, dir_.Join("www"), 1));
  ASSERT_OK_AND_ASSIGN(Subprocess server2, StartFileServer(*cluster_, 2, dir_.Join("www"), 1));
  EXPECT_OK(cluster_->RunIn(1, [&] {
    RETURN_IF_ERROR(TcpConnect(cluster_->Address(0), kPort, absl::Seconds(5)));
    return TcpConnect(cluster_->Address(2), kPort, absl::Seconds(5));
  }));
  EXPECT_OK(cluster_->ExecOk(1, {"curl", "-sS", "--fail", "-o", "/dev/null",
                                 StrCat("http://", cluster_->Address(2), ":", kPort, "/")}));
}

TEST_F(NetnsClusterTest, FileServerAnswersRanges) {
  ASSERT_OK_AND_ASSIGN(Subprocess server, StartFileServer(*cluster_, 0, dir_.Join("www"), 1));
  ASSERT_OK_AND_ASSIGN(std::string headers,
                       cluster_->ExecOk(1, {"curl", "-sS", "-D", "-", "-o", dir_.Join("part"), "-H",
                                            "Range: bytes=1000-1999", FileUrl(0)}));
  EXPECT_THAT(headers, HasSubstr("206"));
  EXPECT_THAT(headers, HasSubstr(StrCat("bytes 1000-1999/", kFileSize)));
  ASSERT_OK_AND_ASSIGN(std::string part, ReadFileToString(dir_.Join("part")));
  ASSERT_OK_AND_ASSIGN(std::string whole, ReadFileToString(dir_.Join("www/f50m.bin")));
  EXPECT_EQ(part, whole.substr(1000, 1000));
  ASSERT_OK_AND_ASSIGN(RunResult missing,
                       cluster_->Exec(1, {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                          FileUrl(0) + ".missing"}));
  EXPECT_EQ(missing.output, "404");
  ASSERT_OK(server.Signal(SIGTERM));
  EXPECT_THAT(server.Wait(absl::Seconds(10)), IsOkAndHolds(0));
}

// The first non-loopback IPv4 address of the root namespace, if it has one.
std::optional<std::string> RootNamespaceAddress() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return std::nullopt;
  std::optional<std::string> found;
  for (ifaddrs* a = list; a != nullptr && !found; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN];
    auto* in = reinterpret_cast<sockaddr_in*>(a->ifa_addr);
    ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    if (!std::string_view(text).starts_with("127.")) found = text;
  }
  ::freeifaddrs(list);
  return found;
}

TEST_F(NetnsClusterTest, HostsCannotLeaveTheCluster) {
  // Routing refuses: no packet is sent anywhere.
  ASSERT_OK_AND_ASSIGN(RunResult route, cluster_->Exec(1, {"ip", "route", "get", "8.8.8.8"}));
  EXPECT_NE(route.exit_code, 0);
  EXPECT_THAT(route.output, HasSubstr("unreachable"));

  // A service on the root namespace's loopback is invisible: 127.0.0.1 inside is the host's own.
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  uint16_t port = ntohs(addr.sin_port);
  ASSERT_OK(TcpConnect("127.0.0.1", port, absl::Seconds(2)));  // reachable from the root
  EXPECT_THAT(cluster_->RunIn(1, [&] { return TcpConnect("127.0.0.1", port, absl::Seconds(2)); }),
              Not(IsOk()));

  std::optional<std::string> root_ip = RootNamespaceAddress();
  if (root_ip) {
    EXPECT_THAT(cluster_->RunIn(1, [&] { return TcpConnect(*root_ip, port, absl::Seconds(2)); }),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr("unreachable")));
  }
}

// The root namespace's interface names, addresses and routes, without counters or state.
absl::StatusOr<std::string> RootNetworkSnapshot() {
  ASSIGN_OR_RETURN(std::string links, RunCommandOk({"ip", "-o", "link", "show"}));
  ASSIGN_OR_RETURN(std::string addrs, RunCommandOk({"ip", "-o", "addr", "show"}));
  ASSIGN_OR_RETURN(std::string routes, RunCommandOk({"ip", "route", "show", "table", "all"}));
  std::string snapshot;
  for (absl::string_view line : absl::StrSplit(links, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    if (fields.size() > 1) StrAppend(&snapshot, "link ", fields[1], "\n");
  }
  for (absl::string_view line : absl::StrSplit(addrs, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() > 3) StrAppend(&snapshot, "addr ", fields[1], " ", fields[3], "\n");
  }
  return StrCat(snapshot, routes);
}

TEST(NetnsClusterStandalone, RootNamespaceIsUntouched) {
  NAIAD_SKIP_UNLESS_ROOT();
  ASSERT_OK_AND_ASSIGN(std::string before, RootNetworkSnapshot());
  {
    ASSERT_OK_AND_ASSIGN(auto cluster, NetnsCluster::Create(2));
    ASSERT_OK(cluster->SetEgressLimit(0, 50));
    ASSERT_OK(cluster->SetIngressLimit(1, 50));
    ASSERT_OK_AND_ASSIGN(std::string during, RootNetworkSnapshot());
    EXPECT_EQ(during, before);
    EXPECT_THAT(during, Not(HasSubstr(StrCat("10.77.", cluster->subnet(), "."))));
  }
  ASSERT_OK_AND_ASSIGN(std::string after, RootNetworkSnapshot());
  EXPECT_EQ(after, before);
}

TEST(NetnsClusterStandalone, TwoClustersCoexist) {
  NAIAD_SKIP_UNLESS_ROOT();
  ASSERT_OK_AND_ASSIGN(auto a, NetnsCluster::Create(2));
  ASSERT_OK_AND_ASSIGN(auto b, NetnsCluster::Create(2));
  EXPECT_NE(a->subnet(), b->subnet());
  EXPECT_NE(a->Address(0), b->Address(0));
  ASSERT_OK_AND_ASSIGN(std::string out, a->ExecOk(0, {"ip", "-o", "-4", "addr", "show"}));
  EXPECT_THAT(out, HasSubstr(a->Address(0)));
  // A host of one cluster cannot reach a host of the other.
  EXPECT_THAT(a->RunIn(0, [&] { return TcpConnect(b->Address(1), 9, absl::Seconds(1)); }),
              Not(IsOk()));
}

// A pid that is certainly dead: a child that exited and was reaped.
pid_t DeadPid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

TEST(NetnsClusterStandalone, CreateRemovesStaleNamespaces) {
  NAIAD_SKIP_UNLESS_ROOT();
  std::string prefix = StrCat("nd", DeadPid(), "c254");
  std::vector<std::string> stale = {prefix + "-br", prefix + "-h0"};
  for (const std::string& name : stale) ASSERT_OK(RunCommandOk({"ip", "netns", "add", name}));
  ASSERT_OK(RunCommandOk({"ip", "-n", stale[1], "link", "set", "lo", "up"}));
  ASSERT_OK_AND_ASSIGN(auto cluster, NetnsCluster::Create(1));
  for (const std::string& name : stale) {
    EXPECT_FALSE(std::filesystem::exists("/var/run/netns/" + name)) << name;
  }
  // Our own live namespaces stay.
  EXPECT_TRUE(std::filesystem::exists(cluster->NetnsPath(0)));
}

TEST(NetnsClusterStandalone, DestroyKillsDaemonsAndDeletesNamespaces) {
  NAIAD_SKIP_UNLESS_ROOT();
  ASSERT_OK_AND_ASSIGN(auto cluster, NetnsCluster::Create(2));
  std::string path = cluster->NetnsPath(1);
  // A grandchild that the Subprocess does not own directly.
  ASSERT_OK_AND_ASSIGN(Subprocess daemon, cluster->Spawn(1, {"sh", "-c", "sleep 600 & wait"}, {}));
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_OK_AND_ASSIGN(std::string pids,
                       RunCommandOk({"ip", "netns", "pids", cluster->NetnsName(1)}));
  EXPECT_FALSE(absl::StripAsciiWhitespace(pids).empty());
  ASSERT_OK(cluster->Destroy());
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_THAT(daemon.Wait(absl::Seconds(10)), IsOkAndHolds(128 + SIGKILL));
}

}  // namespace
}  // namespace naiad::testing
