// The swarm end to end (issue 5's "done when"): `naiad scheduler`, a seed peer and `naiad peer`s,
// each in its own network namespace, with the registry behind a shaped link. Blobs are fetched
// through the peers' registry-mirror proxies with curl, as containerd and `naiad fs` would.
//
//   1. 8 peers fetch one 256 MiB blob at once: every copy is right, the registry serves it once.
//   2. 1 MiB ranges at random offsets from 4 peers at once: 206, Content-Range and the bytes.
//   3. A parent, then the seed, killed mid-download: the others finish from the rest.
//   4. The scheduler never started, or killed mid-download: the downloads still finish.
//   5. Bad input on the proxy and the upload port: a clear 4xx, no crash, nothing not ours.
//
// Each TEST is its own process under ctest; the test blobs are generated once per process into a
// temporary directory (deterministic pseudo-random bytes: incompressible).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "base/digest.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/testing/p2p_cluster.h"
#include "test/testing/test_env.h"

namespace naiad::testing {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRepo[] = "test/p2p";
constexpr uint64_t kMiB = uint64_t{1} << 20;
// docs/formats/piece-store.md: clamp(next_power_of_two(length / 1000), 256 KiB, 16 MiB) is at
// most 1 MiB for every blob here (256 KiB to 512 KiB): bounds computed with 1 MiB hold, and
// offsets that are multiples of 1 MiB are piece boundaries.
constexpr uint64_t kPieceSize = kMiB;
constexpr double kRegistryMbit = 100;

// ---------------------------------------------------------------------------------------------
// Test blobs, generated once per test binary.

struct TestBlob {
  std::string path;
  uint64_t size = 0;
  Digest digest;
};

class BlobEnvironment : public ::testing::Environment {
 public:
  // The blob `name` of `size` bytes from the generator seeded with `seed`, written on first use.
  absl::StatusOr<TestBlob> Get(const std::string& name, uint64_t size, uint64_t seed) {
    if (auto it = blobs_.find(name); it != blobs_.end()) return it->second;
    if (!dir_.has_value()) {
      ASSIGN_OR_RETURN(TempDir dir, CreateOwnedTempDir("naiad-p2p-blobs-"));
      dir_ = std::move(dir);
    }
    TestBlob blob{.path = dir_->Join(name), .size = size};
    ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open(blob.path, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    std::mt19937_64 random(seed);
    Sha256 hasher;
    std::string chunk;
    for (uint64_t done = 0; done < size;) {
      chunk.resize(std::min<uint64_t>(4 * kMiB, size - done));
      for (size_t i = 0; i < chunk.size(); i += 8) {
        uint64_t v = random();
        std::memcpy(chunk.data() + i, &v, std::min<size_t>(8, chunk.size() - i));
      }
      hasher.Update(chunk);
      RETURN_IF_ERROR(WriteFull(fd.get(), chunk));
      done += chunk.size();
    }
    blob.digest = hasher.Finish();
    blobs_[name] = blob;
    return blob;
  }

  void TearDown() override {
    blobs_.clear();
    dir_.reset();  // removes the files
  }

 private:
  std::optional<TempDir> dir_;
  std::map<std::string, TestBlob> blobs_;
};

BlobEnvironment* const kBlobEnvironment = static_cast<BlobEnvironment*>(
    ::testing::AddGlobalTestEnvironment(new BlobEnvironment()));  // owned by gtest

// ---------------------------------------------------------------------------------------------
// Raw HTTP exchanges, for requests curl will not send.

struct RawResponse {
  std::string raw;
  int status = 0;    // 0: no status line came back
  std::string head;  // status line and headers
  std::string body;

  std::optional<std::string> Header(std::string_view name) const {
    for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
      size_t colon = line.find(':');
      if (colon == absl::string_view::npos) continue;
      if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)), ToAbsl(name))) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
    return std::nullopt;
  }
};

RawResponse ParseRaw(std::string raw) {
  RawResponse response;
  size_t end = raw.find("\r\n\r\n");
  response.head = raw.substr(0, end);
  if (end != std::string::npos) response.body = raw.substr(end + 4);
  if (absl::StartsWith(response.head, "HTTP/1.")) {
    const std::string status_line = response.head.substr(0, response.head.find("\r\n"));
    std::vector<absl::string_view> parts = absl::StrSplit(status_line, ' ');
    if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &response.status)) response.status = 0;
  }
  response.raw = std::move(raw);
  return response;
}

