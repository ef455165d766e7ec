// File: rafs/bootstrap_fuzzer.h (test-only)
//
// The body of the bootstrap-reader fuzz target (bootstrap_fuzzer.cc), shared by the libFuzzer
// binary (clang, scripts/fuzz) and the in-suite mutation test (bootstrap_fuzz_test.cc, g++), which
// also checks through the counters that a valid bootstrap really is walked end to end.
//
//   WalkStats stats = WalkBootstrap(bytes);   // never crashes, never runs unbounded
//   EXPECT_TRUE(stats.opened);
//
// Budgets bound the walk of a hostile bootstrap (directory cycles, shared directory blocks,
// deep nesting) so that the work stays small; a contract violation of the reader (an API result
// that contradicts another one) traps, like a crash would.
#pragma once

#include <cstdint>
#include <string>

namespace naiad::rafs::fuzzing {

struct WalkStats {
  bool opened = false;       // Bootstrap::FromBytes accepted the bytes
  uint64_t inodes = 0;       // successful GetInode calls during the walk
  uint64_t dirents = 0;      // entries returned by ReadDir, "." and ".." included
  uint64_t xattrs = 0;       // attributes returned by Xattrs
  uint64_t symlinks = 0;     // successful ReadLink calls
  uint64_t chunks = 0;       // chunk references returned by FileChunks
  uint64_t resolved = 0;     // successful Resolve calls
  uint64_t chunk_table = 0;  // ChunkTable() records
  bool tree_loaded = false;  // Tree::FromBootstrap accepted the image
};

// Opens `bytes` as a bootstrap and exercises every read accessor on everything reachable.
WalkStats WalkBootstrap(std::string bytes);

}  // namespace naiad::rafs::fuzzing
