// File: base/strings.h
//
// String helpers that bridge std::string_view and Debian's abseil. Debian builds abseil with
// ABSL_OPTION_USE_STD_STRING_VIEW=0, so absl::string_view is its own type and StrCat()
// rejects std::string_view arguments. Use naiad::StrCat()/StrAppend(), which accept both, and
// ToStd() to view an absl::string_view (e.g. absl::Status::message()) as a std::string_view.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace naiad {

inline std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }
inline absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

namespace strings_internal {
template <typename T>
decltype(auto) ForAbsl(const T& value) {
  if constexpr (std::is_same_v<T, std::string_view>) {
    return ToAbsl(value);
  } else {
    return (value);
  }
}
}  // namespace strings_internal

template <typename... Args>
std::string StrCat(const Args&... args) {
  return absl::StrCat(strings_internal::ForAbsl(args)...);
}

template <typename... Args>
void StrAppend(std::string* out, const Args&... args) {
  absl::StrAppend(out, strings_internal::ForAbsl(args)...);
}

}  // namespace naiad
