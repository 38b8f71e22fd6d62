#include "kernels/route_args.h"

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace moe {

absl::Status CheckRouteProblem(const RouteProblem& problem) {
  RETURN_IF_ERROR(ValidateSpec(problem.spec));
  if (problem.tokens < 1 || problem.tokens > kMaxTokens)
    return absl::InvalidArgumentError(
        absl::StrCat("tokens: ", problem.tokens, " is outside [1, ", kMaxTokens, "]"));
  return absl::OkStatus();
}

absl::Status CheckRouteArgs(const RouteProblem& problem, const RouteArgs& args) {
  if (args.hidden == nullptr) return absl::InvalidArgumentError("hidden: null pointer");
  if (args.weight == nullptr) return absl::InvalidArgumentError("weight: null pointer");
  if (args.expert_ids == nullptr) return absl::InvalidArgumentError("expert_ids: null pointer");
  if (args.expert_weights == nullptr)
    return absl::InvalidArgumentError("expert_weights: null pointer");
  if (problem.spec.has_router_bias && args.router_bias == nullptr)
    return absl::InvalidArgumentError("router_bias: the spec has a router bias but none was given");
  if (problem.spec.has_correction_bias && args.correction_bias == nullptr)
    return absl::InvalidArgumentError(
        "correction_bias: the spec has a correction bias but none was given");
  return absl::OkStatus();
}

}  // namespace moe
