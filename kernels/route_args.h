// The arguments every router backend (CPU, fused CUDA kernel, cuBLAS baseline) takes:
// a problem description (checked by CanRoute) and raw buffers. Plain structs; no
// ownership. On the GPU backends every pointer is a device pointer.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "kernels/router_spec.h"

namespace moe {

struct RouteProblem {
  RouterSpec spec;
  int tokens = 0;
  DType hidden_dtype = DType::kBF16;  // element type of the hidden states
  DType weight_dtype = DType::kBF16;  // element type of the router weights
};

struct RouteArgs {
  const void* hidden = nullptr;            // [tokens, hidden], hidden_dtype
  const void* weight = nullptr;            // [experts, hidden], weight_dtype, row-major
  const float* router_bias = nullptr;      // [experts]; required iff spec.has_router_bias
  const float* correction_bias = nullptr;  // [experts]; required iff spec.has_correction_bias
  int32_t* expert_ids = nullptr;           // out [tokens, top_k]
  float* expert_weights = nullptr;         // out [tokens, top_k]
  float* logits = nullptr;                 // optional out [tokens, experts] (bias included)
};

// Checks the problem against the limits every backend shares; the message names the field.
absl::Status CheckRouteProblem(const RouteProblem& problem);

// Checks that the buffers a problem needs are present.
absl::Status CheckRouteArgs(const RouteProblem& problem, const RouteArgs& args);

}  // namespace moe