// Sends `request` as it is to ip:port from inside `host`, half-closes, and reads the answer until
// the server closes the connection (or 15 s pass without a byte).
absl::StatusOr<RawResponse> RawExchange(const NetnsCluster& net, int host, const std::string& ip,
                                        uint16_t port, std::string_view request) {
  std::string raw;
  RETURN_IF_ERROR(net.RunIn(host, [&]() -> absl::Status {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return ErrnoError(errno, "socket");
    timeval timeout{.tv_sec = 15, .tv_usec = 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    if (::inet_pton(AF_INET, ip.c_str(), &address.sin_addr) != 1) {
      return absl::InvalidArgumentError(StrCat("bad address ", ip));
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
      return ErrnoError(errno, StrCat("connect ", ip, ":", port));
    }
    // The server may answer (and stop reading) before the end of a bad request: send errors are
    // not failures here, the answer is what counts.
    for (size_t sent = 0; sent < request.size();) {
      ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    ::shutdown(fd.get(), SHUT_WR);
    char buffer[64 * 1024];
    while (true) {
      ssize_t n = ::recv(fd.get(), buffer, sizeof(buffer), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      raw.append(buffer, static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }));
  return ParseRaw(std::move(raw));
}

// For messages: a request or response cut short and with control characters escaped.
std::string Printable(std::string_view text, size_t max = 200) {
  std::string out;
  for (char c : text.substr(0, max)) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      out += "\\x";
      out += "0123456789abcdef"[(static_cast<unsigned char>(c) >> 4) & 0xf];
      out += "0123456789abcdef"[static_cast<unsigned char>(c) & 0xf];
    } else {
      out += c;
    }
  }
  if (text.size() > max) StrAppend(&out, "... (", text.size(), " bytes)");
  return out;
}

// ---------------------------------------------------------------------------------------------

class P2pTest : public ::testing::Test {
 protected:
  void SetUp() override { NAIAD_SKIP_UNLESS_ROOT(); }

  void TearDown() override {
    if (swarm_ != nullptr && HasFailure()) {
      std::cerr << "---- daemon logs (tails) ----\n" << swarm_->Logs() << "----\n";
      // NAIAD_P2P_KEEP_LOGS=<dir>: keep the whole logs of a failed test there.
      if (const char* keep = std::getenv("NAIAD_P2P_KEEP_LOGS"); keep != nullptr && *keep != '\0') {
        const std::string dir =
            StrCat(keep, "/", ::testing::UnitTest::GetInstance()->current_test_info()->name());
        absl::Status copied = swarm_->CopyLogsTo(dir);
        std::cerr << "whole logs: " << (copied.ok() ? dir : copied.ToString()) << "\n";
      }
    }
  }

  // 256 MiB: the blob of the swarm tests.
  static absl::StatusOr<TestBlob> BigBlob() {
    return kBlobEnvironment->Get("big.blob", 256 * kMiB, 0x6e61696164);
  }
  // 64 MiB plus a partial last piece.
  static absl::StatusOr<TestBlob> MediumBlob() {
    return kBlobEnvironment->Get("medium.blob", 64 * kMiB + 12345, 0x70327032);
  }

  void StartSwarm(P2pClusterOptions options) {
    ASSERT_OK_AND_ASSIGN(swarm_, P2pCluster::Start(std::move(options)));
  }

  RegistryFixture& registry() { return swarm_->registry(); }

  void Push(const TestBlob& blob) {
    ASSERT_OK_AND_ASSIGN(Digest pushed, registry().PushBlobFile(kRepo, blob.path));
    ASSERT_EQ(pushed, blob.digest);
  }

  // A swarm of `peers` peers with `blob` in the registry behind kRegistryMbit, counters reset:
  // the starting point of the whole-blob tests.
  void StartShapedSwarm(const TestBlob& blob, int peers) {
    ASSERT_NO_FATAL_FAILURE(StartSwarm({.peers = peers}));
    ASSERT_NO_FATAL_FAILURE(Push(blob));
    ASSERT_OK(swarm_->net().SetEgressLimit(P2pCluster::kRegistryHost, kRegistryMbit));
    ASSERT_OK(registry().ResetCounters());
  }

  // Waits (up to 3 minutes) until the registry has served `bytes` of blob data.
  void AwaitRegistryServed(uint64_t bytes) {
    ASSERT_TRUE(PollUntil(absl::Minutes(3), [&] { return RegistryBlobBytes() >= bytes; }))
        << "the registry served only " << RegistryBlobBytes() << " bytes in 3 minutes";
  }

  uint64_t RegistryBlobBytes() {
    absl::StatusOr<uint64_t> bytes = registry().BytesServed(RegistryFixture::Traffic::kBlobGets);
    EXPECT_OK(bytes.status());
    return bytes.ok() ? *bytes : 0;
  }

  // A metric of the daemon on `host`; 0 (and a failure) if it cannot be read.
  uint64_t Metric(int host, std::string_view name) {
    absl::StatusOr<double> value = swarm_->PeerMetric(host, name);
    EXPECT_OK(value.status()) << "host " << host;
    return value.ok() ? static_cast<uint64_t>(*value) : 0;
  }

  // Starts one whole-blob fetch through each host's proxy.
  std::vector<Fetch> StartBlobFetches(const std::vector<int>& hosts, const TestBlob& blob) {
    std::vector<Fetch> fetches;
    for (int host : hosts) {
      absl::StatusOr<Fetch> fetch =
          swarm_->StartFetch(host, swarm_->BlobUrl(host, kRepo, blob.digest));
      EXPECT_OK(fetch.status());
      if (fetch.ok()) fetches.push_back(*std::move(fetch));
    }
    return fetches;
  }

  std::vector<int> PeerHosts() const {
    std::vector<int> hosts;
    for (int i = 0; i < swarm_->peer_count(); ++i) hosts.push_back(swarm_->peer_host(i));
    return hosts;
  }

  // Expects a complete, correct copy of `blob`; removes the file afterwards (disk space).
  void ExpectCompleteCopy(const FetchResult& result, const TestBlob& blob) {
    EXPECT_EQ(result.curl_exit, 0) << result.Describe();
    EXPECT_EQ(result.http_status, 200) << result.Describe();
    absl::StatusOr<Digest> digest = Digest::Sha256OfFile(result.body_path);
    ASSERT_OK(digest.status()) << result.Describe();
    EXPECT_EQ(digest->ToString(), blob.digest.ToString())
        << result.Describe() << ": the copy is not the blob (" << FileSize(result.body_path)
        << " of " << blob.size << " bytes)";
    RemoveAll(result.body_path).IgnoreError();
  }

  static uint64_t FileSize(const std::string& path) {
    std::error_code error;
    uint64_t size = std::filesystem::file_size(path, error);
    return error ? 0 : size;
  }

  // One line per daemon: where its bytes came from and went, for the test's output.
  void PrintTraffic(std::vector<int> hosts) {
    if (swarm_->seed_host() >= 0 && swarm_->Running(swarm_->seed_host())) {
      hosts.insert(hosts.begin(), swarm_->seed_host());
    }
    for (int host : hosts) {
      std::string line = StrCat("host ", host, " (", swarm_->Address(host), "):");
      for (const char* name :
           {"naiad_peer_origin_bytes_total", "naiad_peer_peer_bytes_total",
            "naiad_peer_upload_bytes_total", "naiad_peer_back_to_source_total",
            "naiad_peer_origin_fallbacks_total", "naiad_peer_scheduler_errors_total"}) {
        absl::StatusOr<double> value = swarm_->PeerMetric(host, name);
        StrAppend(&line, " ", std::string_view(name).substr(11), "=",
                  value.ok() ? StrCat(static_cast<uint64_t>(*value)) : "?");
      }
      std::cout << line << "\n";
    }
  }

  // Polls until `done` returns true; false after `timeout`.
  template <typename F>
  static bool PollUntil(absl::Duration timeout, F done) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (done()) return true;
      absl::SleepFor(absl::Milliseconds(200));
    }
    return done();
  }

  std::unique_ptr<P2pCluster> swarm_;
};

// ---------------------------------------------------------------------------------------------
// 1. Eight peers, one blob, one copy from the registry.

TEST_F(P2pTest, EightPeersFetchOneBlobAtOnceAndTheRegistryServesItOnce) {
  ASSERT_OK_AND_ASSIGN(TestBlob blob, BigBlob());
  ASSERT_NO_FATAL_FAILURE(StartShapedSwarm(blob, 8));

  const absl::Time start = absl::Now();
  std::vector<Fetch> fetches = StartBlobFetches(PeerHosts(), blob);
  ASSERT_EQ(fetches.size(), 8u);
  std::vector<FetchResult> results;
  for (Fetch& fetch : fetches) {
    ASSERT_OK_AND_ASSIGN(results.emplace_back(), fetch.Wait());
    std::cout << results.back().Describe() << " after " << absl::FormatDuration(absl::Now() - start)
              << "\n";
  }
  for (const FetchResult& result : results) ExpectCompleteCopy(result, blob);
  PrintTraffic(PeerHosts());
  EXPECT_EQ(RegistryBlobBytes(), blob.size)
      << "the registry must serve exactly one copy of the blob to the whole swarm";
  EXPECT_OK(swarm_->Stop());
}

// ---------------------------------------------------------------------------------------------
// 2. Ranges.

TEST_F(P2pTest, RangesFromFourPeersAtOnceGet206AndTheRightBytes) {
  ASSERT_OK_AND_ASSIGN(TestBlob blob, MediumBlob());
  ASSERT_NO_FATAL_FAILURE(StartSwarm({.peers = 4}));
  ASSERT_NO_FATAL_FAILURE(Push(blob));
  ASSERT_OK(registry().ResetCounters());
  ASSERT_OK_AND_ASSIGN(MappedFile local, MappedFile::Open(blob.path));

  constexpr uint64_t kLength = kMiB;
  constexpr int kPerPeer = 8;
  std::mt19937_64 random(20240501);
  std::vector<Fetch> fetches;
  std::vector<uint64_t> offsets;
  for (int i = 0; i < swarm_->peer_count(); ++i) {
    for (int k = 0; k < kPerPeer; ++k) {
      uint64_t offset = random() % (blob.size - kLength + 1);
      // A few edges among the random ones: the very end (the partial last piece) and a range
      // that starts one byte before a piece boundary.
      if (i == 0 && k == 0) offset = blob.size - kLength;
      if (i == 1 && k == 0) offset = 17 * kPieceSize - 1;
      const int host = swarm_->peer_host(i);
      ASSERT_OK_AND_ASSIGN(
          Fetch fetch,
          swarm_->StartFetch(host, swarm_->BlobUrl(host, kRepo, blob.digest),
                             {.range = StrCat("bytes=", offset, "-", offset + kLength - 1)}));
      fetches.push_back(std::move(fetch));
      offsets.push_back(offset);
    }
  }
  int good = 0;
  for (size_t f = 0; f < fetches.size(); ++f) {
    ASSERT_OK_AND_ASSIGN(FetchResult result, fetches[f].Wait());
    const uint64_t offset = offsets[f];
    EXPECT_EQ(result.curl_exit, 0) << result.Describe();
    EXPECT_EQ(result.http_status, 206) << result.Describe();
    EXPECT_EQ(result.Header("Content-Range"),
              StrCat("bytes ", offset, "-", offset + kLength - 1, "/", blob.size))
        << result.Describe();
    ASSERT_OK_AND_ASSIGN(std::string body, ReadFileToString(result.body_path));
    std::string_view want = local.data().substr(offset, kLength);
    if (body == want) {
      ++good;
      continue;
    }
    size_t differ = 0;
    while (differ < std::min(body.size(), want.size()) && body[differ] == want[differ]) ++differ;
    ADD_FAILURE() << result.Describe() << ": " << body.size() << " bytes, first difference at "
                  << differ << " (blob offset " << offset + differ << ")";
  }
  EXPECT_EQ(good, swarm_->peer_count() * kPerPeer);
  PrintTraffic(PeerHosts());
  EXPECT_LE(RegistryBlobBytes(), blob.size) << "a byte must come from the registry at most once";
  EXPECT_OK(swarm_->Stop());
}

// ---------------------------------------------------------------------------------------------
// 3. Kills mid-download.

// Four peers fetch the blob; once some peer has served pieces to the others (and the registry
// has served an eighth of the blob), the one that served the most is killed with SIGKILL. The
// other three finish from the seed, each other and the origin.
TEST_F(P2pTest, AParentKilledMidDownloadItsChildrenFinishFromOthers) {
  ASSERT_OK_AND_ASSIGN(TestBlob blob, BigBlob());
  ASSERT_NO_FATAL_FAILURE(StartShapedSwarm(blob, 4));
  const std::vector<int> peers = PeerHosts();
  std::vector<Fetch> fetches = StartBlobFetches(peers, blob);
  ASSERT_EQ(fetches.size(), peers.size());

  int victim = -1;
  uint64_t victim_uploaded = 0;
  bool found = PollUntil(absl::Minutes(3), [&] {
    if (RegistryBlobBytes() < blob.size / 8) return false;
    for (size_t i = 0; i < peers.size(); ++i) {
      absl::StatusOr<double> up = swarm_->PeerMetric(peers[i], "naiad_peer_upload_bytes_total");
      if (up.ok() && *up > static_cast<double>(victim_uploaded)) {
        victim = static_cast<int>(i);
        victim_uploaded = static_cast<uint64_t>(*up);
      }
    }
    return victim >= 0;
  });
  ASSERT_TRUE(found) << "no peer served pieces to another within 3 minutes (registry served "
                     << RegistryBlobBytes() << " bytes)";
  const uint64_t served_at_kill = RegistryBlobBytes();
  ASSERT_LT(served_at_kill, blob.size) << "the download was over before the kill";
  std::cout << "killing peer " << victim << " (host " << peers[victim] << ") after it uploaded "
            << victim_uploaded << " bytes; the registry had served " << served_at_kill << "\n";
  ASSERT_OK(swarm_->Kill(peers[victim]));

  for (size_t i = 0; i < fetches.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(FetchResult result, fetches[i].Wait());
    std::cout << result.Describe() << "\n";
    if (static_cast<int>(i) == victim) continue;  // its client lost its proxy
    ExpectCompleteCopy(result, blob);
  }
  std::vector<int> survivors;
  for (size_t i = 0; i < peers.size(); ++i) {
    if (static_cast<int>(i) != victim) survivors.push_back(peers[i]);
  }
  PrintTraffic(survivors);
  std::cout << "registry served " << RegistryBlobBytes() << " bytes of a " << blob.size
            << "-byte blob\n";
  EXPECT_OK(swarm_->Stop());
}

// The registry is slow enough that the fetch takes about 22 s; the seed is killed once the
// registry has served a quarter of the blob. Another peer must take over the origin fetch
// (through the scheduler's leases, which the seed's death ends after --host-ttl/--lease-timeout)
// and every peer must complete.
TEST_F(P2pTest, TheSeedKilledMidDownloadAnotherPeerTakesOverTheOriginFetch) {
  ASSERT_OK_AND_ASSIGN(TestBlob blob, BigBlob());
  ASSERT_NO_FATAL_FAILURE(StartShapedSwarm(blob, 4));
  const std::vector<int> peers = PeerHosts();
  std::vector<Fetch> fetches = StartBlobFetches(peers, blob);
  ASSERT_EQ(fetches.size(), peers.size());

  ASSERT_NO_FATAL_FAILURE(AwaitRegistryServed(blob.size / 4));
  const int seed = swarm_->seed_host();
  const uint64_t seed_origin = Metric(seed, "naiad_peer_origin_bytes_total");
  const uint64_t served_at_kill = RegistryBlobBytes();
  ASSERT_LT(served_at_kill, blob.size) << "the download was over before the kill";
  std::cout << "killing the seed after it fetched " << seed_origin
            << " bytes from the origin; the registry had served " << served_at_kill << "\n";
  EXPECT_GT(seed_origin, 0u) << "the seed fetched nothing from the origin before it was killed: "
                                "this test did not kill an origin fetch in progress";
  ASSERT_OK(swarm_->Kill(seed));

  for (Fetch& fetch : fetches) {
    ASSERT_OK_AND_ASSIGN(FetchResult result, fetch.Wait());
    std::cout << result.Describe() << "\n";
    ExpectCompleteCopy(result, blob);
  }
  PrintTraffic(peers);
  uint64_t peers_origin = 0;
  for (int host : peers) peers_origin += Metric(host, "naiad_peer_origin_bytes_total");
  EXPECT_GT(peers_origin, 0u) << "no peer fetched from the origin after the seed died";

  // The bound: one copy, plus what the seed's death wasted. That is (a) its origin pieces in
  // flight at the kill, at most concurrentPieceCount pieces, partly served by the registry and
  // lost; their leases expire and another peer fetches them again; and (b) pieces the seed had
  // just completed but that no peer had copied yet (peers learn of a piece through their next
  // SyncTask, every ~100 ms; at 100 Mbit/s the registry sends about 1.2 pieces in that time),
  // bounded here by another concurrentPieceCount pieces. Pieces are 512 KiB for a 256 MiB blob
  // (kPieceSize, 1 MiB, bounds them).
  const uint64_t in_flight = static_cast<uint64_t>(swarm_->options().concurrent_piece_count);
  const uint64_t bound = blob.size + 2 * in_flight * kPieceSize;
  const uint64_t served = RegistryBlobBytes();
  std::cout << "registry served " << served << " bytes (bound " << bound << ")\n";
  EXPECT_GE(served, blob.size);
  EXPECT_LE(served, bound) << "the registry served " << served - blob.size
                           << " bytes more than one copy";
  EXPECT_OK(swarm_->Stop());
}

// ---------------------------------------------------------------------------------------------
// 4. Without a scheduler.

// The peers are configured with a scheduler address nobody listens on: every download falls
// back to the origin and completes.
TEST_F(P2pTest, DownloadsCompleteWhenTheSchedulerWasNeverStarted) {
  ASSERT_OK_AND_ASSIGN(TestBlob blob, MediumBlob());
  ASSERT_NO_FATAL_FAILURE(
      StartSwarm({.peers = 3, .seed_peer = false, .scheduler = SchedulerMode::kUnreachable}));
  ASSERT_NO_FATAL_FAILURE(Push(blob));
  ASSERT_OK(registry().ResetCounters());
  const std::vector<int> peers = PeerHosts();
  std::vector<Fetch> fetches = StartBlobFetches(peers, blob);
  ASSERT_EQ(fetches.size(), peers.size());
  for (Fetch& fetch : fetches) {
    ASSERT_OK_AND_ASSIGN(FetchResult result, fetch.Wait(absl::Minutes(5)));
    std::cout << result.Describe() << "\n";
    ExpectCompleteCopy(result, blob);
  }
  PrintTraffic(peers);
  for (int host : peers) {
    EXPECT_GE(Metric(host, "naiad_peer_back_to_source_total"), 1u) << "host " << host;
  }
  EXPECT_OK(swarm_->Stop());
}

// A task the piece store garbage-collects is left at the scheduler (LeaveTask), so that the
// scheduler stops offering this host as its parent, and forgets the task once nobody holds it.
TEST_F(P2pTest, AGarbageCollectedTaskIsLeftAtTheScheduler) {
  ASSERT_OK_AND_ASSIGN(TestBlob blob, kBlobEnvironment->Get("other.blob", 3 * kMiB, 78));
  ASSERT_NO_FATAL_FAILURE(
      StartSwarm({.peers = 1,
                  .seed_peer = false,
                  .extra_peer_yaml = "gcInterval: 1s\nstorage:\n  taskExpireTime: 3s\n"}));
  ASSERT_NO_FATAL_FAILURE(Push(blob));
  const int host = swarm_->peer_host(0);
  std::vector<Fetch> fetches = StartBlobFetches({host}, blob);
  ASSERT_EQ(fetches.size(), 1u);
  ASSERT_OK_AND_ASSIGN(FetchResult result, fetches[0].Wait(absl::Minutes(2)));
  ExpectCompleteCopy(result, blob);
  EXPECT_THAT(swarm_->SchedulerMetric("naiad_scheduler_tasks"), IsOkAndHolds(1));
  // The store drops the idle task after 3 s; a task nobody holds is forgotten by the scheduler
  // its host TTL (3 s) later. Without the LeaveTask the host would stay its holder.
  EXPECT_TRUE(PollUntil(absl::Seconds(40),
                        [&] {
                          return swarm_->PeerMetric(host, "naiad_peer_store_tasks").value_or(-1) ==
                                     0 &&
                                 swarm_->SchedulerMetric("naiad_scheduler_tasks").value_or(-1) == 0;
                        }))
      << "store tasks " << swarm_->PeerMetric(host, "naiad_peer_store_tasks").value_or(-1)
      << ", scheduler tasks " << swarm_->SchedulerMetric("naiad_scheduler_tasks").value_or(-1);
  EXPECT_OK(swarm_->Stop());
}

// The scheduler is killed (SIGKILL) once the registry has served a quarter of the blob; the
// peers fall back to the origin and complete. The registry's limit is lifted after the kill only
// to keep the test short: after the fallback every peer fetches the rest itself (origin bytes
// may then exceed one copy).
TEST_F(P2pTest, DownloadsCompleteWhenTheSchedulerIsKilledMidDownload) {
  ASSERT_OK_AND_ASSIGN(TestBlob blob, BigBlob());
  ASSERT_NO_FATAL_FAILURE(StartShapedSwarm(blob, 4));
  const std::vector<int> peers = PeerHosts();
  std::vector<Fetch> fetches = StartBlobFetches(peers, blob);
  ASSERT_EQ(fetches.size(), peers.size());

  ASSERT_NO_FATAL_FAILURE(AwaitRegistryServed(blob.size / 4));
  const uint64_t served_at_kill = RegistryBlobBytes();
  ASSERT_LT(served_at_kill, blob.size) << "the download was over before the kill";
  std::cout << "killing the scheduler; the registry had served " << served_at_kill << "\n";
  ASSERT_OK(swarm_->KillScheduler());
  ASSERT_OK(swarm_->net().ClearLimits(P2pCluster::kRegistryHost));

  for (Fetch& fetch : fetches) {
    ASSERT_OK_AND_ASSIGN(FetchResult result, fetch.Wait());
    std::cout << result.Describe() << "\n";
    ExpectCompleteCopy(result, blob);
  }
  PrintTraffic(peers);
  uint64_t fallbacks = 0;
  for (int host : peers) fallbacks += Metric(host, "naiad_peer_origin_fallbacks_total");
  EXPECT_GT(fallbacks, 0u) << "no peer reported falling back to the origin";
  std::cout << "registry served " << RegistryBlobBytes() << " bytes of a " << blob.size
            << "-byte blob\n";
  EXPECT_OK(swarm_->Stop());
}

// ---------------------------------------------------------------------------------------------
// 5. Bad input. What test/integration/peer_proxy_test.cc already checks on the proxy (a range
// past the end, a blob the registry lacks, a forward-proxy request to a host not configured: 403,
// CONNECT: 405, a bad X-Dragonfly-Registry) is not repeated; this adds malformed HTTP, absurd
// ranges and header injection on the proxy, and the upload port of a peer and of the seed.

class P2pBadInputTest : public P2pTest {
 protected:
  void SetUp() override {
    P2pTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_NO_FATAL_FAILURE(StartSwarm({.peers = 1}));
    // Small: 5 pieces and a partial sixth.
    ASSERT_OK_AND_ASSIGN(blob_, kBlobEnvironment->Get("small.blob", 5 * kMiB + 4321, 77));
    ASSERT_NO_FATAL_FAILURE(Push(blob_));
    peer_ = swarm_->peer_host(0);
    // The peer holds the whole blob: its task is complete.
    ASSERT_OK_AND_ASSIGN(Fetch fetch,
                         swarm_->StartFetch(peer_, swarm_->BlobUrl(peer_, kRepo, blob_.digest)));
    ASSERT_OK_AND_ASSIGN(FetchResult result, fetch.Wait());
    ASSERT_NO_FATAL_FAILURE(ExpectCompleteCopy(result, blob_));
    id_ = blob_.digest.Hex();
  }

  std::string BlobPath() const { return StrCat("/v2/", kRepo, "/blobs/", blob_.digest.ToString()); }
  std::string DownloadPath(std::string_view id) const {
    return StrCat("/download/", id.substr(0, 3), "/", id);
  }

  // A well-formed request with these extra header lines ("Name: value\r\n" each).
  static std::string Request(std::string_view method, std::string_view target,
                             std::string_view extra_headers = "") {
    return StrCat(method, " ", target, " HTTP/1.1\r\nHost: naiad\r\n", extra_headers,
                  "Connection: close\r\n\r\n");
  }

  RawResponse Send(int host, uint16_t port, std::string_view request) {
    absl::StatusOr<RawResponse> response =
        RawExchange(swarm_->net(), host, swarm_->Address(host), port, request);
    EXPECT_OK(response.status()) << Printable(request);
    return response.ok() ? *std::move(response) : RawResponse{};
  }

  // Expects a status in [low, high] and nothing that is not ours in the answer.
  void ExpectRejected(int host, uint16_t port, std::string_view request, int low, int high) {
    RawResponse response = Send(host, port, request);
    const std::string what = StrCat("host ", host, " port ", port, " <- \"", Printable(request),
                                    "\" -> \"", Printable(response.raw, 300), "\"");
    EXPECT_GE(response.status, low) << what;
    EXPECT_LE(response.status, high) << what;
    EXPECT_THAT(response.raw, Not(HasSubstr("root:x:0:0"))) << what;
  }
  void ExpectStatus(int host, uint16_t port, std::string_view request, int status) {
    ExpectRejected(host, port, request, status, status);
  }

  void ExpectStillServing(int host) {
    EXPECT_TRUE(swarm_->Running(host)) << "the daemon on host " << host << " died";
    EXPECT_TRUE(swarm_->PeerHealthy(host)) << "host " << host << " no longer answers /server/ping";
  }

  // Malformed HTTP that must get 400 (or 431) from any of the daemon's servers.
  void ExpectMalformedRejected(int host, uint16_t port) {
    std::string garbage("\x00\x01\x02\xff\xfe\x7f garbage \x80\x81", 16);
    std::mt19937 random(5);
    for (int i = 0; i < 2000; ++i) garbage += static_cast<char>(random() % 256);
    ExpectStatus(host, port, garbage + "\r\n\r\n", 400);
    ExpectStatus(host, port, "GET\r\n\r\n", 400);
    ExpectStatus(host, port, "GET / HTTP/1.1 trailing\r\nHost: x\r\n\r\n", 400);
    ExpectStatus(host, port, "GET / FTP/1.1\r\nHost: x\r\n\r\n", 400);
    ExpectStatus(host, port, "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400);
    ExpectStatus(host, port, "GET / HTTP/1.1\r\nNo-Colon\r\n\r\n", 400);
    // Request smuggling shapes: two lengths, a length and chunked together.
    ExpectRejected(host, port,
                   "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                   400, 400);
    ExpectRejected(host, port,
                   "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n0\r\n\r\n",
                   400, 499);
    // A 100 KiB header value, and 4000 headers.
    ExpectStatus(
        host, port,
        StrCat("GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", std::string(100 << 10, 'a'), "\r\n\r\n"),
        431);
    std::string many = "GET / HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 4000; ++i) StrAppend(&many, "X-H", i, ": ", std::string(20, 'b'), "\r\n");
    ExpectStatus(host, port, many + "\r\n", 431);
  }

  TestBlob blob_;
  int peer_ = 0;
  std::string id_;
};

TEST_F(P2pBadInputTest, TheProxyAnswersMalformedHttpAbsurdRangesAndInjectionWith4xx) {
  const uint16_t port = P2pCluster::kProxyPort;
  ExpectMalformedRejected(peer_, port);

  // CR or LF inside a header value: the request is refused, not split into two headers.
  ExpectStatus(peer_, port,
               Request("GET", BlobPath(), "X-Dragonfly-Registry: http://a\rX-Injected: 1\r\n"),
               400);
  ExpectStatus(peer_, port, Request("GET", BlobPath(), "Range: bytes=0-1\nX-Injected: 1\r\n"), 400);
  ExpectStatus(peer_, port, Request("GET", BlobPath(), "X-A: b\rc\r\n"), 400);
  // An encoded CRLF in the target is not decoded into the response (nor into the request the
  // proxy relays to the registry).
  {
    RawResponse response = Send(peer_, port,
                                Request("GET", StrCat("/v2/", kRepo, "/blobs/sha256:", id_,
                                                      "%0d%0aX-Injected:%20yes%0d%0a")));
    EXPECT_GE(response.status, 400) << Printable(response.raw, 400);
    EXPECT_LE(response.status, 499) << Printable(response.raw, 400);
    EXPECT_FALSE(response.Header("X-Injected").has_value()) << Printable(response.raw, 400);
  }

  // Absurd ranges on a blob the peer holds.
  const std::string total = StrCat("/", blob_.size);
  for (const char* range : {"bytes=999999999999-", "bytes=999999999999-999999999999"}) {
    RawResponse response =
        Send(peer_, port, Request("GET", BlobPath(), StrCat("Range: ", range, "\r\n")));
    EXPECT_EQ(response.status, 416) << range << ": " << Printable(response.raw, 300);
    EXPECT_EQ(response.Header("Content-Range"), StrCat("bytes *", total)) << range;
    EXPECT_LT(response.body.size(), 1000u) << range;
  }
  for (const char* range :
       {"bytes=5-2", "bytes=0-1,5-6", "bytes=0-0,-1", "bytes=99999999999999999999999-",
        "bytes=-99999999999999999999999", "bytes=abc-def", "bytes=--5", "bytes=1-2-3", "lines=0-5",
        "bytes 0-5", "bytes=-0"}) {
    ExpectRejected(peer_, port, Request("GET", BlobPath(), StrCat("Range: ", range, "\r\n")), 400,
                   416);
  }
  // The same on a blob the peer has not started: refused before anything is fetched.
  ASSERT_OK_AND_ASSIGN(TestBlob other, kBlobEnvironment->Get("other.blob", 3 * kMiB, 78));
  ASSERT_NO_FATAL_FAILURE(Push(other));
  const uint64_t origin_before = Metric(peer_, "naiad_peer_origin_bytes_total");
  ExpectRejected(peer_, port,
                 Request("GET", StrCat("/v2/", kRepo, "/blobs/", other.digest.ToString()),
                         "Range: bytes=5-2\r\n"),
                 400, 416);
  EXPECT_EQ(Metric(peer_, "naiad_peer_origin_bytes_total"), origin_before)
      << "a refused request fetched blob bytes";

  ExpectStillServing(peer_);
  EXPECT_OK(swarm_->Stop());
}

TEST_F(P2pBadInputTest, TheUploadPortServesOnlyValidPieceRequests) {
  const uint16_t port = P2pCluster::kUploadPort;
  ASSERT_OK_AND_ASSIGN(MappedFile local, MappedFile::Open(blob_.path));
  // The seed may still be fetching the blob (the scheduler asked it to when the peer started the
  // task): wait until the registry has had no request for 2 s, so that what follows can check
  // that nothing sent to the upload ports reaches the registry.
  uint64_t requests_before = 0;
  absl::Time quiet_since = absl::Now();
  ASSERT_TRUE(PollUntil(absl::Seconds(60), [&] {
    absl::StatusOr<uint64_t> count = registry().RequestCount();
    if (!count.ok()) return false;
    if (*count != requests_before) {
      requests_before = *count;
      quiet_since = absl::Now();
    }
    return absl::Now() - quiet_since >= absl::Seconds(2);
  })) << "the registry kept receiving requests";

  // The control: a valid piece request is answered with the piece.
  {
    RawResponse response =
        Send(peer_, port,
             Request("GET", StrCat(DownloadPath(id_), "?peerId=test"),
                     StrCat("Range: bytes=", kPieceSize, "-", 2 * kPieceSize - 1, "\r\n")));
    EXPECT_EQ(response.status, 206) << Printable(response.raw, 300);
    EXPECT_EQ(response.Header("Content-Range"),
              StrCat("bytes ", kPieceSize, "-", 2 * kPieceSize - 1, "/", blob_.size));
    EXPECT_TRUE(response.body == local.data().substr(kPieceSize, kPieceSize))
        << "piece 1 from the upload port is not the blob's (" << response.body.size() << " bytes)";
  }

  ExpectMalformedRejected(peer_, port);

  // Unknown tasks: 404.
  ExpectStatus(peer_, port, Request("GET", DownloadPath(std::string(64, 'a'))), 404);
  ExpectStatus(peer_, port, Request("GET", StrCat("/v1/tasks/", std::string(64, 'b'))), 404);
  // Pieces out of range: 416 with the task's length.
  for (const std::string& range :
       {StrCat("bytes=", blob_.size, "-"), StrCat("bytes=0-", blob_.size),
        StrCat("bytes=", blob_.size, "-", blob_.size + kPieceSize - 1),
        std::string("bytes=999999999999-"), StrCat("bytes=-", blob_.size + 1)}) {
    RawResponse response =
        Send(peer_, port, Request("GET", DownloadPath(id_), StrCat("Range: ", range, "\r\n")));
    EXPECT_EQ(response.status, 416) << range << ": " << Printable(response.raw, 300);
    EXPECT_EQ(response.Header("Content-Range"), StrCat("bytes */", blob_.size)) << range;
  }
  for (const char* range : {"bytes=5-2", "bytes=0-1,5-6", "bytes=abc-", "lines=0-5", "bytes=-0"}) {
    ExpectRejected(peer_, port, Request("GET", DownloadPath(id_), StrCat("Range: ", range, "\r\n")),
                   400, 416);
  }
  ExpectStatus(peer_, port, Request("GET", DownloadPath(id_), "X-Naiad-Wait-Ms: soon\r\n"), 400);
  ExpectStatus(peer_, port, Request("GET", DownloadPath(id_), "X-Naiad-Wait-Ms: -5\r\n"), 400);
  ExpectStatus(peer_, port, Request("GET", DownloadPath(id_), "X-Naiad-Wait-Ms: 1e9\r\n"), 400);
  // (A wait too long, even past 64 bits, is cut to the maximum: that is not an error.)

  // Task ids that are not 64 lowercase hex digits never reach the store: 400.
  std::string upper = absl::AsciiStrToUpper(id_);
  for (const std::string& target : {
           std::string("/download/../etc/passwd"),
           std::string("/download/../../../../etc/passwd"),
           std::string("/download/%2e%2e/%2e%2e%2fetc%2fpasswd"),
           std::string("/download/..%2f..%2fetc/passwd"),
           StrCat("/download/", id_.substr(0, 3), "/", id_, "0"),  // 65 hex digits
           StrCat("/download/", id_.substr(0, 3), "/", id_.substr(0, 63)),
           StrCat("/download/", upper.substr(0, 3), "/", upper),
           StrCat("/download/zzz/", id_),  // the prefix is not the id's
           StrCat("/download/", id_.substr(0, 3), "/", id_, "/../../../etc/passwd"),
           StrCat("/download/", id_.substr(0, 3), "/", id_, "%00"),
           StrCat("/download/", id_.substr(0, 3), "/", id_.substr(0, 62), "%2f"),
           std::string("/download/"),
           std::string("/v1/tasks/../../etc/passwd"),
           std::string("/v1/tasks/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
           StrCat("/v1/tasks/", id_, "0"),
       }) {
    ExpectStatus(peer_, port, Request("GET", target), 400);
  }
  // Paths that are no endpoint: 404.
  for (const char* target : {"/etc/passwd", "/../../etc/passwd", "/download", "/v1/tasks"}) {
    ExpectRejected(peer_, port, Request("GET", target), 400, 404);
  }
  // Other methods, tunnels and forward-proxy requests are not served.
  ExpectStatus(peer_, port, Request("DELETE", DownloadPath(id_)), 405);
  ExpectStatus(peer_, port, Request("PUT", DownloadPath(id_)), 405);
  ExpectStatus(peer_, port, Request("CONNECT", StrCat(swarm_->Address(0), ":443")), 405);
  ExpectRejected(peer_, port, Request("GET", StrCat(registry().url(), "/v2/")), 400, 404);
  ExpectRejected(peer_, port, Request("GET", StrCat(registry().BlobUrl(kRepo, blob_.digest))), 400,
                 404);
  // A peer that is not a seed takes no seed requests.
  ExpectStatus(peer_, port,
               "POST /v1/seed HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: "
               "close\r\n\r\n{}",
               404);

  // The seed's seed endpoint refuses what is not a task the scheduler could have sent.
  const int seed = swarm_->seed_host();
  const uint64_t seed_tasks = Metric(seed, "naiad_peer_tasks_started_total");
  auto seed_request = [](std::string_view body) {
    return StrCat("POST /v1/seed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
                  "Content-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
  };
  const std::string good_url = registry().BlobUrl(kRepo, blob_.digest);
  for (const std::string& body : {
           std::string("not json"),
           std::string("[]"),
           std::string("{}"),
           StrCat(R"({"task_id":"../../etc/passwd","url":")", good_url,
                  R"(","content_length":10,"piece_size":0})"),
           StrCat(R"({"task_id":")", id_, R"(0","url":")", good_url,
                  R"(","content_length":10,"piece_size":0})"),
           StrCat(R"({"task_id":")", id_,
                  R"(","url":"file:///etc/passwd","content_length":10,"piece_size":0})"),
           StrCat(R"({"task_id":")", id_,
                  R"(","url":"gopher://x/","content_length":10,"piece_size":0})"),
           StrCat(R"({"task_id":")", id_, R"(","url":")", good_url,
                  R"(","content_length":-1,"piece_size":0})"),
           StrCat(R"({"task_id":")", id_, R"(","url":")", good_url,
                  R"(","content_length":10,"piece_size":0,"digest":"md5:abc"})"),
           StrCat(R"({"task_id":")", id_, R"(","url":")", good_url,
                  R"(","content_length":10,"piece_size":0,"headers":{"X":"a\r\nB: c"}})"),
           StrCat(R"({"task_id":")", id_, R"(","url":")", good_url, R"(","pad":")",
                  std::string(70 << 10, 'p'), R"(","content_length":10,"piece_size":0})"),
       }) {
    ExpectRejected(seed, port, seed_request(body), 400, 413);
  }
  ExpectStatus(seed, port, Request("GET", "/v1/seed"), 405);
  EXPECT_EQ(Metric(seed, "naiad_peer_tasks_started_total"), seed_tasks)
      << "a refused seed request started a task";

  ASSERT_OK_AND_ASSIGN(uint64_t requests_after, registry().RequestCount());
  EXPECT_EQ(requests_after, requests_before) << "requests to the upload ports reached the registry";
  ExpectStillServing(peer_);
  ExpectStillServing(seed);
  EXPECT_OK(swarm_->Stop());
}

