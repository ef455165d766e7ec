// File: base/crash_testing.h (test-only)
//
// Crash tests: run some work in a child process and kill it with SIGKILL at a moment the test
// chooses, then check what the work left on disk.
//
//   ASSERT_OK(ForkAndKill([&](const std::function<void()>& ready) {
//     auto store = Store::Open(dir);              // in the child
//     if (!store.ok()) ::_exit(2);
//     ready();                                    // the kill timer starts now
//     for (;;) if (!store->Write(...).ok()) ::_exit(3);
//   }, absl::Microseconds(500 + rng() % 10000)));
//   ... reopen the store and check every recorded item ...
//
// The child must never return (it works until killed) and reports its own failures with
// ::_exit(code): an exit instead of the kill is an error naming the code.
#pragma once

#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace naiad::testing {

absl::Status ForkAndKill(const std::function<void(const std::function<void()>& ready)>& child,
                         absl::Duration delay_after_ready);

}  // namespace naiad::testing
