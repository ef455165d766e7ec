// The seed's path end to end (docs/design/seed-path.md): on every node `naiad fs` mounts the
// python image with the seed's nydusd config, whose registry mirror is the node's own `naiad
// peer` at 127.0.0.1:65001; the peers form a swarm with `naiad scheduler` and a seed peer; the
// registry sits behind a 100 Mbit/s link. Nodes start `python3 -V` in a chroot over an overlay,
// as a container runtime would, all at once.
#include <cstdio>
#include <map>
#include <thread>

#include "absl/synchronization/notification.h"
#include "base/file.h"
#include "base/status_matchers.h"
#include "base/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/testing/lazy_node.h"
#include "test/testing/p2p_cluster.h"
#include "test/testing/rafs_convert.h"
#include "test/testing/test_env.h"
#include "test/testing/test_images.h"

namespace naiad::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kRepo[] = "library/python-naiad";
constexpr int kNodes = 8;
constexpr double kOriginMbit = 100;

// The python image and its RAFS conversion, made once for the whole suite.
ConvertedTestImage* shared = nullptr;

// What one node's start did.
struct Start {
  absl::Status status;
  std::string output;
};

class SeedPathTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!RunningAsRoot()) return;
    auto converted = ConvertTestImage("python", "naiad-seed-path-");
    ASSERT_OK(converted.status());
    shared = converted->release();
  }
  static void TearDownTestSuite() {
    delete shared;
    shared = nullptr;
  }

  void SetUp() override {
    NAIAD_SKIP_UNLESS_ROOT();
    ASSERT_NE(shared, nullptr);
  }

  void TearDown() override {
    nodes_.clear();  // every mount down before the swarm goes
    if (swarm_ != nullptr && HasFailure()) {
      std::string keep = StrCat("/tmp/naiad-seed-path-logs-", ::getpid());
      if (swarm_->CopyLogsTo(keep).ok()) ADD_FAILURE() << "daemon logs kept in " << keep;
    }
    if (swarm_ != nullptr) {
      EXPECT_OK(swarm_->Stop()) << swarm_->Logs();
    }
  }

  // The swarm with the seed's dfdaemon settings, the image's blobs in its registry, and the
  // registry's link shaped.
  void StartSwarm(int peers, bool prefetch) {
    ASSERT_OK_AND_ASSIGN(
        swarm_,
        P2pCluster::Start({.peers = peers, .prefetch = prefetch, .seed_style_config = true}));
    for (const std::string& blob : shared->rafs.blob_paths) {
      ASSERT_OK(swarm_->registry().PushBlobFile(kRepo, blob).status());
    }
    ASSERT_OK(swarm_->net().SetEgressLimit(P2pCluster::kRegistryHost, kOriginMbit));
    ASSERT_OK(swarm_->registry().ResetCounters());
  }

  std::string CacheDir(int host) const { return StrCat(swarm_->dir(), "/node", host, "-cache"); }

  // Mounts the image on each of `hosts` (one after the other: a daemon belongs to the thread
  // that starts it), each with the seed's nydusd config.
  void MountNodes(const std::vector<int>& hosts, bool fs_prefetch) {
    for (int host : hosts) {
      ASSERT_OK_AND_ASSIGN(nlohmann::json config,
                           SeedNydusdConfig({.registry = swarm_->registry().host_port(),
                                             .repo = kRepo,
                                             .work_dir = CacheDir(host),
                                             .fs_prefetch = fs_prefetch}));
      std::string dir = StrCat(swarm_->dir(), "/node", host);
      ASSERT_OK(CreateDirectories(dir));
      ASSERT_OK_AND_ASSIGN(nodes_[host],
                           LazyNode::Start({.config = config,
                                            .bootstrap = shared->rafs.bootstrap,
                                            .netns_path = swarm_->net().NetnsPath(host),
                                            .dir = dir}));
    }
  }

  // Runs `argv` on every node of `hosts` at the same moment.
  std::vector<Start> RunAtOnce(const std::vector<int>& hosts,
                               const std::vector<std::string>& argv) {
    std::vector<Start> starts(hosts.size());
    std::vector<std::thread> threads;
    absl::Notification go;
    for (size_t i = 0; i < hosts.size(); ++i) {
      LazyNode* node = nodes_.at(hosts[i]).get();
      threads.emplace_back([&, i, node] {
        go.WaitForNotification();
        absl::StatusOr<std::string> out = node->Run(argv);
        starts[i].status = out.status();
        if (out.ok()) starts[i].output = *out;
      });
    }
    go.Notify();
    for (std::thread& thread : threads) thread.join();
    return starts;
  }

  void ExpectPythonStarted(const std::vector<int>& hosts, const std::vector<Start>& starts) {
    for (size_t i = 0; i < starts.size(); ++i) {
      EXPECT_OK(starts[i].status) << "node on host " << hosts[i] << "\n"
                                  << nodes_.at(hosts[i])->mount().Log();
      EXPECT_THAT(starts[i].output, HasSubstr("Python 3.")) << "host " << hosts[i];
    }
  }

  std::vector<int> Hosts(int first_peer, int count) const {
    std::vector<int> hosts;
    for (int i = first_peer; i < first_peer + count; ++i) hosts.push_back(swarm_->peer_host(i));
    return hosts;
  }

  uint64_t RegistryBlobBytes() {
    absl::StatusOr<uint64_t> served =
        swarm_->registry().BytesServed(RegistryFixture::Traffic::kBlobGets);
    EXPECT_OK(served.status());
    return served.value_or(0);
  }

  double PeerMetric(int host, std::string_view name) {
    absl::StatusOr<double> value = swarm_->PeerMetric(host, name);
    EXPECT_OK(value.status()) << name << " of host " << host;
    return value.value_or(0);
  }

  std::unique_ptr<P2pCluster> swarm_;
  std::map<int, std::unique_ptr<LazyNode>> nodes_;
};

