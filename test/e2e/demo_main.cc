// naiad_demo: the seed's scenario end to end on this machine (scripts/demo runs it;
// docs/design/seed-path.md).
//
// A realistic python image (debootstrap + python3, build-essential, git) sits in an OCI registry
// on its own network-namespace host behind a 100 Mbit/s link. `naiad image` converts each layer to
// RAFS v6 and merges them; the blobs go to the registry. `naiad scheduler` runs on a host of its
// own, a seed peer on another, and each of N nodes (hosts) runs `naiad peer` configured
// as the seed's dfdaemon section. Then all nodes start python3 at once, the way the seed's
// containerd + nydus snapshotter would: `naiad fs` mounts the image with the seed's
// nydusd-config.json (registry backend, mirror 127.0.0.1:65001 = the node's own peer), an
// overlayfs goes on top, and `python3 -V` runs in a chroot. The demo prints each node's start-up
// time and where its bytes came from, and what the registry served in all.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "nlohmann/json.hpp"
#include "test/testing/lazy_node.h"
#include "test/testing/p2p_cluster.h"
#include "test/testing/rafs_convert.h"
#include "test/testing/registry_fixture.h"
#include "test/testing/test_images.h"

namespace naiad::demo {
namespace {

using testing::RegistryFixture;

constexpr char kRepo[] = "library/python-naiad";
using testing::TestImage;
using testing::TestImages;

struct Flags {
  std::string naiad;
  int nodes = 3;
  double mbit = 100;
  std::string recipe = "python";
};

struct ConvertedImage {
  std::vector<std::string> blob_digests;  // sha256:<hex>, bottom layer first
  std::vector<uint64_t> blob_sizes;
  std::string bootstrap_digest;
  std::string bootstrap_path;
  uint64_t bootstrap_size = 0;
  uint64_t total_bytes() const {
    uint64_t sum = bootstrap_size;
    for (uint64_t s : blob_sizes) sum += s;
    return sum;
  }
};

void Step(const std::string& text) {
  std::printf("\n==> %s\n", text.c_str());
  std::fflush(stdout);
}

double Mb(uint64_t bytes) { return static_cast<double>(bytes) / 1e6; }

// Converts every OCI layer with `naiad image create`, merges the layer bootstraps, and pushes
// the blobs and the bootstrap to the registry.
absl::StatusOr<ConvertedImage> Convert(const Flags& flags, const TestImage& image,
                                       RegistryFixture& registry, const std::string& work) {
  ASSIGN_OR_RETURN(testing::RafsImage rafs, testing::ConvertToRafs(image, work, flags.naiad));
  ConvertedImage converted;
  std::printf("  %-8s %12s %12s %8s %8s %10s\n", "layer", "OCI MB", "RAFS MB", "files", "chunks",
              "seconds");
  for (size_t i = 0; i < rafs.blob_paths.size(); ++i) {
    ASSIGN_OR_RETURN(Digest pushed, registry.PushBlobFile(kRepo, rafs.blob_paths[i]));
    converted.blob_digests.push_back(pushed.ToString());
    converted.blob_sizes.push_back(rafs.blob_sizes[i]);
    const nlohmann::json& out = rafs.layer_reports[i];
    std::printf("  %-8zu %12.1f %12.1f %8llu %8llu %10.1f\n", i, Mb(image.layers[i].size),
                Mb(rafs.blob_sizes[i]), out["stats"]["files"].get<unsigned long long>(),
                out["stats"]["chunks_stored"].get<unsigned long long>(),
                out["stats"]["seconds"].get<double>());
  }
  ASSIGN_OR_RETURN(Digest boot_digest, registry.PushBlobFile(kRepo, rafs.bootstrap));
  converted.bootstrap_digest = boot_digest.ToString();
  converted.bootstrap_size = std::filesystem::file_size(rafs.bootstrap);
  converted.bootstrap_path = rafs.bootstrap;
  std::printf("  merged bootstrap: %.2f MB, blobs named by their layer digests\n",
              Mb(converted.bootstrap_size));
  return converted;
}

// What one node's start did.
struct NodeStart {
  absl::Status status;
  double seconds = 0;
  std::string version;
  uint64_t fs_bytes = 0;      // what naiad fs got from its backend (its peer, or the registry)
  uint64_t origin_bytes = 0;  // what the node's peer fetched from the registry
  uint64_t peer_bytes = 0;    // what the node's peer fetched from other peers
  uint64_t cache_hits = 0;    // chunks naiad fs found in its blob cache
};

// One node: `naiad fs` with the seed's nydusd config (only the registry's address, the repo and
// the cache directory filled in) through the node's own peer, an overlay, `python3 -V` in a
// chroot. Runs in its own thread from mount to unmount (a daemon belongs to its thread).
NodeStart StartNode(const Flags& flags, testing::P2pCluster& swarm, int host,
                    const std::string& bootstrap, const std::string& dir, absl::Notification& go) {
  NodeStart result;
  absl::StatusOr<nlohmann::json> config = testing::SeedNydusdConfig(
      {.registry = swarm.registry().host_port(), .repo = kRepo, .work_dir = dir + "/cache"});
  if (!config.ok()) return {.status = config.status()};
  go.WaitForNotification();
  absl::Time start = absl::Now();
  auto node = testing::LazyNode::Start({.config = *config,
                                        .bootstrap = bootstrap,
                                        .netns_path = swarm.net().NetnsPath(host),
                                        .dir = dir,
                                        .naiad = flags.naiad});
  if (!node.ok()) return {.status = node.status()};
  absl::StatusOr<std::string> out = (*node)->Run({"/usr/bin/python3", "-V"});
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  result.status = out.status();
  if (out.ok()) result.version = std::string(absl::StripAsciiWhitespace(*out));
  if (auto sources = (*node)->BackendSources(); sources.ok()) result.fs_bytes = sources->total();
  if (auto cache = (*node)->mount().Api("/api/v1/metrics/blobcache"); cache.ok()) {
    result.cache_hits = cache->value("cache_hits", uint64_t{0});
  }
  result.status.Update((*node)->Stop());
  return result;
}

// With prefetch on (the seed's setting) every peer ends up with the whole image; the registry
// must still have served it once.
absl::Status WaitForSwarmToHoldImage(const Flags& flags, testing::P2pCluster& swarm,
                                     const ConvertedImage& image) {
  const uint64_t blobs = image.total_bytes() - image.bootstrap_size;
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + absl::Minutes(10);
  while (true) {
    double stored = 0;
    for (int i = 0; i < flags.nodes; ++i) {
      stored += swarm.PeerMetric(swarm.peer_host(i), "naiad_peer_store_bytes").value_or(0);
    }
    if (stored >= static_cast<double>(blobs) * flags.nodes) break;
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError("the peers did not get the whole image in 10 minutes");
    }
    absl::SleepFor(absl::Milliseconds(500));
  }
  ASSIGN_OR_RETURN(uint64_t served,
                   swarm.registry().BytesServed(testing::RegistryFixture::Traffic::kBlobGets));
  std::printf(
      "\n  %.1f s later every node's peer held the whole image; the registry served %.1f MB in\n"
      "  all for %d nodes: %.2f copies of the %.1f MB of blobs.\n",
      absl::ToDoubleSeconds(absl::Now() - start), Mb(served), flags.nodes,
      static_cast<double>(served) / static_cast<double>(blobs), Mb(blobs));
  return absl::OkStatus();
}

absl::Status RunLazyStart(const Flags& flags, testing::P2pCluster& swarm,
                          const ConvertedImage& image, const std::string& work) {
  RETURN_IF_ERROR(swarm.registry().ResetCounters());
  std::vector<NodeStart> results(flags.nodes);
  std::vector<std::thread> threads;
  absl::Notification go;
  for (int i = 0; i < flags.nodes; ++i) {
    std::string dir = StrCat(work, "/node", i + 1);
    RETURN_IF_ERROR(CreateDirectories(dir));
    threads.emplace_back([&, i, dir] {
      results[i] = StartNode(flags, swarm, swarm.peer_host(i), image.bootstrap_path, dir, go);
    });
  }
  go.Notify();
  for (std::thread& thread : threads) thread.join();
  ASSIGN_OR_RETURN(uint64_t at_start,
                   swarm.registry().BytesServed(testing::RegistryFixture::Traffic::kBlobGets));
  std::printf("  %-6s %-12s %9s %10s %10s %10s %10s  %s\n", "node", "address", "start s",
              "fs read MB", "origin MB", "peers MB", "cache hits", "python3 -V");
  for (int i = 0; i < flags.nodes; ++i) {
    NodeStart& r = results[i];
    RETURN_IF_ERROR(Annotate(r.status, StrCat("node ", i + 1)));
    const int host = swarm.peer_host(i);
    r.origin_bytes = swarm.PeerMetric(host, "naiad_peer_origin_bytes_total").value_or(0);
    r.peer_bytes = swarm.PeerMetric(host, "naiad_peer_peer_bytes_total").value_or(0);
    std::printf("  %-6d %-12s %9.2f %10.1f %10.1f %10.1f %10llu  %s\n", i + 1,
                swarm.Address(host).c_str(), r.seconds, Mb(r.fs_bytes), Mb(r.origin_bytes),
                Mb(r.peer_bytes), static_cast<unsigned long long>(r.cache_hits), r.version.c_str());
  }
  std::printf(
      "\n  When every node had started: the registry had served %.1f MB of the %.1f MB image.\n"
      "  (Peer columns are what each node's peer fetched until now: its prefetch of the whole\n"
      "   image, download.prefetch as in the seed, goes on in the background.)\n",
      Mb(at_start), Mb(image.total_bytes() - image.bootstrap_size));
  return WaitForSwarmToHoldImage(flags, swarm, image);
}

absl::Status Run(const Flags& flags) {
  if (::geteuid() != 0) return absl::PermissionDeniedError("run as root (network namespaces, tc)");
  Step(StrCat("Test image \"", flags.recipe, "\" (debootstrap; cached under ",
              TestImages::CacheDir(), ")"));
  ASSIGN_OR_RETURN(TestImage image, TestImages::Get(flags.recipe));
  std::printf("  %s: %zu layers, %.1f MB unpacked%s\n", image.name.c_str(), image.layers.size(),
              Mb(image.unpacked_bytes),
              image.built ? StrCat(", built in ", image.build_seconds, " s").c_str() : ", cached");

  Step(StrCat("Cluster in network namespaces: registry + `naiad scheduler`, a seed peer, ",
              flags.nodes,
              " nodes running `naiad peer` (the seed's dfdaemon settings); registry "
              "egress ",
              flags.mbit, " Mbit/s"));
  ASSIGN_OR_RETURN(std::unique_ptr<testing::P2pCluster> swarm,
                   testing::P2pCluster::Start({.peers = flags.nodes,
                                               .prefetch = true,
                                               .seed_style_config = true,
                                               .naiad = flags.naiad}));
  RETURN_IF_ERROR(swarm->net().SetEgressLimit(testing::P2pCluster::kRegistryHost, flags.mbit));
  std::printf("  registry at %s, scheduler at %s:%d, seed peer at %s\n",
              swarm->registry().url().c_str(),
              swarm->Address(testing::P2pCluster::kSchedulerHost).c_str(),
              testing::P2pCluster::kSchedulerPort, swarm->Address(swarm->seed_host()).c_str());
  ASSIGN_OR_RETURN(std::string ref, image.PushTo(swarm->registry(), "library/python"));
  std::printf("  pushed the OCI image: %s\n", ref.c_str());

  ASSIGN_OR_RETURN(TempDir work, TempDir::Create("naiad-demo-"));
  Step("Convert to RAFS v6 with `naiad image create` per layer + `naiad image merge`");
  ASSIGN_OR_RETURN(ConvertedImage converted, Convert(flags, image, swarm->registry(), work.path()));

  Step(StrCat(flags.nodes,
              " nodes start python3 at once: `naiad fs` (seed's nydusd config, mirror = the "
              "node's own peer) + overlayfs + chroot"));
  absl::Status status = RunLazyStart(flags, *swarm, converted, work.path());
  status.Update(swarm->Stop());
  return status;
}

}  // namespace
}  // namespace naiad::demo

int main(int argc, char** argv) {
  CLI::App app("Naiad end-to-end demo on this machine.", "naiad_demo");
  naiad::demo::Flags flags;
  app.add_option("--naiad", flags.naiad, "Path of the naiad binary")->required();
  app.add_option("--nodes", flags.nodes, "Nodes fetching the image")->check(CLI::Range(1, 32));
  app.add_option("--mbit", flags.mbit, "Registry egress limit, Mbit/s");
  app.add_option("--image", flags.recipe, "Test image recipe (python, node, ruby, golang)");
  CLI11_PARSE(app, argc, argv);
  flags.naiad = std::filesystem::absolute(flags.naiad).string();
  absl::Status status = naiad::demo::Run(flags);
  if (!status.ok()) {
    std::fprintf(stderr, "naiad_demo: %s\n", std::string(naiad::ToStd(status.message())).c_str());
    return 1;
  }
  std::printf("\nDemo finished; everything it started has been stopped and removed.\n");
  return 0;
}
