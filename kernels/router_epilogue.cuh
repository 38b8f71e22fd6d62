// The routing epilogue on the GPU: one token's logits into expert ids and weights, with the
// semantics of RouterSpec (router_spec.h). Shared by the fused Decompose-K kernels and the
// cuBLAS baseline's epilogue kernel; include this header. Its parts, in the order they
// build on each other:
//   epilogue_keys.cuh                 EpilogueParams, order-preserving keys, warp primitives
//   warp_route_token.cuh              one warp, experts in registers, top-k by rounds
//   ranked_route_token.cuh            top-k by counting ranks; CtaRouteToken's scratch
//   column_ranked_route_token.cuh     a warp a column, candidates ranked by counting
//   cta_route_token.cuh               one token by a whole CTA: picks among the above
// Here: the experts-per-lane width that picks a template instance, and WarpRouteToken for
// a run-time width.
#pragma once

#include <type_traits>

#include "kernels/cta_route_token.cuh"
#include "kernels/epilogue_keys.cuh"
#include "kernels/warp_route_token.cuh"

namespace moe::cuda {

// The experts-per-lane width for a number of experts: 1, 2, 4, 8 or 16.
__host__ __device__ inline int ExpertsPerLane(int experts) {
  return experts <= 32 ? 1 : experts <= 64 ? 2 : experts <= 128 ? 4 : experts <= 256 ? 8 : 16;
}

// Whether `experts` takes the kWideExperts kernel instances (width 16: more than 256).
__host__ __device__ inline bool WideExperts(int experts) { return ExpertsPerLane(experts) == 16; }

// Calls f(std::integral_constant<int, P>{}) for the experts-per-lane width P of `experts`,
// among one group of widths: routers of more than 256 experts (width 16) when
// kWideExperts, else the widths 1-8. The polled and staged kernels have an instance for
// each group (the host picks by the expert count), so neither carries the other's routing
// code or registers.
template <bool kWideExperts, typename F>
__device__ __forceinline__ void WithExpertsPerLaneOf(int experts, F&& f) {
  if constexpr (kWideExperts) {
    return f(std::integral_constant<int, 16>{});
  } else {
    switch (ExpertsPerLane(experts)) {
      case 1:
        return f(std::integral_constant<int, 1>{});
      case 2:
        return f(std::integral_constant<int, 2>{});
      case 4:
        return f(std::integral_constant<int, 4>{});
      default:
        return f(std::integral_constant<int, 8>{});
    }
  }
}

// Any width, for the kernels with one instance for all (the one place a run-time expert
// count picks an epilogue instance).
template <typename F>
__device__ __forceinline__ void WithExpertsPerLane(int experts, F&& f) {
  if (WideExperts(experts)) return WithExpertsPerLaneOf<true>(experts, f);
  return WithExpertsPerLaneOf<false>(experts, f);
}

// WarpRouteTokenP for the spec's width.
__device__ inline void WarpRouteToken(const EpilogueParams& p, const float* logits,
                                      const float* correction_bias, int32_t* __restrict__ ids_out,
                                      float* __restrict__ weights_out) {
  WithExpertsPerLane(p.experts, [&](auto width) {
    WarpRouteTokenP<decltype(width)::value>(p, logits, correction_bias, ids_out, weights_out);
  });
}

}  // namespace moe::cuda
