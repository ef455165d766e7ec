// naiad_demo: the main job end to end on this machine, as far as Naiad goes today (scripts/demo
// runs it). It grows with each component until it is the seed's scenario: registry -> convert ->
// swarm -> lazy container start.
//
// Today: a realistic python image (debootstrap + python3, build-essential, git) sits in an OCI
// registry on its own network-namespace host behind a 100 Mbit/s link. `naiad image` converts
// each layer to RAFS v6 and merges them, the blobs go to the registry, and N nodes (other hosts)
// fetch the image at once with `naiad get` (every byte verified against its digest) and check
// every chunk with `naiad image check`: the registry serves the whole image once per node. Then
// the same nodes start python3 lazily: `naiad fs` mounts the image from the registry, an
// overlayfs goes on top as a container runtime would, and `python3 -V` runs in a chroot, fetching
// only the chunks it reads.
#include <sys/mount.h>
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
#include "base/file.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "nlohmann/json.hpp"
#include "test/testing/fs_mount.h"
#include "test/testing/netns_cluster.h"
#include "test/testing/rafs_convert.h"
#include "test/testing/registry_fixture.h"
#include "test/testing/test_images.h"

namespace naiad::demo {
namespace {

using testing::NetnsCluster;
using testing::RegistryFixture;
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
    ASSIGN_OR_RETURN(Digest pushed,
                     registry.PushBlobFile("library/python-naiad", rafs.blob_paths[i]));
    converted.blob_digests.push_back(pushed.ToString());
    converted.blob_sizes.push_back(rafs.blob_sizes[i]);
    const nlohmann::json& out = rafs.layer_reports[i];
    std::printf("  %-8zu %12.1f %12.1f %8llu %8llu %10.1f\n", i, Mb(image.layers[i].size),
                Mb(rafs.blob_sizes[i]), out["stats"]["files"].get<unsigned long long>(),
                out["stats"]["chunks_stored"].get<unsigned long long>(),
                out["stats"]["seconds"].get<double>());
  }
  ASSIGN_OR_RETURN(Digest boot_digest,
                   registry.PushBlobFile("library/python-naiad", rafs.bootstrap));
  converted.bootstrap_digest = boot_digest.ToString();
  converted.bootstrap_size = std::filesystem::file_size(rafs.bootstrap);
  converted.bootstrap_path = rafs.bootstrap;
  std::printf("  merged bootstrap: %.2f MB, blobs named by their layer digests\n",
              Mb(converted.bootstrap_size));
  return converted;
}

// The script one node runs: fetch every blob and the bootstrap, verifying digests, then check
// every chunk of the image against the bootstrap.
std::string NodeScript(const Flags& flags, const ConvertedImage& image, const std::string& base_url,
                       const std::string& dir) {
  std::string script = "set -e\n";
  std::vector<std::string> all = image.blob_digests;
  all.push_back(image.bootstrap_digest);
  for (const std::string& digest : all) {
    std::string name = digest == image.bootstrap_digest ? "image.boot" : digest.substr(7);
    script += StrCat(flags.naiad, " get -q ", base_url, digest, " -O ", dir, "/", name,
                     " --digest ", digest, "\n");
  }
  script += StrCat(flags.naiad, " image check ", dir, "/image.boot --blob-dir ", dir, " -J ", dir,
                   "/check.json >/dev/null\n");
  return script;
}

