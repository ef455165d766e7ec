// File: base/status_matchers.h
//
// GoogleTest matchers and assertions for absl::Status and absl::StatusOr<T> (test-only).
//
//   EXPECT_OK(DoThing());
//   ASSERT_OK_AND_ASSIGN(auto value, Compute());
//   EXPECT_THAT(Parse("x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x")));
//   EXPECT_THAT(Compute(), IsOkAndHolds(42));
#pragma once

#include <ostream>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace naiad::testing {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = GetStatus(arg);
  if (!status.ok()) {
    *result_listener << "status is " << status;
  }
  return status.ok();
}

MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(status.message()),
                                       result_listener);
}

MATCHER_P(IsOkAndHolds, value_matcher, "") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace naiad::testing

#define EXPECT_OK(expr) EXPECT_THAT((expr), ::naiad::testing::IsOk())
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::naiad::testing::IsOk())

#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                                         \
  NAIAD_ASSERT_OK_AND_ASSIGN_IMPL_(NAIAD_STATUS_CONCAT_(naiad_assert_statusor_, __LINE__), lhs, \
                                   expr)
#define NAIAD_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                     \
  ASSERT_TRUE(statusor.ok()) << statusor.status();            \
  lhs = std::move(statusor).value()
