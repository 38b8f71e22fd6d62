// The routing-epilogue kernels (routing_epilogue_kernel.h).
#include "kernels/launch_attributes.h"
#include "kernels/pdl_device.cuh"
#include "kernels/router_epilogue.cuh"
#include "kernels/routing_epilogue_kernel.h"

namespace moe::cuda {
namespace {

constexpr int kEpilogueWarps = 4;

// A warp per token: routers of up to 128 experts, and the specs CtaRouteToken does not
// take (score-first softmax, groups that are not whole lane columns).
__global__ void __launch_bounds__(kEpilogueWarps * 32)
    RoutingEpilogueKernel(EpilogueParams ep, int tokens, const float* __restrict__ logits,
                          const float* __restrict__ router_bias,
                          const float* __restrict__ correction_bias, int32_t* ids, float* weights,
                          float* logits_out) {
  __shared__ float lg[kEpilogueWarps][kMaxExperts];
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  // No griddepcontrol.launch_dependents, here or in CtaRoutingEpilogueKernel: the next
  // launch starts as these CTAs exit. Letting it in at the start lost where a staged-tile
  // GEMM follows (the two-launch path's next layer, H100, bench/NOTES.md session 69):
  // DeepSeek-V3 t=256 13.1 -> 16.5 us a call, Kimi K2 t=256 19.0 -> 24.1; only GLM-4.5 t=128
  // gained (9.7 -> 9.1).
  const int tok = blockIdx.x * kEpilogueWarps + warp;
  if (tok >= tokens) return;
  WaitForPrerequisiteGrid();  // the logits' writer, under PDL
  for (int e = lane; e < ep.experts; e += 32) {
    const float v = logits[size_t(tok) * ep.experts + e] + (router_bias ? router_bias[e] : 0.0f);
    lg[warp][e] = v;
    if (logits_out) logits_out[size_t(tok) * ep.experts + e] = v;
  }
  __syncwarp();
  WarpRouteToken(ep, lg[warp], correction_bias, ids + size_t(tok) * ep.top_k,
                 weights + size_t(tok) * ep.top_k);
}

// A CTA per token (CtaRouteToken, the fused kernel's one-token router) for routers of more
// than 128 experts: the per-expert work spread over the warps and the top-k on the few
// experts that can still be chosen, where a lone warp sorts 8 or 16 keys a lane. The
// token's logits and the correction bias are staged in shared memory first: CtaRouteToken
// reads them again in its serial part. Measured on the H100 (router_bench, the epilogue
// kernel alone, one token): Kimi K2 4.90 -> 3.18 us, DeepSeek-V3 3.29 -> 3.20; with 8
// experts (Mixtral) 1.74 -> 1.87, so smaller routers keep the warp kernel.
constexpr int kCtaEpilogueWarps = 8;

struct CtaEpilogueShared {
  float logits[kMaxExperts];
  float correction_bias[kMaxExperts];
  CtaRouteScratch route;
};

__global__ void __launch_bounds__(kCtaEpilogueWarps * 32)
    CtaRoutingEpilogueKernel(EpilogueParams ep, const float* __restrict__ logits,
                             const float* __restrict__ router_bias,
                             const float* __restrict__ correction_bias, int32_t* ids,
                             float* weights, float* logits_out) {
  __shared__ CtaEpilogueShared smem;
  const size_t tok = blockIdx.x;
  WaitForPrerequisiteGrid();  // the logits' writer, under PDL
  for (int e = threadIdx.x; e < ep.experts; e += blockDim.x) {
    const float v = logits[tok * ep.experts + e] + (router_bias ? router_bias[e] : 0.0f);
    smem.logits[e] = v;
    smem.correction_bias[e] = correction_bias ? correction_bias[e] : 0.0f;
    if (logits_out) logits_out[tok * ep.experts + e] = v;
  }
  __syncthreads();
  int32_t* token_ids = ids + tok * ep.top_k;
  float* token_weights = weights + tok * ep.top_k;
  if (ExpertsPerLane(ep.experts) == 16)
    CtaRouteToken<16>(ep, smem.logits, smem.correction_bias, smem.route, kCtaEpilogueWarps,
                      token_ids, token_weights);
  else
    CtaRouteToken<8>(ep, smem.logits, smem.correction_bias, smem.route, kCtaEpilogueWarps,
                     token_ids, token_weights);
}

bool UseCtaEpilogue(const EpilogueParams& ep) {
  return CtaRouteTokenApplies(ep) && ExpertsPerLane(ep.experts) >= kFewCandidatesMinP;
}

}  // namespace

cudaError_t LaunchRoutingEpilogue(const RouteProblem& problem, const float* logits,
                                  const RouteArgs& args, cudaStream_t stream, bool pdl) {
  const RouterSpec& s = problem.spec;
  const EpilogueParams ep = MakeEpilogueParams(s);
  const float* router_bias = s.has_router_bias ? args.router_bias : nullptr;
  const float* correction_bias = s.has_correction_bias ? args.correction_bias : nullptr;
  cudaLaunchConfig_t config = {};
  config.stream = stream;
  LaunchAttributes attributes;
  attributes.Pdl(pdl).AttachTo(config);
  if (UseCtaEpilogue(ep)) {
    config.gridDim = dim3(problem.tokens);
    config.blockDim = dim3(kCtaEpilogueWarps * 32);
    return cudaLaunchKernelEx(&config, CtaRoutingEpilogueKernel, ep, logits, router_bias,
                              correction_bias, args.expert_ids, args.expert_weights, args.logits);
  }
  config.gridDim = dim3((problem.tokens + kEpilogueWarps - 1) / kEpilogueWarps);
  config.blockDim = dim3(kEpilogueWarps * 32);
  return cudaLaunchKernelEx(&config, RoutingEpilogueKernel, ep, problem.tokens, logits, router_bias,
                            correction_bias, args.expert_ids, args.expert_weights, args.logits);
}

}  // namespace moe::cuda