absl::Status RunNodes(const Flags& flags, const NetnsCluster& cluster, const ConvertedImage& image,
                      RegistryFixture& registry, const std::string& work) {
  RETURN_IF_ERROR(registry.ResetCounters());
  std::string base_url = StrCat(registry.url(), "/v2/library/python-naiad/blobs/");
  std::vector<Subprocess> nodes;
  std::vector<absl::Time> done(flags.nodes);
  absl::Time start = absl::Now();
  for (int n = 1; n <= flags.nodes; ++n) {
    std::string dir = StrCat(work, "/node", n);
    RETURN_IF_ERROR(CreateDirectories(dir));
    ASSIGN_OR_RETURN(Subprocess p,
                     cluster.Spawn(n, {"sh", "-c", NodeScript(flags, image, base_url, dir)},
                                   {.output_path = dir + "/log"}));
    nodes.push_back(std::move(p));
  }
  for (int n = 0; n < flags.nodes; ++n) {
    ASSIGN_OR_RETURN(int code, nodes[n].Wait(absl::Minutes(30)));
    done[n] = absl::Now();
    if (code != 0) {
      ASSIGN_OR_RETURN(std::string log, ReadFileToString(StrCat(work, "/node", n + 1, "/log")));
      return absl::InternalError(StrCat("node ", n + 1, " failed (exit ", code, "): ", log));
    }
  }
  std::printf("  %-6s %-14s %10s %s\n", "node", "address", "seconds", "verified chunks");
  for (int n = 0; n < flags.nodes; ++n) {
    ASSIGN_OR_RETURN(std::string report,
                     ReadFileToString(StrCat(work, "/node", n + 1, "/check.json")));
    nlohmann::json check = nlohmann::json::parse(report, nullptr, false);
    std::printf("  %-6d %-14s %10.1f %llu\n", n + 1, cluster.Address(n + 1).c_str(),
                absl::ToDoubleSeconds(done[n] - start), check.value("verified_chunks", 0ull));
  }
  ASSIGN_OR_RETURN(uint64_t served, registry.BytesServed(RegistryFixture::Traffic::kBlobGets));
  double copies = static_cast<double>(served) / static_cast<double>(image.total_bytes());
  std::printf("\n  registry served %.1f MB for a %.1f MB image: %.2f copies for %d nodes.\n",
              Mb(served), Mb(image.total_bytes()), copies, flags.nodes);
  return absl::OkStatus();
}

// One node's lazy start: mount the image with `naiad fs` (registry backend, inside the node's
// network namespace), put a container-style overlayfs on it, and run python3 -V in a chroot.
struct LazyResult {
  absl::Status status;
  double seconds = 0;
  std::string version;
  uint64_t fetched = 0;
};

LazyResult LazyStartNode(const Flags& flags, const NetnsCluster& cluster, int n,
                         const ConvertedImage& image, const RegistryFixture& registry,
                         const std::string& dir) {
  LazyResult result;
  absl::Time start = absl::Now();
  nlohmann::json config = {
      {"device",
       {{"backend",
         {{"type", "registry"},
          {"config",
           {{"scheme", "http"},
            {"host", registry.host_port()},
            {"repo", "library/python-naiad"},
            {"timeout", 30},
            {"connect_timeout", 10},
            {"retry_limit", 2}}}}},
        {"cache", {{"type", "blobcache"}, {"config", {{"work_dir", dir + "/cache"}}}}}}},
      {"enable_xattr", true}};
  auto mount = testing::FsMount::Start({.config = config,
                                        .bootstrap = image.bootstrap_path,
                                        .netns_path = cluster.NetnsPath(n),
                                        .naiad = flags.naiad});
  if (!mount.ok()) {
    result.status = mount.status();
    return result;
  }
  for (const char* sub : {"/upper", "/work", "/merged"}) {
    result.status.Update(CreateDirectories(dir + sub));
  }
  std::string merged = dir + "/merged";
  std::string options = StrCat("lowerdir=", (*mount)->mountpoint(), ",upperdir=", dir,
                               "/upper,workdir=", dir, "/work");
  if (result.status.ok() &&
      ::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()) != 0) {
    result.status = ErrnoError(errno, "mount overlay on the naiad fs mount");
  }
  if (result.status.ok()) {
    absl::StatusOr<std::string> out = RunCommandOk({"chroot", merged, "/usr/bin/python3", "-V"});
    result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    if (out.ok()) result.version = std::string(absl::StripAsciiWhitespace(*out));
    result.status = out.status();
    umount2(merged.c_str(), MNT_DETACH);
  }
  if (auto backend = (*mount)->Api("/api/v1/metrics/backend"); backend.ok()) {
    result.fetched = (*backend)["read_amount_total"].get<uint64_t>();
  }
  result.status.Update((*mount)->Stop());
  return result;
}