// Prefetch off (in the peers and in naiad fs): the registry serves only pieces holding chunks
// that some node read, each once. Then a second wave of fresh nodes gets everything from peers.
TEST_F(SeedPathTest, EightColdNodesReadEachPieceFromTheRegistryOnceAndASecondWaveNone) {
  StartSwarm(2 * kNodes, /*prefetch=*/false);
  const std::vector<int> first = Hosts(0, kNodes);
  MountNodes(first, /*fs_prefetch=*/false);
  std::vector<Start> starts = RunAtOnce(first, {"/usr/bin/python3", "-V"});
  ExpectPythonStarted(first, starts);

  uint64_t fs_bytes = 0;
  std::vector<std::string> caches;
  for (int host : first) {
    ASSERT_OK_AND_ASSIGN(LazyNode::Sources sources, nodes_.at(host)->BackendSources());
    EXPECT_EQ(sources.origin, 0u) << "host " << host << " bypassed its peer";
    fs_bytes += sources.total();
    ASSERT_OK(nodes_.at(host)->Stop());
    caches.push_back(CacheDir(host));
  }
  ASSERT_OK_AND_ASSIGN(ChunkUnion read, UnionOfCachedChunks(shared->rafs.bootstrap, caches));
  const uint64_t origin = RegistryBlobBytes();
  std::printf(
      "first wave: %d nodes read %.1f MB through their peers; union of chunks read %.1f MB "
      "(%llu chunks), in whole pieces %.1f MB; registry served %.1f MB (%.2fx the chunks, "
      "%.2fx the pieces) of %.1f MB of blobs\n",
      kNodes, fs_bytes / 1e6, read.chunk_bytes / 1e6, static_cast<unsigned long long>(read.chunks),
      read.piece_bytes / 1e6, origin / 1e6, static_cast<double>(origin) / read.chunk_bytes,
      static_cast<double>(origin) / read.piece_bytes, shared->blob_bytes / 1e6);
  for (uint64_t size : {128 << 10, 1 << 20}) {
    ASSERT_OK_AND_ASSIGN(ChunkUnion what_if,
                         UnionOfCachedChunks(shared->rafs.bootstrap, caches, size));
    std::printf("  (in %llu KiB pieces it would be %.1f MB)\n",
                static_cast<unsigned long long>(size >> 10), what_if.piece_bytes / 1e6);
  }
  EXPECT_GT(read.chunk_bytes, 0u);
  // Each piece once: never more than the pieces holding what was read.
  EXPECT_LE(origin, read.piece_bytes) << swarm_->Logs();
  EXPECT_LT(origin, shared->blob_bytes / 4) << "not lazy";

  // Second wave: fresh nodes, fresh peers; every byte from the first wave's peers.
  ASSERT_OK(swarm_->registry().ResetCounters());
  const std::vector<int> second = Hosts(kNodes, kNodes);
  MountNodes(second, /*fs_prefetch=*/false);
  starts = RunAtOnce(second, {"/usr/bin/python3", "-V"});
  ExpectPythonStarted(second, starts);
  EXPECT_EQ(RegistryBlobBytes(), 0u) << swarm_->Logs();
  for (int host : second) {
    EXPECT_EQ(PeerMetric(host, "naiad_peer_origin_bytes_total"), 0) << "host " << host;
    EXPECT_GT(PeerMetric(host, "naiad_peer_peer_bytes_total"), 0) << "host " << host;
  }
}

