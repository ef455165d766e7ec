// File: test/testing/lazy_node.h
//
// One node of the seed's scenario (docs/design/seed-path.md): `naiad fs` mounts a RAFS image
// inside the node's network namespace with the seed's nydusd config, a container-style overlayfs
// goes on top, and commands run in a chroot of it, as a container runtime would start them. The
// demo, the seed-path end-to-end test and bench/seed-path share it.
//
//   ASSIGN_OR_RETURN(nlohmann::json config,
//                    SeedNydusdConfig({.registry = "10.0.0.1:5000", .repo = "library/python",
//                                      .work_dir = dir + "/cache"}));
//   ASSIGN_OR_RETURN(auto node, LazyNode::Start({.config = config, .bootstrap = boot,
//                                                .netns_path = net.NetnsPath(3), .dir = dir}));
//   ASSIGN_OR_RETURN(std::string version, node->Run({"/usr/bin/python3", "-V"}));
//   ASSIGN_OR_RETURN(LazyNode::Sources sources, node->BackendSources());
//   ASSERT_OK(node->Stop());
//
// The mount namespace is the caller's (only the network is the node's): the FUSE mount and the
// overlay are visible to the test, which is how it reads the node's files and chunk maps.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "test/testing/fs_mount.h"

namespace naiad::testing {

// What to fill into the seed's nydusd-config.json (src/fs/testdata, the seed's text verbatim).
struct SeedConfigFill {
  std::string registry;  // host:port of the registry, as the seed's config names docker.io's
  std::string repo;
  std::string work_dir;     // the node's blob cache (the seed's /var/lib/nydus/cache/)
  bool fs_prefetch = true;  // fs_prefetch.enable: the seed's config has it on
};

// The seed's config with only what names this machine changed: the registry backend's host and
// repo, its scheme (our test registry speaks plain http where docker.io speaks https), the
// mirror's X-Dragonfly-Registry header (the registry the peer relays to), the cache directory,
// and fs_prefetch.enable when `fill.fs_prefetch` is off. The mirror (127.0.0.1:65001) and its
// ping URL (127.0.0.1:40901) stay as they are: inside a node, that is the node's own peer.
absl::StatusOr<nlohmann::json> SeedNydusdConfig(const SeedConfigFill& fill);

struct LazyNodeOptions {
  nlohmann::json config;
  std::string bootstrap;
  std::string netns_path;  // the node's network namespace; empty: ours
  std::string dir;         // scratch for the overlay (upper, work, merged); must exist
  std::string naiad;       // the binary; empty: the one in this build tree
  std::string log_level;   // naiad fs --log-level; empty: debug
};

class LazyNode {
 public:
  // Mounts the image and the overlay on it.
  static absl::StatusOr<std::unique_ptr<LazyNode>> Start(LazyNodeOptions options);
  ~LazyNode();
  LazyNode(const LazyNode&) = delete;
  LazyNode& operator=(const LazyNode&) = delete;

  // Runs `argv` chrooted into the overlay; its output (an error for a non-zero exit).
  absl::StatusOr<std::string> Run(const std::vector<std::string>& argv);

  // Bytes `naiad fs` received per backend source ("origin", "mirror:http://127.0.0.1:65001").
  struct Sources {
    uint64_t origin = 0;
    uint64_t mirror = 0;
    uint64_t total() const { return origin + mirror; }
  };
  absl::StatusOr<Sources> BackendSources() const;
  FsMount& mount() { return *mount_; }
  const std::string& merged() const { return merged_; }

  // Takes the overlay down and stops `naiad fs` (SIGTERM; it must exit 0).
  absl::Status Stop();

 private:
  LazyNode() = default;

  std::unique_ptr<FsMount> mount_;
  std::string merged_;
};

// The part of an image that nodes read, from their blob caches' chunk maps: the compressed bytes
// of every chunk some node has (each counted once), and the same rounded out to whole pieces of
// each blob as a Naiad peer cuts them (piece::PieceSizeFor): what a peer fetches from the origin
// for those chunks; `piece_size` other than 0 replaces PieceSizeFor (for what-if figures).
struct ChunkUnion {
  uint64_t chunk_bytes = 0;
  uint64_t piece_bytes = 0;
  uint64_t chunks = 0;
};
absl::StatusOr<ChunkUnion> UnionOfCachedChunks(const std::string& bootstrap,
                                               const std::vector<std::string>& cache_dirs,
                                               uint64_t piece_size = 0);

}  // namespace naiad::testing
