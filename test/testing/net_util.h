// File: test/testing/net_util.h
//
// Small socket helpers for the harness: running code inside a network namespace, picking a free
// port, and probing whether a TCP port accepts connections.
//
//   // Connect from inside a namespace host: the sockets fn() opens live in that namespace.
//   absl::Status s = RunInNetns("/var/run/netns/nd123c1-h0", [&] {
//     return TcpConnect("10.77.1.2", 8080, absl::Seconds(2));
//   });
//   ASSIGN_OR_RETURN(uint16_t port, PickFreePort("127.0.0.1"));
//
// A network namespace is a per-thread attribute, so RunInNetns() runs `fn` on a fresh thread that
// has joined the namespace and leaves the calling thread untouched. Sockets keep the namespace
// they were created in, so a connection opened inside may be used from any thread afterwards.
// Do not start a Subprocess inside `fn`: its PR_SET_PDEATHSIG would kill the child as soon as
// the short-lived thread exits.
#pragma once

#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace naiad::testing {

// Runs `fn` on a thread that has joined the network namespace at `netns_path` (e.g.
// /var/run/netns/NAME) and returns its result. An empty path runs `fn` in our own namespace
// (still on the calling thread).
absl::Status RunInNetns(const std::string& netns_path, absl::FunctionRef<absl::Status()> fn);

// Binds `address`:0, reads the port the kernel chose and releases it. Another process may take
// it before the caller binds it, so callers retry on "address in use".
absl::StatusOr<uint16_t> PickFreePort(const std::string& address = "127.0.0.1");

// One TCP connect attempt to an IPv4 address, closed again at once. The error carries errno's
// meaning: Unavailable for refused/unreachable, DeadlineExceeded for a timeout.
absl::Status TcpConnect(const std::string& address, uint16_t port, absl::Duration timeout);

// Retries TcpConnect() until it succeeds or `timeout` passes.
absl::Status WaitForTcp(const std::string& address, uint16_t port, absl::Duration timeout);

}  // namespace naiad::testing
