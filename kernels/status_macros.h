// Status propagation macros (Debian's Abseil 20220623 ships none).
// RETURN_IF_ERROR(expr): returns the status of `expr` when it is not OK.
// ASSIGN_OR_RETURN(lhs, expr): evaluates a StatusOr, returns its status on error,
// else assigns (or declares, `auto x`) its value.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MOE_STATUS_CONCAT_INNER(a, b) a##b
#define MOE_STATUS_CONCAT(a, b) MOE_STATUS_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status moe_status_ = (expr);       \
    if (!moe_status_.ok()) return moe_status_; \
  } while (0)

// `lhs` may be a declaration (`auto x`) and `tmp` is a name: neither takes parentheses.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define MOE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  MOE_ASSIGN_OR_RETURN_IMPL(MOE_STATUS_CONCAT(moe_statusor_, __LINE__), lhs, expr)
// NOLINTEND(bugprone-macro-parentheses)