// Prefetch on, as in the seed (download.prefetch in the peers, fs_prefetch in naiad fs): the
// whole image ends up in the swarm, and the registry still serves each byte once.
TEST_F(SeedPathTest, EightColdNodesWithPrefetchGetTheWholeImageFromTheRegistryOnce) {
  StartSwarm(kNodes, /*prefetch=*/true);
  const std::vector<int> hosts = Hosts(0, kNodes);
  MountNodes(hosts, /*fs_prefetch=*/true);
  std::vector<Start> starts = RunAtOnce(hosts, {"/usr/bin/python3", "-V"});
  ExpectPythonStarted(hosts, starts);
  // Every peer completes every blob in the background; then the registry's count is final.
  const absl::Time deadline = absl::Now() + absl::Minutes(5);
  const double want = static_cast<double>(shared->blob_bytes) * kNodes;
  double stored = 0;
  while (absl::Now() < deadline) {
    stored = 0;
    for (int host : hosts) stored += PeerMetric(host, "naiad_peer_store_bytes");
    if (stored >= want) break;
    absl::SleepFor(absl::Milliseconds(500));
  }
  ASSERT_GE(stored, want) << "the peers did not complete the image in 5 minutes\n"
                          << swarm_->Logs();
  const uint64_t origin = RegistryBlobBytes();
  std::printf("with prefetch: registry served %.1f MB for %.1f MB of blobs on %d nodes\n",
              origin / 1e6, shared->blob_bytes / 1e6, kNodes);
  EXPECT_EQ(origin, shared->blob_bytes) << swarm_->Logs();
}

// The local peer dies while the node starts: naiad fs turns to the registry (mirror failover) and
// the start completes; once the peer is back, the node's reads go through it again.
TEST_F(SeedPathTest, LocalPeerKilledMidStartFailsOverToTheRegistryAndBack) {
  StartSwarm(1, /*prefetch=*/false);
  const int host = swarm_->peer_host(0);
  MountNodes({host}, /*fs_prefetch=*/false);
  LazyNode& node = *nodes_.at(host);

  Start start;
  std::thread python([&] {
    absl::StatusOr<std::string> out = node.Run({"/usr/bin/python3", "-V"});
    start.status = out.status();
    if (out.ok()) start.output = *out;
  });
  // Mid-start: as soon as the first bytes came through the peer.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    absl::StatusOr<LazyNode::Sources> sources = node.BackendSources();
    if (sources.ok() && sources->mirror > 0) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_OK(swarm_->Kill(host));
  python.join();
  ASSERT_OK(start.status) << node.mount().Log();
  EXPECT_THAT(start.output, HasSubstr("Python 3."));
  ASSERT_OK_AND_ASSIGN(LazyNode::Sources killed, node.BackendSources());
  EXPECT_GT(killed.origin, 0u) << "the start did not fall back to the registry";

  ASSERT_OK(swarm_->Restart(host));
  // The fs's health checker pings the mirror (ping_url) and takes it back; new reads go there.
  LazyNode::Sources after = killed;
  const absl::Time back_deadline = absl::Now() + absl::Seconds(60);
  int round = 0;
  while (after.mirror == killed.mirror && absl::Now() < back_deadline) {
    absl::SleepFor(absl::Seconds(1));
    // Each round reads files not read before, so that something must be fetched.
    const char* modules[] = {"json",    "sqlite3",        "email.parser", "http.client", "xml.dom",
                             "asyncio", "unittest",       "argparse",     "decimal",     "csv",
                             "logging", "urllib.request", "zipfile",      "tarfile",     "pydoc"};
    if (round >= static_cast<int>(std::size(modules))) break;
    ASSERT_OK(node.Run({"/usr/bin/python3", "-c", StrCat("import ", modules[round++])}).status());
    ASSERT_OK_AND_ASSIGN(after, node.BackendSources());
  }
  EXPECT_GT(after.mirror, killed.mirror) << "reads never returned to the restarted peer\n"
                                         << node.mount().Log();
}

}  // namespace
}  // namespace naiad::testing
