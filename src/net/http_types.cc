#include "net/http_types.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string>

#include "base/strings.h"

namespace naiad::net {
namespace {

// RFC 9110 tchar: the characters allowed in a header field name.
bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A non-empty run of decimal digits that fits in uint64_t; nothing else (no sign, no spaces).
std::optional<uint64_t> ParseDecimal(std::string_view s) {
  uint64_t value = 0;
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

// Strips a case-insensitive "bytes" unit followed by `separator`; false if it is not there.
bool ConsumeBytesUnit(std::string_view* s, char separator) {
  constexpr std::string_view kUnit = "bytes";
  if (s->size() <= kUnit.size() || !EqualsIgnoreCase(s->substr(0, kUnit.size()), kUnit) ||
      (*s)[kUnit.size()] != separator) {
    return false;
  }
  s->remove_prefix(kUnit.size() + 1);
  return true;
}

}  // namespace

absl::Status HttpHeaders::Add(std::string_view name, std::string_view value) {
  if (!IsToken(name)) {
    return absl::InvalidArgumentError(StrCat("invalid HTTP header name \"", name, "\""));
  }
  // CR and LF would end the field (header injection); NUL is rejected by every sane parser.
  if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    return absl::InvalidArgumentError(
        StrCat("HTTP header ", name, " has a value with CR, LF or NUL"));
  }
  entries_.emplace_back(std::string(name), std::string(value));
  return absl::OkStatus();
}

absl::Status HttpHeaders::Set(std::string_view name, std::string_view value) {
  // Validate first so that a rejected Set leaves the old fields in place.
  HttpHeaders probe;
  if (absl::Status status = probe.Add(name, value); !status.ok()) return status;
  Remove(name);
  entries_.push_back(std::move(probe.entries_.front()));
  return absl::OkStatus();
}

void HttpHeaders::Remove(std::string_view name) {
  std::erase_if(entries_, [&](const auto& entry) { return EqualsIgnoreCase(entry.first, name); });
}

std::optional<std::string> HttpHeaders::Get(std::string_view name) const {
  for (const auto& [key, value] : entries_) {
    if (EqualsIgnoreCase(key, name)) return value;
  }
  return std::nullopt;
}

std::string ByteRange::ToRangeHeader() const {
  // length == 0 violates the contract; asking for one byte is the least surprising answer.
  return StrCat("bytes=", offset, "-", offset + std::max<uint64_t>(length, 1) - 1);
}

std::string ByteRange::ToContentRange(uint64_t total) const {
  return StrCat("bytes ", offset, "-", offset + std::max<uint64_t>(length, 1) - 1, "/", total);
}

absl::StatusOr<ByteRange> ParseRangeHeader(std::string_view value, uint64_t content_length) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat("invalid Range \"", value, "\": ", why));
  };
  std::string_view spec = TrimSpaces(value);
  if (!ConsumeBytesUnit(&spec, '=')) return invalid("expected bytes=");
  spec = TrimSpaces(spec);
  if (spec.find(',') != std::string_view::npos) return invalid("multiple ranges are unsupported");
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return invalid("expected first-last");
  std::string_view first_text = spec.substr(0, dash);
  std::string_view last_text = spec.substr(dash + 1);
  auto unsatisfiable = [&] {
    return absl::OutOfRangeError(
        StrCat("Range \"", value, "\" not satisfiable for ", content_length, " bytes"));
  };
  if (first_text.empty()) {  // "bytes=-n": the last n bytes.
    std::optional<uint64_t> suffix = ParseDecimal(last_text);
    if (!suffix) return invalid("bad suffix length");
    if (*suffix == 0 || content_length == 0) return unsatisfiable();
    uint64_t length = std::min(*suffix, content_length);
    return ByteRange{content_length - length, length};
  }
  std::optional<uint64_t> first = ParseDecimal(first_text);
  if (!first) return invalid("bad first byte position");
  uint64_t last = UINT64_MAX;  // "bytes=a-": to the end.
  if (!last_text.empty()) {
    std::optional<uint64_t> parsed = ParseDecimal(last_text);
    if (!parsed) return invalid("bad last byte position");
    if (*parsed < *first) return invalid("last byte position before first");
    last = *parsed;
  }
  if (*first >= content_length) return unsatisfiable();
  last = std::min(last, content_length - 1);
  return ByteRange{*first, last - *first + 1};
}

absl::StatusOr<ContentRange> ParseContentRange(std::string_view value) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat("invalid Content-Range \"", value, "\": ", why));
  };
  std::string_view spec = TrimSpaces(value);
  if (!ConsumeBytesUnit(&spec, ' ')) return invalid("expected \"bytes \"");
  size_t slash = spec.find('/');
  if (slash == std::string_view::npos) return invalid("expected /");
  std::string_view range_text = spec.substr(0, slash);
  std::string_view total_text = spec.substr(slash + 1);
  ContentRange result;
  if (total_text != "*") {
    result.total = ParseDecimal(total_text);
    if (!result.total) return invalid("bad complete length");
  }
  if (range_text == "*") {  // "bytes */n" answers a 416: no range, only the total.
    if (!result.total) return invalid("neither range nor length");
    return result;
  }
  size_t dash = range_text.find('-');
  if (dash == std::string_view::npos) return invalid("expected first-last");
  std::optional<uint64_t> first = ParseDecimal(range_text.substr(0, dash));
  std::optional<uint64_t> last = ParseDecimal(range_text.substr(dash + 1));
  if (!first || !last || *last < *first || *last == UINT64_MAX) return invalid("bad range");
  if (result.total && *last >= *result.total) return invalid("range past complete length");
  result.range = ByteRange{*first, *last - *first + 1};
  return result;
}

absl::Status HttpStatusToStatus(int http_status, std::string_view context) {
  if (http_status >= 200 && http_status < 400) return absl::OkStatus();
  std::string message = StrCat(context, ": HTTP status ", http_status);
  switch (http_status) {
    case 400:
      return absl::InvalidArgumentError(message);
    case 401:
      return absl::UnauthenticatedError(message);
    case 403:
      return absl::PermissionDeniedError(message);
    case 404:
      return absl::NotFoundError(message);
    case 408:
    case 504:
      return absl::DeadlineExceededError(message);
    case 409:
      return absl::AbortedError(message);
    case 412:
      return absl::FailedPreconditionError(message);
    case 416:
      return absl::OutOfRangeError(message);
    case 429:
      return absl::ResourceExhaustedError(message);
    default:
      break;
  }
  if (http_status >= 400 && http_status < 500) return absl::FailedPreconditionError(message);
  if (http_status >= 500 && http_status < 600) return absl::UnavailableError(message);
  // 1xx as a final status, or no valid status at all: a protocol error.
  return absl::UnknownError(message);
}

int StatusToHttpStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kAlreadyExists:
      return 409;
    case absl::StatusCode::kFailedPrecondition:
      return 412;
    case absl::StatusCode::kOutOfRange:
      return 416;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    // Cancelled on the server side (e.g. shutting down): the client may retry elsewhere.
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

bool IsRetryable(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

}  // namespace naiad::net
