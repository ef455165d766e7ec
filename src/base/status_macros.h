// File: base/status_macros.h
//
// Linear error propagation on absl::Status and absl::StatusOr<T>.
//
//   absl::StatusOr<Manifest> Fetch(...) {
//     RETURN_IF_ERROR(Connect());
//     ASSIGN_OR_RETURN(std::string body, Get(url));
//     return ParseManifest(body);
//   }
//
// Both macros evaluate their argument once. ASSIGN_OR_RETURN's left side may declare a variable
// (`ASSIGN_OR_RETURN(auto x, F())`) or name an existing one (`ASSIGN_OR_RETURN(x, F())`).
#pragma once

#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates an expression that yields an absl::Status; returns it if it is not OK.
#define RETURN_IF_ERROR(expr)              \
  do {                                     \
    ::absl::Status naiad_status_ = (expr); \
    if (!naiad_status_.ok()) [[unlikely]]  \
      return naiad_status_;                \
  } while (0)

#define NAIAD_STATUS_CONCAT_INNER_(a, b) a##b
#define NAIAD_STATUS_CONCAT_(a, b) NAIAD_STATUS_CONCAT_INNER_(a, b)

// Evaluates an expression that yields an absl::StatusOr<T>; returns its status if it is not OK,
// otherwise moves its value into `lhs`.
#define ASSIGN_OR_RETURN(lhs, expr) \
  NAIAD_ASSIGN_OR_RETURN_IMPL_(NAIAD_STATUS_CONCAT_(naiad_statusor_, __LINE__), lhs, expr)

#define NAIAD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                 \
  if (!statusor.ok()) [[unlikely]]                        \
    return statusor.status();                             \
  lhs = std::move(statusor).value()

namespace naiad {

// Adds context in front of an error's message, keeping its code: "reading x: <message>".
// OK stays OK.
absl::Status Annotate(const absl::Status& status, std::string_view context);

// Converts an errno value into a status whose message names what was being done:
// ErrnoError(ENOENT, "open /x") -> NotFound("open /x: No such file or directory").
// This is the one place errno becomes a status.
absl::Status ErrnoError(int error_number, std::string_view context);

}  // namespace naiad
