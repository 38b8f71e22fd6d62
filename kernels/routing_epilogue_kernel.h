// The routing epilogue as a kernel of its own: fp32 logits [tokens, experts] (no router
// bias) into expert ids and weights, with the fused kernel's epilogue code
// (router_epilogue.cuh). The cuBLAS baseline's second kernel, and the second launch of a
// router config that routes after the staged-tile GEMM (DecomposeKConfig::route_after_gemm).
// Its own file so that the server, which links the router launches, does not link cuBLAS.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/route_args.h"

namespace moe::cuda {

// Adds the router bias, writes args.logits where asked, routes every token. With `pdl` the
// kernel is launched with Programmatic Dependent Launch and reads `logits` only after
// griddepcontrol.wait, so its launch overlaps the kernel before it that writes them.
cudaError_t LaunchRoutingEpilogue(const RouteProblem& problem, const float* logits,
                                  const RouteArgs& args, cudaStream_t stream, bool pdl = false);

}  // namespace moe::cuda
