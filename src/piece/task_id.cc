// Piece sizes, task ids and TaskMeta arithmetic (the rules are in docs/formats/piece-store.md).

#include <algorithm>
#include <bit>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/digest.h"
#include "base/strings.h"
#include "piece/piece_store.h"

namespace naiad::piece {
namespace {

constexpr uint64_t kMinPieceSize = uint64_t{1} << 18;   // 256 KiB
constexpr uint64_t kMaxPieceSize = uint64_t{16} << 20;  // 16 MiB
constexpr uint64_t kPiecesPerTask = 1000;
constexpr std::string_view kBlobMarker = "/blobs/sha256:";
constexpr size_t kHexDigits = 64;

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return IsLowerHex(c); });
}

// The hex digest of a registry blob URL "<scheme>://<host>/v2/<name>/blobs/sha256:<hex>", where
// scheme is [a-z]+, host is non-empty and has no '/', name is non-empty, and nothing but a query
// or fragment follows the hex.
std::optional<std::string_view> BlobHex(std::string_view url) {
  url = url.substr(0, url.find_first_of("?#"));
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos || scheme_end == 0) return std::nullopt;
  for (char c : url.substr(0, scheme_end)) {
    if (c < 'a' || c > 'z') return std::nullopt;
  }
  const std::string_view rest = url.substr(scheme_end + 3);
  const size_t host_end = rest.find('/');
  if (host_end == std::string_view::npos || host_end == 0) return std::nullopt;
  const std::string_view path = rest.substr(host_end);  // starts with '/'
  constexpr std::string_view kV2 = "/v2/";
  if (!path.starts_with(kV2)) return std::nullopt;
  const std::string_view after_v2 = path.substr(kV2.size());
  // "<name>/blobs/sha256:<hex>" with a name of at least one character.
  if (after_v2.size() < 1 + kBlobMarker.size() + kHexDigits) return std::nullopt;
  const std::string_view tail = after_v2.substr(after_v2.size() - kBlobMarker.size() - kHexDigits);
  if (!tail.starts_with(kBlobMarker)) return std::nullopt;
  const std::string_view hex = tail.substr(kBlobMarker.size());
  if (!IsLowerHex(hex)) return std::nullopt;
  return hex;
}

// `url` without the query parameters whose names are in `filtered`; the others keep their order.
std::string FilterQuery(std::string_view url, const std::vector<std::string>& filtered) {
  const size_t fragment_start = std::min(url.find('#'), url.size());
  const std::string_view fragment = url.substr(fragment_start);
  const std::string_view without_fragment = url.substr(0, fragment_start);
  const size_t query_start = without_fragment.find('?');
  if (query_start == std::string_view::npos) return std::string(url);
  std::string out(without_fragment.substr(0, query_start));
  std::string_view query = without_fragment.substr(query_start + 1);
  bool first = true;
  for (;;) {
    const size_t end = std::min(query.find('&'), query.size());
    const std::string_view param = query.substr(0, end);
    const std::string_view name = param.substr(0, param.find('='));
    const bool drop = std::find(filtered.begin(), filtered.end(), name) != filtered.end();
    if (!drop) {
      out += first ? '?' : '&';
      out += param;
      first = false;
    }
    if (end == query.size()) break;
    query = query.substr(end + 1);
  }
  out += fragment;
  return out;
}

}  // namespace

uint32_t PieceSizeFor(uint64_t content_length) {
  const uint64_t wanted = std::bit_ceil(std::max<uint64_t>(content_length / kPiecesPerTask, 1));
  return static_cast<uint32_t>(std::clamp(wanted, kMinPieceSize, kMaxPieceSize));
}

bool IsValidTaskId(std::string_view task_id) {
  return task_id.size() == kHexDigits && IsLowerHex(task_id);
}

std::string TaskIdForUrl(std::string_view url, const std::vector<std::string>& filtered) {
  if (std::optional<std::string_view> hex = BlobHex(url)) return std::string(*hex);
  // Dragonfly v2's URL-based id with neither tag nor application: the filtered URL followed by
  // the task type's name.
  return Digest::Of(DigestAlgorithm::kSha256, StrCat(FilterQuery(url, filtered), "STANDARD")).Hex();
}

std::optional<std::string> BlobDigestOfUrl(std::string_view url) {
  std::optional<std::string_view> hex = BlobHex(url);
  if (!hex) return std::nullopt;
  return StrCat("sha256:", *hex);
}

uint32_t TaskMeta::piece_count() const {
  const uint64_t size = piece_size != 0 ? piece_size : PieceSizeFor(content_length);
  return static_cast<uint32_t>((content_length + size - 1) / size);
}

uint32_t TaskMeta::PieceLength(uint32_t n) const {
  const uint64_t size = piece_size != 0 ? piece_size : PieceSizeFor(content_length);
  const uint64_t offset = uint64_t{n} * size;
  if (offset >= content_length) return 0;
  return static_cast<uint32_t>(std::min(size, content_length - offset));
}

}  // namespace naiad::piece