// ---------------------------------------------------------------------------------------------
// The harness's own parser.

TEST(PrometheusValueTest, ReadsCountersGaugesAndLabelSets) {
  const std::string text =
      "# HELP naiad_peer_origin_bytes_total Piece bytes.\n"
      "# TYPE naiad_peer_origin_bytes_total counter\n"
      "naiad_peer_origin_bytes_total 268435456\n"
      "naiad_peer_origin_bytes_total_extra 5\n"
      "naiad_scheduler_leases_total{result=\"granted\"} 3\n"
      "naiad_scheduler_leases_total{result=\"expired\"} 4 1700000000\n"
      "naiad_peer_store_bytes 1.5e+03\n";
  EXPECT_THAT(PrometheusValue(text, "naiad_peer_origin_bytes_total"), IsOkAndHolds(268435456.0));
  EXPECT_THAT(PrometheusValue(text, "naiad_scheduler_leases_total"), IsOkAndHolds(7.0));
  EXPECT_THAT(PrometheusValue(text, "naiad_peer_store_bytes"), IsOkAndHolds(1500.0));
  EXPECT_THAT(PrometheusValue(text, "naiad_peer"), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(PrometheusValue("x{a=\"b\"} nope\n", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
}

}  // namespace
}  // namespace naiad::testing
