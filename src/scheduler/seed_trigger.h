// File: scheduler/seed_trigger.h
//
// How the scheduler asks a seed peer to fetch a new task from the origin, and the queue that does
// it off the RPC threads.
//
//   HttpSeedTrigger http;                                  // POST <seed>/v1/seed, 2 s timeout
//   SeedDispatcher dispatcher(&http, [&](const SeedDecision& d, const absl::Status& s) {
//     state.SeedTriggerFailed(d.task.task_id, d.seed.id);  // the next SyncTask chooses again
//   });
//   if (result.seed_to_trigger) dispatcher.Enqueue(*std::move(result.seed_to_trigger));
//
// The HTTP request is the peer upload service's seed endpoint:
//   POST http://<seed ip>:<upload_port>/v1/seed
//   {"task_id": "<64 hex>", "url": "...", "content_length": N, "piece_size": N,
//    "digest": "sha256:..." or "", "headers": {"Name": "value", ...}}
// answered with 202 once the seed has accepted the task (any 2xx is taken as accepted).
//
// Thread safety: HttpSeedTrigger::Trigger() and SeedDispatcher::Enqueue() may be called from
// any thread.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "net/http_client.h"
#include "scheduler/scheduler_state.h"

namespace naiad::scheduler {

class SeedTrigger {
 public:
  virtual ~SeedTrigger() = default;
  // Asks `seed` to fetch `task` from the origin; OK once the seed has accepted it (the fetch
  // itself runs on the seed).
  virtual absl::Status Trigger(const Host& seed, const TaskInfo& task) = 0;
};

// The JSON body of POST /v1/seed for `task`.
std::string SeedRequestJson(const TaskInfo& task);

class HttpSeedTrigger : public SeedTrigger {
 public:
  explicit HttpSeedTrigger(absl::Duration timeout = absl::Seconds(2));

  // Unavailable or DeadlineExceeded when the seed cannot be reached; an HTTP error status
  // becomes its code (net::HttpStatusToStatus) with the start of the response body.
  absl::Status Trigger(const Host& seed, const TaskInfo& task) override;

 private:
  net::HttpClient client_;
};

// Runs triggers one at a time on its own thread. A trigger that fails (or does not fit in the
// queue) is passed to `on_failure`.
class SeedDispatcher {
 public:
  using FailureFn = std::function<void(const SeedDecision&, const absl::Status&)>;

  // `trigger` must outlive the dispatcher.
  SeedDispatcher(SeedTrigger* trigger, FailureFn on_failure, size_t max_pending = 1024);
  // Finishes the trigger in progress; pending ones are dropped.
  ~SeedDispatcher();
  SeedDispatcher(const SeedDispatcher&) = delete;
  SeedDispatcher& operator=(const SeedDispatcher&) = delete;

  void Enqueue(SeedDecision decision);
  // Blocks until nothing is pending or running (for tests).
  void WaitIdle();

 private:
  void Work();

  SeedTrigger* const trigger_;
  const FailureFn on_failure_;
  const size_t max_pending_;
  absl::Mutex mu_;
  std::deque<SeedDecision> pending_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;  // a trigger is in progress
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace naiad::scheduler
