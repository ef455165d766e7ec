// File: registry/mirror_set.h
//
// Health state of the registry backend's alternative sources (mirrors and the proxy) and the one
// background thread that checks the unhealthy ones.
//
//   MirrorSet set({{.name = "mirror:http://m1", .ping_url = "http://m1/v2",
//                   .interval = absl::Seconds(5), .failure_limit = 5}}, &ping_client);
//   if (set.Healthy(0)) { ... request ...; ok ? set.RecordSuccess(0) : set.RecordFailure(0); }
//
// A source is healthy until `failure_limit` consecutive failures (transport errors, 5xx, bad
// data) are recorded; a success resets the count. The checker thread GETs the ping URL of every
// unhealthy source every `interval` (and of every source with `ping_when_healthy`, as nydusd's
// proxy checker does); a status < 500 makes the source healthy again with its count reset, a
// transport error or 5xx makes a pinged source unhealthy. A source not used for longer than
// `pause_after_idle` is not pinged (it is checked again once traffic resumes). Sources without a
// ping URL are never pinged.
//
// Thread safety: all methods are thread-safe. The destructor stops and joins the checker thread
// promptly (it waits on a condition variable, never in a plain sleep); a ping in flight is
// bounded by the ping client's timeouts.
#pragma once

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "net/http_client.h"

namespace naiad::registry {

struct HealthCheckedSource {
  std::string name;      // "mirror:<host>" or "proxy", for logs
  std::string ping_url;  // empty: never pinged
  absl::Duration interval = absl::Seconds(5);
  int failure_limit = 5;
  absl::Duration pause_after_idle = absl::Seconds(300);
  bool ping_when_healthy = false;
};

class MirrorSet {
 public:
  // `ping_client` must outlive the set. The checker thread starts at once if any source has a
  // ping URL.
  MirrorSet(std::vector<HealthCheckedSource> sources, net::HttpClient* ping_client);
  ~MirrorSet();
  MirrorSet(const MirrorSet&) = delete;
  MirrorSet& operator=(const MirrorSet&) = delete;

  size_t size() const { return sources_.size(); }
  const HealthCheckedSource& source(size_t i) const { return sources_[i]; }

  // Whether to send a request to source i now. Counts as activity for the idle pause (a source
  // skipped while unhealthy is still wanted, so it keeps being checked).
  bool UseIfHealthy(size_t i);
  // The current view, without counting as activity (metrics).
  bool Healthy(size_t i) const;
  // Records traffic (for the idle pause) and resets the failure count.
  void RecordSuccess(size_t i);
  // Returns true if this failure made the source unhealthy.
  bool RecordFailure(size_t i);
  void MarkUnhealthy(size_t i);
  // Pings made so far (for tests).
  uint64_t pings() const;

 private:
  struct State {
    bool healthy = true;
    int failures = 0;
    absl::Time last_used = absl::InfinitePast();
    absl::Time next_ping = absl::InfinitePast();
  };

  void CheckerLoop();
  bool PingOnce(size_t i);

  const std::vector<HealthCheckedSource> sources_;
  net::HttpClient* const ping_client_;

  mutable absl::Mutex mu_;
  std::vector<State> states_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t pings_ ABSL_GUARDED_BY(mu_) = 0;
  net::CancellationToken cancel_;  // aborts a ping in flight on destruction
  std::thread checker_;
};

}  // namespace naiad::registry
