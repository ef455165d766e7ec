// File: test/testing/test_env.h
//
// What every harness piece needs from its environment: a root check that skips a test with a
// clear message, paths of binaries built alongside the tests, and the "stale state" protocol that
// lets a test clean up after an earlier run that crashed.
//
//   TEST(Registry, Serves) {
//     NAIAD_SKIP_UNLESS_ROOT();
//     ...
//   }
//
// Stale state: every directory or namespace the harness creates records the pid of the process
// that created it (an "owner.pid" file, or the pid in a namespace's name). A later run removes
// the ones whose owner is no longer alive. Mounts are always taken down before a tree is removed:
// RemoveTreeSafely() refuses to delete a tree that still has something mounted in it, so a
// leftover /proc mount can never turn into "rm -rf /proc".
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/file.h"
#include "gtest/gtest.h"

namespace naiad::testing {

bool RunningAsRoot();

// Skips the current test unless it runs as root (CI does; FUSE, mounts, namespaces, chroot and
// tc all need it).
#define NAIAD_SKIP_UNLESS_ROOT()                                                       \
  do {                                                                                 \
    if (!::naiad::testing::RunningAsRoot()) {                                          \
      GTEST_SKIP() << "this test needs root (network namespaces, mounts, tc); run it " \
                      "as root, as CI does";                                           \
    }                                                                                  \
  } while (0)

// Whether a process with this pid exists (zombies count as alive).
bool ProcessAlive(pid_t pid);

// The path of a binary built in this build tree, e.g. "test/testing/naiad_test_fileserver".
// Uses $NAIAD_BINARY_DIR (set by naiad_cc_test) and falls back to the directory of the running
// test binary's build tree.
std::string BuildPath(std::string_view relative);

// Writes "<dir>/owner.pid" with our pid.
absl::Status WriteOwnerPid(const std::string& dir);
// The pid recorded in "<dir>/owner.pid"; NotFound if there is none.
absl::StatusOr<pid_t> ReadOwnerPid(const std::string& dir);

// Removes every directory "<base>/<prefix>*" whose owner.pid names a dead process. Directories
// without an owner.pid are left alone (they may be being created right now).
void RemoveStaleOwnedDirs(const std::string& base, std::string_view prefix);

// A TempDir "$TMPDIR/<prefix>XXXXXX" that records our pid, created after removing the stale
// "<prefix>*" directories of dead processes. Tests use it for scratch space that a crashed run
// must not leak.
absl::StatusOr<TempDir> CreateOwnedTempDir(std::string_view prefix);

// Lazily unmounts everything mounted at or below `path`, deepest first.
absl::Status UnmountAllUnder(const std::string& path);
// Unmounts everything below `path`, then removes it; refuses (FailedPrecondition) if a mount
// could not be removed.
absl::Status RemoveTreeSafely(const std::string& path);

}  // namespace naiad::testing
