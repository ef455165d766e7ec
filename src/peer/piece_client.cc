#include "peer/piece_client.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "base/digest.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "nlohmann/json.hpp"
#include "peer/upload.h"

namespace naiad::peer {
namespace {

constexpr size_t kMaxErrorBody = 4 << 10;   // bytes of an error answer kept for the message
constexpr size_t kMaxStateBody = 16 << 20;  // /v1/tasks answers (a bitmap of ~100M pieces)
constexpr size_t kMaxErrorInMessage = 200;

bool IsHexDigit(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// "<host id> (<ip>:<port>)"
std::string Describe(const ParentAddress& parent) {
  return StrCat(parent.host_id, " (", parent.ip, ":", parent.port, ")");
}

std::string BaseUrl(const ParentAddress& parent) {
  bool v6 = parent.ip.find(':') != std::string::npos;
  return StrCat("http://", v6 ? "[" : "", parent.ip, v6 ? "]" : "", ":", parent.port);
}

std::string PercentEncode(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out += c;
    } else {
      out += absl::StrFormat("%%%02X", static_cast<unsigned char>(c));
    }
  }
  return out;
}

std::string DownloadUrl(const ParentAddress& parent, std::string_view task_id,
                        std::string_view my_host_id) {
  return StrCat(BaseUrl(parent), "/download/", task_id.substr(0, 3), "/", task_id,
                "?peerId=", PercentEncode(my_host_id));
}

// The first line of a parent's error answer, for a message.
std::string ErrorText(std::string_view body) {
  body = body.substr(0, std::min(body.find('\n'), kMaxErrorInMessage));
  return body.empty() ? std::string() : StrCat(": ", body);
}

// The one place a parent's HTTP answer to a piece request becomes a Status.
absl::Status StatusOfAnswer(int http_status, std::string_view body, const std::string& what) {
  switch (http_status) {
    case 206:
      return absl::OkStatus();
    case 404:
      return absl::NotFoundError(StrCat(what, ": not there", ErrorText(body)));
    case 429:
      return absl::ResourceExhaustedError(StrCat(what, ": parent busy", ErrorText(body)));
    case 400:
    case 416:
      return absl::InvalidArgumentError(
          StrCat(what, ": refused (HTTP ", http_status, ")", ErrorText(body)));
    default:
      break;
  }
  absl::Status status = net::HttpStatusToStatus(http_status, what);
  if (status.ok()) {  // 200 and the like: not an answer to a Range request
    return absl::UnavailableError(StrCat(what, ": unexpected HTTP status ", http_status));
  }
  return status;
}

// The parent's crc32c header, if it sent one.
absl::StatusOr<std::optional<uint32_t>> ClaimedCrc(const net::HttpHeaders& headers,
                                                   const std::string& what) {
  std::optional<std::string> value = headers.Get(kPieceCrcHeader);
  if (!value.has_value()) return std::nullopt;
  uint32_t crc = 0;
  if (value->size() != 8 || !std::all_of(value->begin(), value->end(), IsHexDigit) ||
      !absl::SimpleHexAtoi(ToAbsl(*value), &crc)) {
    return absl::DataLossError(
        StrCat(what, ": malformed ", kPieceCrcHeader, " \"", value->substr(0, 16), "\""));
  }
  return crc;
}

// Whether the bytes of a 206 answer are the piece: length, Content-Range, crc32c.
absl::Status CheckPiece(const net::HttpResponse& response, std::string_view bytes,
                        net::ByteRange range, std::optional<uint32_t> expected_crc,
                        const std::string& what) {
  if (bytes.size() != range.length) {
    return absl::DataLossError(
        StrCat(what, ": ", bytes.size(), " bytes received, the piece has ", range.length));
  }
  if (std::optional<std::string> content_range = response.headers.Get("Content-Range")) {
    absl::StatusOr<net::ContentRange> parsed = net::ParseContentRange(*content_range);
    if (!parsed.ok() || parsed->range != range) {
      return absl::DataLossError(
          StrCat(what, ": answered with Content-Range \"", content_range->substr(0, 80), "\""));
    }
  }
  const uint32_t crc = Crc32c(bytes);
  if (expected_crc.has_value() && crc != *expected_crc) {
    return absl::DataLossError(absl::StrFormat("%s: crc32c %08x, but the scheduler recorded %08x",
                                               what, crc, *expected_crc));
  }
  ASSIGN_OR_RETURN(std::optional<uint32_t> claimed, ClaimedCrc(response.headers, what));
  if (claimed.has_value() && crc != *claimed) {
    return absl::DataLossError(
        absl::StrFormat("%s: crc32c %08x, but the parent says %08x", what, crc, *claimed));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> BitmapOfState(std::string_view body, const piece::TaskMeta& meta,
                                          const std::string& what) {
  const nlohmann::json json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](std::string_view why) { return absl::DataLossError(StrCat(what, ": ", why)); };
  if (json.is_discarded() || !json.is_object()) return bad("answer is not a JSON object");
  auto bitmap_field = json.find("bitmap");
  auto count_field = json.find("piece_count");
  if (bitmap_field == json.end() || !bitmap_field->is_string() || count_field == json.end() ||
      !count_field->is_number_unsigned()) {
    return bad("answer lacks \"bitmap\" or \"piece_count\"");
  }
  if (count_field->get<uint64_t>() != meta.piece_count()) {
    return bad(StrCat("parent's task has ", count_field->get<uint64_t>(), " pieces, not ",
                      meta.piece_count()));
  }
  std::string bitmap;
  if (!absl::Base64Unescape(ToAbsl(bitmap_field->get_ref<const std::string&>()), &bitmap) ||
      bitmap.size() != (uint64_t{meta.piece_count()} + 7) / 8) {
    return bad("\"bitmap\" is not base64 of one bit per piece");
  }
  return bitmap;
}

// Collects a response body, up to `limit` bytes when the answer is a success (more is an error:
// DataLoss) and up to kMaxErrorBody of an error answer (the rest is dropped).
struct BodyCollector {
  std::string body;
  int status = 0;
  uint64_t limit = 0;
  std::string what;

  void Attach(net::HttpRequest& request) {
    request.on_headers = [this](const net::HttpResponse& response) {
      status = response.status;
      return absl::OkStatus();
    };
    request.body_sink = [this](std::string_view data) { return Take(data); };
  }

  absl::Status Take(std::string_view data) {
    if (status < 200 || status > 299) {
      body.append(data.substr(0, kMaxErrorBody - std::min(kMaxErrorBody, body.size())));
      return absl::OkStatus();
    }
    if (data.size() > limit - body.size()) {
      return absl::DataLossError(StrCat(what, ": more than the expected ", limit, " bytes"));
    }
    body.append(data);
    return absl::OkStatus();
  }
};

}  // namespace

PieceClient::PieceClient(net::HttpClientOptions options) : client_(std::move(options)) {}

absl::StatusOr<std::string> PieceClient::FetchPiece(const ParentAddress& parent,
                                                    const piece::TaskMeta& meta, uint32_t n,
                                                    std::optional<uint32_t> expected_crc,
                                                    absl::Duration wait, absl::Duration timeout,
                                                    const net::CancellationToken* cancel,
                                                    std::string_view my_host_id, bool urgent) {
  const std::string what =
      StrCat("piece ", n, " of task ", meta.task_id, " from parent ", Describe(parent));
  if (!piece::IsValidTaskId(meta.task_id) || n >= meta.piece_count()) {
    return absl::InvalidArgumentError(StrCat(what, ": no such piece"));
  }
  const net::ByteRange range{meta.PieceOffset(n), meta.PieceLength(n)};
  wait = std::clamp(wait, absl::ZeroDuration(), absl::Milliseconds(kMaxWaitMs));
  net::HttpRequest request{.url = DownloadUrl(parent, meta.task_id, my_host_id),
                           .range = range,
                           // Zero keeps the client's default (no whole-request limit).
                           .timeout = timeout > absl::ZeroDuration() ? timeout + wait : timeout,
                           .cancel = cancel,
                           .follow_redirects = false};
  if (urgent) request.headers.Add(kUrgentHeader, "true").IgnoreError();
  if (wait > absl::ZeroDuration()) {
    request.headers.Add(kWaitMsHeader, StrCat(absl::ToInt64Milliseconds(wait))).IgnoreError();
  }
  BodyCollector collector{.limit = range.length, .what = what};
  collector.body.reserve(range.length);
  collector.Attach(request);
  absl::StatusOr<net::HttpResponse> response = client_.Send(request);
  if (!response.ok()) {
    return absl::IsDataLoss(response.status()) ? response.status()
                                               : Annotate(response.status(), what);
  }
  RETURN_IF_ERROR(StatusOfAnswer(response->status, collector.body, what));
  RETURN_IF_ERROR(CheckPiece(*response, collector.body, range, expected_crc, what));
  return std::move(collector.body);
}

absl::StatusOr<std::string> PieceClient::FetchBitmap(const ParentAddress& parent,
                                                     const piece::TaskMeta& meta,
                                                     absl::Duration timeout,
                                                     const net::CancellationToken* cancel) {
  const std::string what =
      StrCat("state of task ", meta.task_id, " from parent ", Describe(parent));
  if (!piece::IsValidTaskId(meta.task_id)) {
    return absl::InvalidArgumentError(StrCat(what, ": invalid task id"));
  }
  net::HttpRequest request{.url = StrCat(BaseUrl(parent), "/v1/tasks/", meta.task_id),
                           .timeout = timeout,
                           .cancel = cancel,
                           .follow_redirects = false};
  BodyCollector collector{.limit = kMaxStateBody, .what = what};
  collector.Attach(request);
  absl::StatusOr<net::HttpResponse> response = client_.Send(request);
  if (!response.ok()) {
    return absl::IsDataLoss(response.status()) ? response.status()
                                               : Annotate(response.status(), what);
  }
  if (response->status == 404) {
    return absl::NotFoundError(StrCat(what, ": not there", ErrorText(collector.body)));
  }
  if (response->status != 200) {
    absl::Status status = net::HttpStatusToStatus(response->status, what);
    return status.ok()
               ? absl::UnavailableError(StrCat(what, ": unexpected HTTP status ", response->status))
               : status;
  }
  return BitmapOfState(collector.body, meta, what);
}

}  // namespace naiad::peer
