#include "peer/upload.h"

#include <algorithm>
#include <bit>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "base/digest.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/units.h"
#include "nlohmann/json.hpp"

namespace naiad::peer {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kDownloadPrefix = "/download/";
constexpr std::string_view kTasksPrefix = "/v1/tasks/";
constexpr std::string_view kSeedPath = "/v1/seed";
constexpr std::string_view kHealthPath = "/healthy";
// Remembered recent single-piece uploads at most (see ClaimPiece).
constexpr size_t kMaxSentEntries = 16384;

constexpr uint64_t kReadSlice = 1 << 20;    // bytes read from the store at once
constexpr uint64_t kWriteSlice = 64 << 10;  // bytes written (and charged to the rate) at once
// The token bucket holds at most this much time's worth of bytes (but at least one slice), so
// an idle service cannot save up a large burst.
constexpr absl::Duration kBurstTime = absl::Milliseconds(50);
// How often a waiting request checks whether the service is stopping.
constexpr absl::Duration kStopPollInterval = absl::Milliseconds(100);
constexpr size_t kMaxRequesterLength = 256;
constexpr size_t kMaxSeedBody = 64 << 10;

// Compact JSON; invalid UTF-8 (possible in header values and URLs) is replaced, not thrown.
std::string Dump(const Json& json) {
  return json.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

// Text from the network, quoted and cut short for a message.
std::string Quoted(std::string_view text) {
  constexpr size_t kMaxQuoted = 80;
  return StrCat("\"", text.substr(0, kMaxQuoted), text.size() > kMaxQuoted ? "...\"" : "\"");
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsDecimal(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The value of `name` in a query string ("a=1&peerId=x"); empty if absent. Not decoded.
std::string_view QueryParam(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.size() > name.size() && StartsWith(param, name) && param[name.size()] == '=') {
      return param.substr(name.size() + 1);
    }
  }
  return {};
}

// The address of a remote end without its port: "10.0.0.1:5000" -> "10.0.0.1",
// "[::1]:5000" -> "::1".
std::string RemoteIp(std::string_view address) {
  size_t colon = address.rfind(':');
  if (colon != std::string_view::npos) address = address.substr(0, colon);
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  return std::string(address);
}

// What a /download request asks for, checked.
struct DownloadRequest {
  std::string task_id;
  std::string requester;             // peerId, or the remote IP
  std::optional<std::string> range;  // the Range header
  absl::Duration wait;
};

// The task id of "<prefix>/<id>", the part of the path after /download/.
absl::StatusOr<std::string> DownloadTaskId(std::string_view rest) {
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) {
    return absl::InvalidArgumentError(
        "expected /download/<first 3 characters of the task id>/<task id>");
  }
  std::string_view prefix = rest.substr(0, slash);
  std::string_view task_id = rest.substr(slash + 1);
  if (!piece::IsValidTaskId(task_id)) {
    return absl::InvalidArgumentError(
        StrCat("invalid task id ", Quoted(task_id), ": expected 64 lowercase hex digits"));
  }
  if (prefix != task_id.substr(0, 3)) {
    return absl::InvalidArgumentError(StrCat("path segment ", Quoted(prefix),
                                             " is not the first 3 characters of task ", task_id));
  }
  return std::string(task_id);
}

absl::StatusOr<absl::Duration> WaitOf(const net::HttpHeaders& headers) {
  std::optional<std::string> value = headers.Get(kWaitMsHeader);
  if (!value.has_value()) return absl::ZeroDuration();
  std::string_view text = Trim(*value);
  if (!IsDecimal(text)) {
    return absl::InvalidArgumentError(
        StrCat(kWaitMsHeader, " ", Quoted(*value), " is not a number of milliseconds"));
  }
  uint64_t ms = kMaxWaitMs;  // a number too large for 64 bits is cut to the maximum too
  if (absl::SimpleAtoi(ToAbsl(text), &ms)) ms = std::min<uint64_t>(ms, kMaxWaitMs);
  return absl::Milliseconds(ms);
}

absl::StatusOr<DownloadRequest> ParseDownload(const net::ServerRequest& request,
                                              std::string_view rest) {
  DownloadRequest parsed;
  ASSIGN_OR_RETURN(parsed.task_id, DownloadTaskId(rest));
  ASSIGN_OR_RETURN(parsed.wait, WaitOf(request.headers));
  std::string_view peer_id = QueryParam(request.query, "peerId");
  parsed.requester = peer_id.empty() ? RemoteIp(request.remote_address)
                                     : std::string(peer_id.substr(0, kMaxRequesterLength));
  parsed.range = request.headers.Get("Range");
  return parsed;
}

// Whether a (syntactically valid) Range header names bytes past the end of `length` bytes: a
// last byte position at or beyond it, or a suffix longer than it.
bool ReachesPastEnd(std::string_view header, uint64_t length) {
  size_t equals = header.find('=');
  size_t dash = header.find('-', equals);
  if (equals == std::string_view::npos || dash == std::string_view::npos) return false;
  std::string_view first = Trim(header.substr(equals + 1, dash - equals - 1));
  std::string_view last = Trim(header.substr(dash + 1));
  uint64_t value = 0;
  if (!IsDecimal(last) || !absl::SimpleAtoi(ToAbsl(last), &value)) return false;
  return first.empty() ? value > length : value >= length;
}

// The bytes a /download request asks for: its one range, or the whole task without one. Unlike
// a general-purpose server, a range reaching past the end is refused (OutOfRange, 416) rather
// than cut short: a peer asking for it has the task's length wrong.
absl::StatusOr<net::ByteRange> RangeOf(const std::optional<std::string>& header,
                                       uint64_t content_length) {
  if (!header.has_value()) return net::ByteRange{0, content_length};
  ASSIGN_OR_RETURN(net::ByteRange range, net::ParseRangeHeader(*header, content_length));
  if (ReachesPastEnd(*header, content_length)) {
    return absl::OutOfRangeError(
        StrCat("Range ", Quoted(*header), " reaches past the task's ", content_length, " bytes"));
  }
  return range;
}

uint32_t FirstPiece(const piece::TaskMeta& meta, net::ByteRange range) {
  return static_cast<uint32_t>(range.offset / meta.piece_size);
}
uint32_t LastPiece(const piece::TaskMeta& meta, net::ByteRange range) {
  return static_cast<uint32_t>((range.end() - 1) / meta.piece_size);
}

// The piece `range` is exactly, if it is one.
std::optional<uint32_t> ExactPiece(const piece::TaskMeta& meta, net::ByteRange range) {
  if (range.length == 0) return std::nullopt;
  uint32_t n = FirstPiece(meta, range);
  if (range.offset != meta.PieceOffset(n) || range.length != meta.PieceLength(n)) {
    return std::nullopt;
  }
  return n;
}

std::optional<uint32_t> FirstMissing(const piece::Task& task, uint32_t first, uint32_t last) {
  for (uint32_t n = first;; ++n) {
    if (!task.HasPiece(n)) return n;
    if (n == last) return std::nullopt;
  }
}

// HEAD: the server sends no body but counts it against the announced Content-Length.
absl::Status DiscardBody(uint64_t length, net::ResponseWriter& writer) {
  static const std::string kZeros(kReadSlice, '\0');
  for (uint64_t left = length; left > 0;) {
    uint64_t n = std::min(left, kReadSlice);
    RETURN_IF_ERROR(writer.Write(std::string_view(kZeros).substr(0, n)));
    left -= n;
  }
  return absl::OkStatus();
}

std::string TaskStateJson(const piece::Task& task) {
  const piece::TaskMeta& meta = task.meta();
  std::string bitmap = PieceBitmap(task);
  uint32_t present = 0;
  for (char byte : bitmap) present += std::popcount(static_cast<unsigned char>(byte));
  const Json json = {{"task_id", meta.task_id},
                     {"content_length", meta.content_length},
                     {"piece_size", meta.piece_size},
                     {"piece_count", meta.piece_count()},
                     {"pieces_present", present},
                     {"complete", task.complete()},
                     {"bitmap", absl::Base64Escape(bitmap)}};
  return Dump(json) + "\n";
}

bool IsHttpUrl(std::string_view url) {
  size_t host = StartsWith(url, "http://") ? 7 : StartsWith(url, "https://") ? 8 : 0;
  if (host == 0 || host >= url.size() || url[host] == '/') return false;
  return std::none_of(url.begin(), url.end(),
                      [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
}

absl::Status FieldError(std::string_view field, std::string_view expected) {
  return absl::InvalidArgumentError(
      StrCat("seed request: field \"", field, "\" must be ", expected));
}

absl::Status ReadString(const Json& json, const char* field, bool required, std::string& out) {
  auto it = json.find(field);
  if (it == json.end() || it->is_null()) {
    return required ? FieldError(field, "present (a string)") : absl::OkStatus();
  }
  if (!it->is_string()) return FieldError(field, "a string");
  out = it->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadUnsigned(const Json& json, const char* field, uint64_t max, uint64_t& out) {
  auto it = json.find(field);
  if (it == json.end() || !it->is_number_unsigned() || it->get<uint64_t>() > max) {
    return FieldError(field, StrCat("an integer from 0 to ", max));
  }
  out = it->get<uint64_t>();
  return absl::OkStatus();
}

absl::Status ReadHeaders(const Json& json, net::HttpHeaders& out) {
  auto it = json.find("headers");
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) return FieldError("headers", "an object of strings");
  for (const auto& [name, value] : it->items()) {
    if (!value.is_string() || !out.Add(name, value.get<std::string>()).ok()) {
      return FieldError(StrCat("headers.", name), "a valid HTTP header value (a string)");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSeedFields(const SeedRequest& request) {
  if (!piece::IsValidTaskId(request.task_id)) {
    return FieldError("task_id", "64 lowercase hex digits");
  }
  if (!IsHttpUrl(request.url)) return FieldError("url", "an http:// or https:// URL");
  if (!request.digest.empty()) {
    absl::StatusOr<Digest> digest = Digest::Parse(request.digest);
    if (!digest.ok() || digest->algorithm != DigestAlgorithm::kSha256) {
      return FieldError("digest", "\"sha256:<64 lowercase hex digits>\" or empty");
    }
  }
  return absl::OkStatus();
}

// Answers with a whole body; text/plain unless `headers` say otherwise.
void Reply(net::ResponseWriter& writer, int http_status, const net::HttpHeaders& headers,
           std::string_view body) {
  net::HttpHeaders with_type = headers;
  if (!with_type.Has("Content-Type")) with_type.Add("Content-Type", "text/plain").IgnoreError();
  writer.Respond(http_status, with_type, body).IgnoreError();
}

uint64_t RateOrUnlimited(const std::string& text) {
  absl::StatusOr<uint64_t> rate = ParseByteQuantity(text);
  if (!rate.ok()) {
    LogWarn("upload.rateLimit is invalid; uploads are not rate-limited",
            {{"error", rate.status()}});
    return 0;
  }
  return *rate;
}

}  // namespace

std::string SeedRequestToJson(const SeedRequest& request) {
  Json headers = Json::object();
  for (const auto& [name, value] : request.headers.entries()) headers[name] = value;
  const Json json = {{"task_id", request.task_id},
                     {"url", request.url},
                     {"content_length", request.content_length},
                     {"piece_size", request.piece_size},
                     {"digest", request.digest},
                     {"headers", headers}};
  return Dump(json);
}

absl::StatusOr<SeedRequest> ParseSeedRequest(std::string_view text) {
  const Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError("seed request: the body is not a JSON object");
  }
  SeedRequest request;
  uint64_t piece_size = 0;
  RETURN_IF_ERROR(ReadString(json, "task_id", /*required=*/true, request.task_id));
  RETURN_IF_ERROR(ReadString(json, "url", /*required=*/true, request.url));
  RETURN_IF_ERROR(ReadUnsigned(json, "content_length", UINT64_MAX, request.content_length));
  RETURN_IF_ERROR(ReadUnsigned(json, "piece_size", UINT32_MAX, piece_size));
  RETURN_IF_ERROR(ReadString(json, "digest", /*required=*/false, request.digest));
  RETURN_IF_ERROR(ReadHeaders(json, request.headers));
  RETURN_IF_ERROR(CheckSeedFields(request));
  request.piece_size = piece_size != 0 ? static_cast<uint32_t>(piece_size)
                                       : piece::PieceSizeFor(request.content_length);
  return request;
}

std::string PieceBitmap(const piece::Task& task) {
  const uint32_t count = task.meta().piece_count();
  std::string bitmap((uint64_t{count} + 7) / 8, '\0');
  for (uint32_t n = 0; n < count; ++n) {
    if (task.HasPiece(n)) bitmap[n / 8] = static_cast<char>(bitmap[n / 8] | (0x80 >> (n % 8)));
  }
  return bitmap;
}

bool BitmapHasPiece(std::string_view bitmap, uint32_t n) {
  return n / 8 < bitmap.size() && (static_cast<unsigned char>(bitmap[n / 8]) & (0x80 >> (n % 8)));
}

// Admission of one upload; gives its place back when destroyed.
class UploadService::Slot {
 public:
  Slot(UploadService* service, std::string requester)
      : service_(service), requester_(std::move(requester)) {}
  ~Slot() { service_->Release(requester_); }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

 private:
  UploadService* const service_;
  const std::string requester_;
};

// The byte rate all uploads share. Each caller takes its bytes at once, letting the balance go
// negative, and sleeps off the debt: callers are served in the order they came, and the total
// rate holds however many there are.
class UploadService::TokenBucket {
 public:
  explicit TokenBucket(uint64_t bytes_per_second)
      : rate_(static_cast<double>(bytes_per_second)),
        burst_(
            std::max(static_cast<double>(kWriteSlice), rate_ * absl::ToDoubleSeconds(kBurstTime))),
        tokens_(burst_),
        last_(absl::Now()) {}

  // Blocks until `bytes` more may be sent.
  void Take(uint64_t bytes) {
    absl::Duration debt;
    {
      absl::MutexLock lock(&mu_);
      absl::Time now = absl::Now();
      tokens_ = std::min(burst_, tokens_ + absl::ToDoubleSeconds(now - last_) * rate_);
      last_ = now;
      tokens_ -= static_cast<double>(bytes);
      if (tokens_ < 0) debt = absl::Seconds(-tokens_ / rate_);
    }
    absl::SleepFor(debt);
  }

 private:
  const double rate_;   // bytes per second
  const double burst_;  // the most tokens the bucket holds
  absl::Mutex mu_;
  double tokens_ ABSL_GUARDED_BY(mu_);
  absl::Time last_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<UploadService>> UploadService::Create(piece::PieceStore* store,
                                                                     const UploadConfig& config,
                                                                     SeedHandler on_seed) {
  if (absl::StatusOr<uint64_t> rate = ParseByteQuantity(config.rate_limit); !rate.ok()) {
    return Annotate(rate.status(), "upload.rateLimit");
  }
  return std::make_unique<UploadService>(store, config, std::move(on_seed));
}

UploadService::UploadService(piece::PieceStore* store, const UploadConfig& config,
                             SeedHandler on_seed)
    : store_(store),
      on_seed_(std::move(on_seed)),
      concurrent_limit_(std::max(1, config.concurrent_limit)),
      per_peer_limit_(std::max(1, config.per_peer_concurrent_limit)) {
  if (uint64_t rate = RateOrUnlimited(config.rate_limit); rate > 0) {
    bucket_ = std::make_unique<TokenBucket>(rate);
  }
}

UploadService::~UploadService() = default;

void UploadService::Stop() { stopping_ = true; }

int UploadService::active() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

void UploadService::Handle(const net::ServerRequest& request, net::ResponseWriter& writer) {
  ++metrics_.requests;
  std::string_view path = request.path;
  if (path == kSeedPath) {
    if (request.method != "POST") return RejectMethod(writer, "POST");
    return HandleSeed(request, writer);
  }
  if (request.method != "GET" && request.method != "HEAD") return RejectMethod(writer, "GET, HEAD");
  if (path == kHealthPath) return Reply(writer, 200, {}, "OK\n");
  if (StartsWith(path, kDownloadPrefix)) {
    return HandleDownload(request, path.substr(kDownloadPrefix.size()), writer);
  }
  if (StartsWith(path, kTasksPrefix)) {
    return HandleTaskState(path.substr(kTasksPrefix.size()), writer);
  }
  Fail(writer, absl::NotFoundError(StrCat("no endpoint ", Quoted(path), " on the upload port")));
}

void UploadService::HandleDownload(const net::ServerRequest& request, std::string_view rest,
                                   net::ResponseWriter& writer) {
  absl::StatusOr<DownloadRequest> parsed = ParseDownload(request, rest);
  if (!parsed.ok()) return Fail(writer, parsed.status());
  if (stopping_) return Fail(writer, absl::UnavailableError("the upload service is stopping"));
  std::shared_ptr<piece::Task> task = store_->Find(parsed->task_id);
  if (task == nullptr) {
    return Fail(writer, absl::NotFoundError(StrCat("task ", parsed->task_id, " is not here")));
  }
  const piece::TaskMeta& meta = task->meta();
  absl::StatusOr<net::ByteRange> range = RangeOf(parsed->range, meta.content_length);
  if (!range.ok()) return Fail(writer, range.status(), meta.content_length);
  absl::StatusOr<std::unique_ptr<Slot>> slot = Admit(parsed->requester);
  if (!slot.ok()) return Fail(writer, slot.status());
  if (range->length > 0) {
    absl::Status present =
        AwaitPieces(*task, FirstPiece(meta, *range), LastPiece(meta, *range), parsed->wait);
    if (!present.ok()) {
      slot->reset();  // before the answer: the requester may ask again at once
      return Fail(writer, present);
    }
  }
  std::optional<uint32_t> single = ExactPiece(meta, *range);
  std::string sending_key;
  // A waiting request is urgent too (children wait only for pieces a reader needs).
  if (single.has_value() && request.method == "GET" && parsed->wait == absl::ZeroDuration() &&
      request.headers.Get(kUrgentHeader) != "true") {
    sending_key = StrCat(meta.task_id, "/", *single);
    absl::Status claimed = ClaimPiece(sending_key, *single);
    if (!claimed.ok()) {
      slot->reset();
      return Fail(writer, claimed);
    }
  }
  Send(*task, *range, parsed->range.has_value(), request.method == "HEAD", std::move(*slot),
       writer);
  if (!sending_key.empty()) {
    absl::MutexLock lock(&mu_);
    sending_.erase(sending_key);
    if (sent_at_.size() >= kMaxSentEntries) sent_at_.clear();  // bounded; a hint only
    sent_at_[sending_key] = absl::Now();
  }
}

// A piece is sent to one non-urgent requester at a time, and not again within kResendDelay of
// the last time: by then its receiver has reported it, and the next requester finds it there.
absl::Status UploadService::ClaimPiece(const std::string& key, uint32_t n) {
  absl::MutexLock lock(&mu_);
  if (sending_.contains(key)) {
    return absl::ResourceExhaustedError(
        StrCat("piece ", n, " is being sent to another peer right now"));
  }
  if (auto it = sent_at_.find(key);
      it != sent_at_.end() && absl::Now() - it->second < kResendDelay) {
    return absl::ResourceExhaustedError(
        StrCat("piece ", n, " was just sent to another peer: ask there"));
  }
  sending_.insert(key);
  return absl::OkStatus();
}

void UploadService::HandleTaskState(std::string_view task_id, net::ResponseWriter& writer) {
  if (!piece::IsValidTaskId(task_id)) {
    return Fail(writer, absl::InvalidArgumentError(StrCat("invalid task id ", Quoted(task_id),
                                                          ": expected 64 lowercase hex digits")));
  }
  std::shared_ptr<piece::Task> task = store_->Find(task_id);
  if (task == nullptr) {
    return Fail(writer, absl::NotFoundError(StrCat("task ", task_id, " is not here")));
  }
  net::HttpHeaders headers;
  headers.Add("Content-Type", "application/json").IgnoreError();
  Reply(writer, 200, headers, TaskStateJson(*task));
}

void UploadService::HandleSeed(const net::ServerRequest& request, net::ResponseWriter& writer) {
  if (on_seed_ == nullptr) return Fail(writer, absl::NotFoundError("not a seed peer"));
  if (request.body.size() > kMaxSeedBody) {
    return Fail(writer, absl::InvalidArgumentError(
                            StrCat("seed request: body larger than ", kMaxSeedBody, " bytes")));
  }
  absl::StatusOr<SeedRequest> seed = ParseSeedRequest(request.body);
  if (!seed.ok()) return Fail(writer, seed.status());
  if (absl::Status started = on_seed_(*seed); !started.ok()) return Fail(writer, started);
  net::HttpHeaders headers;
  headers.Add("Content-Type", "application/json").IgnoreError();
  Reply(writer, 202, headers, Dump({{"task_id", seed->task_id}}) + "\n");
}

absl::StatusOr<std::unique_ptr<UploadService::Slot>> UploadService::Admit(
    const std::string& requester) {
  absl::MutexLock lock(&mu_);
  if (active_ >= concurrent_limit_) {
    return absl::ResourceExhaustedError(
        StrCat("this peer is serving its limit of ", concurrent_limit_, " uploads"));
  }
  auto it = per_peer_.find(requester);
  if (it != per_peer_.end() && it->second >= per_peer_limit_) {
    return absl::ResourceExhaustedError(StrCat("requester ", Quoted(requester),
                                               " has its limit of ", per_peer_limit_,
                                               " uploads in progress"));
  }
  ++active_;
  ++per_peer_[requester];
  return std::make_unique<Slot>(this, requester);
}

void UploadService::Release(const std::string& requester) {
  absl::MutexLock lock(&mu_);
  --active_;
  auto it = per_peer_.find(requester);
  if (it != per_peer_.end() && --it->second <= 0) per_peer_.erase(it);
}

void UploadService::SetWaitHandler(WaitHandler handler) {
  absl::MutexLock lock(&mu_);
  on_wait_ = std::move(handler);
}

absl::Status UploadService::AwaitPieces(const piece::Task& task, uint32_t first, uint32_t last,
                                        absl::Duration wait) const {
  const absl::Time deadline = absl::Now() + wait;
  bool urged = false;
  for (;;) {
    std::optional<uint32_t> missing = FirstMissing(task, first, last);
    if (!missing.has_value()) return absl::OkStatus();
    if (wait > absl::ZeroDuration() && !urged) {
      urged = true;
      WaitHandler handler;
      {
        absl::MutexLock lock(&mu_);
        handler = on_wait_;
      }
      if (handler) handler(task.meta().task_id, *missing, last);
    }
    std::string what = StrCat("piece ", *missing, " of task ", task.meta().task_id, " is not here");
    if (absl::Status failure = task.failure(); !failure.ok()) {
      return absl::NotFoundError(StrCat(what, " (", failure.message(), ")"));
    }
    if (stopping_) return absl::UnavailableError("the upload service is stopping");
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      if (wait > absl::ZeroDuration()) {
        StrAppend(&what, " (waited ", absl::ToInt64Milliseconds(wait), " ms)");
      }
      return absl::NotFoundError(what);
    }
    task.WaitForPieces(*missing, last, std::min(deadline, now + kStopPollInterval));
  }
}

void UploadService::Send(const piece::Task& task, net::ByteRange range, bool partial, bool head,
                         std::unique_ptr<Slot> slot, net::ResponseWriter& writer) {
  const piece::TaskMeta& meta = task.meta();
  net::HttpHeaders headers;
  headers.Add("Content-Type", "application/octet-stream").IgnoreError();
  headers.Add("Accept-Ranges", "bytes").IgnoreError();
  if (partial) {
    headers.Add("Content-Range", range.ToContentRange(meta.content_length)).IgnoreError();
  }
  if (std::optional<uint32_t> n = ExactPiece(meta, range)) {
    if (std::optional<uint32_t> crc = task.PieceCrc(*n)) {
      headers.Add(kPieceCrcHeader, absl::StrFormat("%08x", *crc)).IgnoreError();
    }
  }
  const std::function<void()> finish = [&] {
    slot.reset();
    if (!head && range.length > 0) {
      metrics_.pieces_served += LastPiece(meta, range) - FirstPiece(meta, range) + 1;
    }
  };
  if (head || range.length == 0) finish();  // no body bytes go out
  if (!writer.Begin(partial ? 206 : 200, headers, range.length).ok()) return;
  absl::Status sent =
      head ? DiscardBody(range.length, writer) : StreamRange(task, range, finish, writer);
  if (!sent.ok()) {
    // The connection is closed: the requester sees a short body, never a wrong one.
    LogRecord(absl::IsUnavailable(sent) ? LogLevel::kDebug : LogLevel::kWarn, "upload cut short",
              {{"task", meta.task_id}, {"offset", range.offset}, {"error", sent}});
    return;
  }
  writer.End().IgnoreError();
}

absl::Status UploadService::StreamRange(const piece::Task& task, net::ByteRange range,
                                        const std::function<void()>& before_last_write,
                                        net::ResponseWriter& writer) {
  std::string buffer(std::min(range.length, kReadSlice), '\0');
  for (uint64_t offset = range.offset; offset < range.end();) {
    const size_t n = std::min(range.end() - offset, kReadSlice);
    RETURN_IF_ERROR(task.ReadRange(offset, std::span<char>(buffer.data(), n)));
    offset += n;
    RETURN_IF_ERROR(WriteThrottled(std::string_view(buffer.data(), n),
                                   offset == range.end() ? &before_last_write : nullptr, writer));
  }
  return absl::OkStatus();
}

absl::Status UploadService::WriteThrottled(std::string_view data,
                                           const std::function<void()>* before_last,
                                           net::ResponseWriter& writer) {
  while (!data.empty()) {
    std::string_view slice = data.substr(0, kWriteSlice);
    if (bucket_ != nullptr) bucket_->Take(slice.size());
    if (before_last != nullptr && slice.size() == data.size()) (*before_last)();
    metrics_.bytes_served += slice.size();
    RETURN_IF_ERROR(writer.Write(slice));
    data.remove_prefix(slice.size());
  }
  return absl::OkStatus();
}

void UploadService::Fail(net::ResponseWriter& writer, const absl::Status& status,
                         uint64_t content_length) {
  const int http_status = net::StatusToHttpStatus(status);
  net::HttpHeaders headers;
  if (http_status == 429) {
    ++metrics_.rejected_busy;
    headers.Add("Retry-After", "1").IgnoreError();
  } else if (http_status == 404) {
    ++metrics_.not_found;
  } else if (http_status == 400 || http_status == 416) {
    ++metrics_.rejected_bad;
  }
  if (http_status == 416) {
    headers.Add("Content-Range", StrCat("bytes */", content_length)).IgnoreError();
  }
  Reply(writer, http_status, headers, StrCat(status.message(), "\n"));
}

void UploadService::RejectMethod(net::ResponseWriter& writer, std::string_view allowed) {
  ++metrics_.rejected_bad;
  net::HttpHeaders headers;
  headers.Add("Allow", allowed).IgnoreError();
  Reply(writer, 405, headers, StrCat("method not allowed here; use ", allowed, "\n"));
}

}  // namespace naiad::peer
