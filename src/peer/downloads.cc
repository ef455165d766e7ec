#include "peer/downloads.h"

#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace naiad::peer {
namespace {

constexpr int kWorkers = 16;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return absl::EqualsIgnoreCase(ToAbsl(a), ToAbsl(b));
}
bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return absl::StartsWithIgnoreCase(ToAbsl(text), ToAbsl(prefix));
}
constexpr int kPieceAttempts = 3;

// Headers never forwarded to an origin: hop-by-hop, and ours.
bool ForwardToOrigin(std::string_view name) {
  for (std::string_view skip :
       {"host", "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "range", "content-length", "accept-encoding"}) {
    if (EqualsIgnoreCase(name, skip)) return false;
  }
  return !StartsWithIgnoreCase(name, "x-dragonfly-");
}

net::HttpHeaders OriginHeaders(const net::HttpHeaders& client) {
  net::HttpHeaders headers;
  for (const auto& [name, value] : client.entries()) {
    if (ForwardToOrigin(name)) headers.Add(name, value).IgnoreError();
  }
  return headers;
}

}  // namespace

struct Downloads::Download {
  std::shared_ptr<piece::Task> task;
  OriginRequest origin;
  std::set<uint32_t> wanted;
  bool whole = false;
  uint32_t cursor = 0;
  absl::flat_hash_set<uint32_t> in_flight;
  absl::flat_hash_map<uint32_t, int> attempts;
};

Downloads::Downloads(piece::PieceStore* store, DownloadConfig config, PeerMetrics* metrics)
    : store_(store),
      config_(config),
      metrics_(metrics),
      client_({.connect_timeout = absl::Seconds(10), .low_speed_time = absl::Seconds(20)}) {
  for (int i = 0; i < kWorkers; ++i) workers_.emplace_back([this] { Work(); });
}

Downloads::~Downloads() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  cancel_.Cancel();
  for (std::thread& worker : workers_) worker.join();
}

absl::StatusOr<piece::TaskMeta> Downloads::ProbeOrigin(const std::string& task_id,
                                                       const OriginRequest& origin,
                                                       OriginError* origin_error) {
  net::HttpRequest head{.method = "HEAD",
                        .url = origin.url,
                        .headers = OriginHeaders(origin.headers),
                        .timeout = config_.piece_timeout,
                        .cancel = &cancel_};
  ASSIGN_OR_RETURN(net::HttpResponse response, client_.Send(head));
  std::optional<uint64_t> length;
  if (response.status == 200) {
    if (auto value = response.headers.Get("Content-Length")) {
      uint64_t parsed = 0;
      if (absl::SimpleAtoi(ToAbsl(*value), &parsed)) length = parsed;
    }
  } else if (response.status == 405 || response.status == 501) {
    net::HttpRequest probe{.url = origin.url,
                           .headers = head.headers,
                           .range = net::ByteRange{0, 1},
                           .timeout = config_.piece_timeout,
                           .cancel = &cancel_};
    ASSIGN_OR_RETURN(response, client_.Send(probe));
    if (auto range = response.headers.Get("Content-Range")) {
      absl::StatusOr<net::ContentRange> parsed = net::ParseContentRange(*range);
      if (parsed.ok() && parsed->total.has_value()) length = *parsed->total;
    }
  }
  if (response.status >= 300 && response.status != 405 && response.status != 501) {
    *origin_error = {.status = response.status, .body = response.body};
    return absl::FailedPreconditionError(
        StrCat("origin answered ", response.status, " for ", origin.url));
  }
  if (!length.has_value()) {
    return absl::UnavailableError(StrCat("origin gave no content length for ", origin.url));
  }
  piece::TaskMeta meta{.task_id = task_id, .url = origin.url, .content_length = *length};
  if (auto digest = piece::BlobDigestOfUrl(origin.url)) meta.digest = *digest;
  if (auto type = response.headers.Get("Content-Type")) meta.content_type = *type;
  return meta;
}

absl::StatusOr<std::shared_ptr<piece::Task>> Downloads::Open(const std::string& task_id,
                                                             const OriginRequest& origin,
                                                             OriginError* origin_error) {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = downloads_.find(task_id); it != downloads_.end()) return it->second->task;
  }
  std::shared_ptr<piece::Task> task = store_->Find(task_id);
  if (task != nullptr && !task->failure().ok()) {
    RETURN_IF_ERROR(store_->Delete(task_id));
    task = nullptr;
  }
  if (task == nullptr) {
    ASSIGN_OR_RETURN(piece::TaskMeta meta, ProbeOrigin(task_id, origin, origin_error));
    ASSIGN_OR_RETURN(task, store_->CreateOrOpen(meta));
    ++metrics_->tasks_started;
  }
  if (task->complete()) return task;
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = downloads_.try_emplace(task_id);
  if (inserted) {
    it->second = std::make_shared<Download>();
    it->second->task = task;
    it->second->origin = {.url = origin.url, .headers = OriginHeaders(origin.headers)};
  }
  return it->second->task;
}

