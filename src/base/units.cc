#include "base/units.h"

#include <cctype>
#include <string>

#include "base/strings.h"

namespace naiad {
namespace {

using Wide = unsigned __int128;

constexpr int kMaxFractionDigits = 18;  // 10^18 still fits in 64 bits

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Consumes a non-empty run of digits into `value` (saturating far above 2^64); false if none.
bool ConsumeDigits(std::string_view* s, Wide* value, int* count) {
  *value = 0;
  *count = 0;
  while (!s->empty() && IsDigit(s->front())) {
    if (*value <= Wide{UINT64_MAX}) *value = *value * 10 + static_cast<unsigned>(s->front() - '0');
    s->remove_prefix(1);
    ++*count;
  }
  return *count > 0;
}

// The multiplier of a unit suffix ("", "B", "k", "Ki", "KiB", "mb", ...); 0 if it is not one.
uint64_t UnitMultiplier(std::string_view unit) {
  if (!unit.empty() && (unit.back() == 'b' || unit.back() == 'B')) unit.remove_suffix(1);
  if (unit.empty()) return 1;
  int shift = 0;
  switch (std::tolower(static_cast<unsigned char>(unit.front()))) {
    case 'k':
      shift = 10;
      break;
    case 'm':
      shift = 20;
      break;
    case 'g':
      shift = 30;
      break;
    case 't':
      shift = 40;
      break;
    default:
      return 0;
  }
  unit.remove_prefix(1);
  if (unit == "i" || unit == "I") unit.remove_prefix(1);
  return unit.empty() ? uint64_t{1} << shift : 0;
}

}  // namespace

absl::StatusOr<uint64_t> ParseByteQuantity(std::string_view text) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat("invalid byte quantity \"", text, "\": ", why));
  };
  std::string_view rest = TrimBlanks(text);
  if (rest.empty()) return 0;
  Wide whole = 0;
  int whole_digits = 0;
  if (!ConsumeDigits(&rest, &whole, &whole_digits)) {
    return invalid("expected a number, e.g. 100Mi");
  }
  Wide fraction = 0;
  int fraction_digits = 0;
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    if (!ConsumeDigits(&rest, &fraction, &fraction_digits)) {
      return invalid("expected digits after '.'");
    }
    if (fraction_digits > kMaxFractionDigits) return invalid("too many decimal places");
  }
  if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  uint64_t multiplier = UnitMultiplier(rest);
  if (multiplier == 0) {
    return invalid("unknown unit (use k, Ki, M, Mi, G, Gi, T or Ti, optionally with B)");
  }
  Wide scale = 1;
  for (int i = 0; i < fraction_digits; ++i) scale *= 10;
  Wide value = whole * multiplier + fraction * multiplier / scale;
  if (whole > Wide{UINT64_MAX} || value > Wide{UINT64_MAX}) return invalid("too large");
  return static_cast<uint64_t>(value);
}

}  // namespace naiad
