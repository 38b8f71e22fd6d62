// Turning a RouteRequest into batcher work: every check of the API contract, each
// failure an INVALID_ARGUMENT/NOT_FOUND status naming the field and the expected value.
// Stateless; thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "moe_router/v1/router.pb.h"
#include "server/batcher.h"
#include "server/router_model.h"

namespace moe {

// What the service knows of a loaded model (its weights live in the backend).
struct ModelDescription {
  std::string name;
  RouterSpec spec;
  DType weight_dtype = DType::kBF16;
  int layers = 0;
  int64_t weight_bytes = 0;
};

// `data` is the request's hidden_states.data, parsed apart from it (ParseRouteRequest);
// the request's own data field is ignored. On success the work takes `*data` (moved, not
// copied: at 16 DeepSeek-V3 tokens a copy of the 229 KB cost ~15 us); on failure it is
// left alone. `check_finite` =
// false leaves the NaN / infinity check to a backend that makes it on the device
// (RouterBackend::ChecksFiniteOnDevice; the batcher then answers the same error).
absl::StatusOr<std::unique_ptr<RouteWork>> ValidateRouteRequest(
    const moe_router::v1::RouteRequest& request, HiddenBytes* data,
    const std::map<std::string, ModelDescription>& models, int max_tokens,
    bool check_finite = true);

// The same for a request parsed whole: takes its hidden_states.data on success.
absl::StatusOr<std::unique_ptr<RouteWork>> ValidateRouteRequest(
    moe_router::v1::RouteRequest* request, const std::map<std::string, ModelDescription>& models,
    int max_tokens, bool check_finite = true);

}  // namespace moe