void Downloads::Want(const std::shared_ptr<piece::Task>& task, uint32_t first, uint32_t last,
                     bool whole) {
  absl::MutexLock lock(&mu_);
  auto it = downloads_.find(task->meta().task_id);
  if (it == downloads_.end()) return;  // complete (or failed: the reader sees the failure)
  Download& download = *it->second;
  for (uint32_t n = first; n <= last; ++n) {
    if (!task->HasPiece(n)) download.wanted.insert(n);
  }
  download.whole = download.whole || whole;
}

std::optional<uint32_t> Downloads::NextPiece(Download& download) {
  if (static_cast<int>(download.in_flight.size()) >= config_.concurrent_pieces) return std::nullopt;
  if (!download.task->failure().ok()) return std::nullopt;
  for (auto it = download.wanted.begin(); it != download.wanted.end();) {
    if (download.task->HasPiece(*it)) {
      it = download.wanted.erase(it);
    } else if (download.in_flight.contains(*it)) {
      ++it;
    } else {
      return *it;
    }
  }
  if (!download.whole) return std::nullopt;
  // The cursor only moves over pieces that are present or being fetched, so asking again (as
  // HasWork() does on every unlock) never skips a piece.
  uint32_t count = download.task->meta().piece_count();
  while (download.cursor < count) {
    uint32_t n = download.cursor;
    if (!download.task->HasPiece(n) && !download.in_flight.contains(n)) return n;
    ++download.cursor;
  }
  return std::nullopt;
}

bool Downloads::HasWork() {
  if (stopping_) return true;
  for (auto& [id, download] : downloads_) {
    if (NextPiece(*download).has_value()) return true;
  }
  return false;
}

absl::Status Downloads::FetchPiece(const Download& download, uint32_t n) {
  const piece::TaskMeta& meta = download.task->meta();
  uint64_t offset = meta.PieceOffset(n);
  uint32_t length = meta.PieceLength(n);
  std::string body;
  body.reserve(length);
  int status = 0;
  net::HttpRequest request{.url = download.origin.url,
                           .headers = download.origin.headers,
                           .range = net::ByteRange{offset, length},
                           .on_headers =
                               [&status](const net::HttpResponse& response) {
                                 status = response.status;
                                 return absl::OkStatus();
                               },
                           .body_sink =
                               [&body, length](std::string_view data) {
                                 if (body.size() + data.size() > length) {
                                   return absl::DataLossError("origin sent more than the piece");
                                 }
                                 body.append(data);
                                 return absl::OkStatus();
                               },
                           .timeout = config_.piece_timeout,
                           .cancel = &cancel_};
  ++metrics_->origin_requests;
  RETURN_IF_ERROR(client_.Send(request).status());
  bool whole_content = status == 200 && offset == 0 && length == meta.content_length;
  if (status != 206 && !whole_content) {
    return absl::UnavailableError(
        StrCat("origin answered ", status, " for piece ", n, " of ", download.origin.url));
  }
  if (body.size() != length) {
    return absl::DataLossError(
        StrCat("origin sent ", body.size(), " bytes for piece ", n, " of ", length));
  }
  metrics_->origin_bytes += length;
  RETURN_IF_ERROR(download.task->WritePiece(n, body));
  ++metrics_->pieces_stored;
  return absl::OkStatus();
}

void Downloads::Finished(const std::shared_ptr<Download>& download, uint32_t n,
                         const absl::Status& status) {
  download->in_flight.erase(n);
  if (!status.ok()) {
    ++metrics_->origin_failures;
    int attempts = ++download->attempts[n];
    LogWarn("piece download failed",
            {{"task", download->task->meta().task_id}, {"piece", n}, {"error", status}});
    if (attempts >= kPieceAttempts || absl::IsDataLoss(status)) {
      download->task->Fail(status);
    } else {
      download->wanted.insert(n);  // try again, first
    }
  }
  if (download->task->complete() || !download->task->failure().ok()) {
    auto it = downloads_.find(download->task->meta().task_id);
    if (it != downloads_.end() && it->second == download && download->in_flight.empty()) {
      downloads_.erase(it);
    }
  }
}

void Downloads::Work() {
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(this, &Downloads::HasWork));
    if (stopping_) return;
    for (auto& [id, entry] : downloads_) {
      std::optional<uint32_t> n = NextPiece(*entry);
      if (!n.has_value()) continue;
      std::shared_ptr<Download> download = entry;
      download->in_flight.insert(*n);
      mu_.Unlock();
      absl::Status status = FetchPiece(*download, *n);
      mu_.Lock();
      Finished(download, *n, status);
      break;
    }
  }
}

}  // namespace naiad::peer
