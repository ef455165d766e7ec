// File: peer/scheduler_client.h
//
// The peer's side of the scheduler API (api/naiad/scheduler/v1/scheduler.proto): announce this
// host, sync a task (report pieces, get parents and origin leases), leave. With several
// schedulers configured, each task goes to one of them chosen by rendezvous hashing of the task
// id, so every peer asks the same scheduler about the same task (the origin leases of a task live
// in one place); AnnounceHost goes to all of them.
//
//   ASSIGN_OR_RETURN(auto client, SchedulerClient::Connect({"10.0.0.1:8002"}, absl::Seconds(2)));
//   ASSIGN_OR_RETURN(absl::Duration keepalive, client->AnnounceHost(host));
//   ASSIGN_OR_RETURN(SyncTaskResponse response, client->SyncTask(request));
//
// Every call has the deadline given to Connect(); a scheduler that does not answer in time is an
// Unavailable / DeadlineExceeded error, which callers treat as "go to the origin". gRPC errors
// become absl::Status here and nowhere else. Thread-safe.
//
// An AnnounceHost answer with `new_host` (the scheduler did not know the host: it restarted, the
// daemon did, or the host was dropped after a silence) is counted in new_host_answers(). The
// keepalive thread announces and the downloads' sync thread watches the count: when it moves,
// the downloads sync every task of the store once, so the scheduler learns them again.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "naiad/scheduler/v1/scheduler.pb.h"

namespace naiad::peer {

namespace schedv1 = ::naiad::scheduler::v1;

class SchedulerClient {
 public:
  virtual ~SchedulerClient() = default;

  // `addresses` are "host:port". Does not wait for a connection: an unreachable scheduler shows
  // up as errors from the calls.
  static absl::StatusOr<std::unique_ptr<SchedulerClient>> Connect(
      const std::vector<std::string>& addresses, absl::Duration timeout);

  // Announces (or refreshes) the host on every scheduler; the keepalive interval they ask for
  // (the shortest). Fails only if no scheduler answered. Implementations call
  // CountNewHostAnswer() for each answer with `new_host`.
  virtual absl::StatusOr<absl::Duration> AnnounceHost(const schedv1::Host& host) = 0;
  virtual void LeaveHost(const std::string& host_id) = 0;
  virtual absl::StatusOr<schedv1::SyncTaskResponse> SyncTask(
      const schedv1::SyncTaskRequest& request) = 0;
  virtual void LeaveTask(const std::string& host_id, const std::string& task_id) = 0;
  // What the scheduler knows of a task (NotFound: nothing). A peer that opens a task another host
  // registered takes its length and piece size from here instead of asking the origin.
  virtual absl::StatusOr<schedv1::StatTaskResponse> StatTask(const std::string& task_id) {
    return absl::UnimplementedError("StatTask");
  }

  // How many AnnounceHost answers so far said that a scheduler did not know this host: each time,
  // that scheduler had forgotten every task the host holds.
  uint64_t new_host_answers() const { return new_host_answers_.load(); }

 protected:
  void CountNewHostAnswer() { ++new_host_answers_; }

 private:
  std::atomic<uint64_t> new_host_answers_{0};
};

// Bit n of a piece bitmap (byte n / 8, most significant bit first), as the scheduler sends them.
inline bool BitmapHas(const std::string& bitmap, uint32_t n) {
  return n / 8 < bitmap.size() && (static_cast<uint8_t>(bitmap[n / 8]) & (0x80u >> (n % 8))) != 0;
}

}  // namespace naiad::peer