absl::Status RunLazyStart(const Flags& flags, const NetnsCluster& cluster,
                          const ConvertedImage& image, RegistryFixture& registry,
                          const std::string& work) {
  RETURN_IF_ERROR(registry.ResetCounters());
  std::vector<LazyResult> results(flags.nodes);
  std::vector<std::thread> threads;
  for (int n = 1; n <= flags.nodes; ++n) {
    std::string dir = StrCat(work, "/lazy", n);
    RETURN_IF_ERROR(CreateDirectories(dir));
    threads.emplace_back(
        [&, n, dir] { results[n - 1] = LazyStartNode(flags, cluster, n, image, registry, dir); });
  }
  for (std::thread& thread : threads) thread.join();
  std::printf("  %-6s %10s %14s  %s\n", "node", "seconds", "fetched MB", "python3 -V");
  for (int n = 0; n < flags.nodes; ++n) {
    RETURN_IF_ERROR(Annotate(results[n].status, StrCat("node ", n + 1)));
    std::printf("  %-6d %10.1f %14.1f  %s\n", n + 1, results[n].seconds, Mb(results[n].fetched),
                results[n].version.c_str());
  }
  ASSIGN_OR_RETURN(uint64_t served, registry.BytesServed(RegistryFixture::Traffic::kBlobGets));
  std::printf(
      "\n  registry served %.1f MB for %d lazy starts of a %.1f MB image (%.1f%% of it per "
      "node).\n",
      Mb(served), flags.nodes, Mb(image.total_bytes()),
      100.0 * static_cast<double>(served) / flags.nodes / static_cast<double>(image.total_bytes()));
  std::printf(
      "  (Next: `naiad peer` as the mirror makes the registry serve each chunk once per\n"
      "   cluster.)\n");
  return absl::OkStatus();
}

absl::Status Run(const Flags& flags) {
  if (::geteuid() != 0) return absl::PermissionDeniedError("run as root (network namespaces, tc)");
  Step(StrCat("Test image \"", flags.recipe, "\" (debootstrap; cached under ",
              TestImages::CacheDir(), ")"));
  ASSIGN_OR_RETURN(TestImage image, TestImages::Get(flags.recipe));
  std::printf("  %s: %zu layers, %.1f MB unpacked%s\n", image.name.c_str(), image.layers.size(),
              Mb(image.unpacked_bytes),
              image.built ? StrCat(", built in ", image.build_seconds, " s").c_str() : ", cached");

  Step(StrCat("Cluster: registry host + ", flags.nodes,
              " nodes in network namespaces, registry egress ", flags.mbit, " Mbit/s"));
  ASSIGN_OR_RETURN(std::unique_ptr<NetnsCluster> cluster, NetnsCluster::Create(flags.nodes + 1));
  RETURN_IF_ERROR(cluster->SetEgressLimit(0, flags.mbit));
  ASSIGN_OR_RETURN(
      std::unique_ptr<RegistryFixture> registry,
      RegistryFixture::Start(
          {.address = cluster->Address(0), .port = 5000, .netns_path = cluster->NetnsPath(0)}));
  std::printf("  registry at %s\n", registry->url().c_str());
  ASSIGN_OR_RETURN(std::string ref, image.PushTo(*registry, "library/python"));
  std::printf("  pushed the OCI image: %s\n", ref.c_str());

  ASSIGN_OR_RETURN(TempDir work, TempDir::Create("naiad-demo-"));
  Step("Convert to RAFS v6 with `naiad image create` per layer + `naiad image merge`");
  ASSIGN_OR_RETURN(ConvertedImage converted, Convert(flags, image, *registry, work.path()));

  Step(StrCat(flags.nodes,
              " nodes fetch the image at once (`naiad get --digest`, then `naiad image check`)"));
  RETURN_IF_ERROR(RunNodes(flags, *cluster, converted, *registry, work.path()));

  Step(
      StrCat(flags.nodes, " nodes start python3 lazily at once (`naiad fs` + overlayfs + chroot)"));
  return RunLazyStart(flags, *cluster, converted, *registry, work.path());
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
