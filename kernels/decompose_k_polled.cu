// Decompose-K with one polled reduction: no arrival counters, no fences, one L2 round trip.
//
// Grid = (R + m_blocks · S, z_chunks) with at most one CTA per SM (so all are resident at
// once; CanRouteDecomposeK checks it). CTA (m-block, split) computes the partial logits of
// 32 experts over one of S K ranges for a chunk of 8·NT tokens, exactly as the other
// variants (same mainloop), then stores them into the workspace with relaxed stores whose
// bit pattern is never zero (StorePolled: +0.0 is stored as -0.0). The chunk's router CTAs
// own one of its tokens each: either R dedicated blocks ahead of the mainloop CTAs
// (DecomposeKConfig::dedicated_routers, R = the chunk's tokens; see the kernel) or, with
// R = 0, the first mainloop blocks of the row (several tokens each only when the row has
// fewer blocks than tokens), which preload the biases while they stream their own
// weights. A router polls every partial of its tokens until it is non-zero, sums the S
// splits of each (expert, token) in split order (deterministic), empties each slot for
// the next launch, and routes: a lone token with the whole CTA (CtaRouteToken), else a
// warp each.
//
// Against the arrival-counter variant this removes, per launch, two rounds of (fence,
// atomic, dependent L2 read) from the critical path: the router CTA learns that a partial
// is ready by reading it. The cost is one CTA spinning on L2 while the last partials land.
//
// Workspace: partials [z][split][token of chunk][m_blocks · 32], zero-filled once at
// allocation; every launch leaves it zero again (a slot is written only for real tokens
// and experts, and every written slot is read and emptied by the router CTA).
//
// Programmatic Dependent Launch: weights and biases are model constants, loaded before
// griddepcontrol.wait; hidden states and the workspace only after it. Every CTA allows the
// next launch to start at once, so the next layer's weights stream while this layer
// reduces and routes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/decompose_k_device.cuh"
#include "kernels/decompose_k_polled.h"
#include "kernels/decompose_k_polled_router.cuh"
#include "kernels/one_cta_per_sm.h"

namespace moe::cuda {
namespace {

struct PolledShared {
  SharedStorage main;
  PolledRouterShared router;
};

// Stores this CTA's partial logits (its 32 experts, the chunk's real tokens).
template <int kChunk>
__device__ void PublishPartials(const KernelParams& p, const WarpPartials& reduce, int m_block,
                                int split, int z, int valid) {
  const int epad = p.m_blocks * kBlockExperts;
  float* base =
      p.partials + (size_t(z) * p.k_splits + split) * kChunk * epad + m_block * kBlockExperts;
  for (int i = threadIdx.x; i < kBlockExperts * valid; i += kThreads) {
    const int n = i / kBlockExperts, el = i % kBlockExperts;
    if (m_block * kBlockExperts + el < p.experts)
      StorePolled(base + size_t(n) * epad + el, SumWarps<kChunk>(reduce, el * kChunk + n));
  }
}

// Made-up logits for a dedicated router's dry run: distinct, so the common path without
// ties.
__device__ __forceinline__ void FillDryLogits(const KernelParams& p, PolledShared& smem) {
  for (int e = threadIdx.x; e < p.experts; e += kThreads)
    smem.main.chunk_logits[e] = -1e-3f * float(e);
}

// Two CTAs per SM (<= 128 registers a thread): one of this launch, one of the next
// launch already streaming its weights under PDL.
//
// kDedicatedRouters (DecomposeKConfig::dedicated_routers): the first router_ctas blocks of
// a grid row route token blockIdx.x of the chunk each and stream no weights; the mainloop
// CTAs never route. Where the launch is under PDL (p.warm_routers), a dedicated router
// first routes made-up logits into shared memory: a dry run that fetches the epilogue's
// instructions and the spec's constants into its SM's caches while it would otherwise only
// wait for the previous launch (the epilogue runs once per launch on one SM, so it ran
// cold). Without PDL the dry run would only delay the gather. The dry and the real run
// are two passes of one loop through one copy of the inlined routing code, so the dry run
// warms exactly the instructions the real one executes. A separate instance: with the
// routing code inlined twice, or called, ptxas spilled in the mainloop path, and the
// instance without dedicated routers measured slower with the loop in it.
//
// kWideExperts: the instance for routers of more than 256 experts (width 16 and
// GatherWideToken only), the other one the widths 1-8 (WithExpertsPerLaneOf).
//
// kPassSteps: the mainloop's K steps a pass (TensorCorePassSteps: two-tile launches whose
// warps have at most two K steps each take the pass of 2).
template <typename T, int NT, bool kDedicatedRouters, bool kWideExperts, int kPassSteps>
__global__ void __launch_bounds__(kThreads, 2) DecomposeKPolledKernel(const KernelParams p) {
  __shared__ alignas(16) PolledShared smem;  // 16 bytes: cp.async into smem.main.reduce
  constexpr int kChunk = 8 * NT;
  const int z = blockIdx.y;
  const int valid = min(kChunk, p.tokens - z * kChunk);
  const int routers = kDedicatedRouters ? p.router_ctas : 0;
  AllowDependentLaunch();
  Stamp(p, kStampStart);
  RouterTokens mine;
  if (int(blockIdx.x) < routers) {
    mine = {int(blockIdx.x), int(blockIdx.x) + 1};
    if (mine.first >= valid) return;  // past the last chunk's tokens
    StageBiases(p, smem.router);
  } else {
    const int b = int(blockIdx.x) - routers;
    const int m_block = b % p.m_blocks, split = b / p.m_blocks;
    // The first blocks are dispatched first: they finish their own share first and are
    // already polling when the last partials land.
    mine = kDedicatedRouters ? RouterTokens{0, 0} : TokensOfRouter(valid);
    const bool router = mine.first < mine.last;
    if (router) StageBiases(p, smem.router);
    float acc[2][NT][4] = {};
    TensorCoreMainloop<T, NT, kPassSteps>(p, m_block, split, z * kChunk, acc, smem.main.reduce);
    StoreAccumulators<NT>(smem.main.reduce, acc);
    __syncthreads();
    Stamp(p, kStampMainloop);
    PublishPartials<kChunk>(p, smem.main.reduce, m_block, split, z, valid);
    Stamp(p, kStampReduced);
    if (!router) return;
    __syncthreads();  // smem.main.reduce becomes chunk_logits
  }
  if constexpr (kDedicatedRouters) {
    bool dry = p.warm_routers != 0;
#pragma unroll 1
    for (;;) {
      if (dry) {
        FillDryLogits(p, smem);
      } else {
        WaitForPrerequisiteGrid();  // the mainloop CTAs waited in the mainloop
        Stamp(p, kStampWaited);
        GatherChunkLogits<kChunk, kWideExperts>(p, smem.router, smem.main.chunk_logits, z, mine);
      }
      __syncthreads();
      if (!dry) Stamp(p, kStampArrived);
      RouteChunkTokens<kChunk, kWideExperts, /*kCountWinsOnce=*/false>(
          p, smem.router, smem.main.chunk_logits, z, mine, dry);
      __syncthreads();
      if (!dry) break;
      dry = false;
    }
  } else {
    GatherChunkLogits<kChunk, kWideExperts>(p, smem.router, smem.main.chunk_logits, z, mine);
    __syncthreads();
    Stamp(p, kStampArrived);
    RouteChunkTokens<kChunk, kWideExperts>(p, smem.router, smem.main.chunk_logits, z, mine,
                                           /*dry=*/false);
    __syncthreads();
  }
  Stamp(p, kStampRouted);
}

// A router CTA spins until every other CTA of its grid has published, so the grid must be
// resident at once. Launched without PDL, the launch is cooperative: the driver guarantees
// that (and refuses a grid that cannot be), also while other grids, from other streams or
// processes, hold SMs; without it, enough concurrent grids whose router CTAs were
// dispatched first could in theory fill the SMs and wait forever. Measured on the H100: no
// cost without PDL (router_bench's no-PDL column within 0.1 us at 1 and 16 tokens). Under
// PDL it is the config's choice (pdl_cooperative, timed by the autotuner): in a same-run
// A/B (two runs each way, NOTES.md) the cooperative launch was 0.1-0.4 us faster on 14 of
// 22 rows at 1 and 16 tokens and 0.1-0.3 slower on the rest (Kimi K2, gpt-oss, DeepSeek-V3
// at 16 tokens). Where it is not cooperative, PDL callers (the server's two slots,
// router_bench) keep to few concurrent grids, which cannot fill the SMs with waiting
// router CTAs: a grid is at most one CTA per SM, and blocks of a later grid of the same
// priority are dispatched once every block of the earlier one has been (a stream of
// another priority launches cooperatively: LaunchesCooperatively).
//
// Under PDL a config may also keep the kernel to one CTA per SM (pdl_one_cta_per_sm): the
// launch asks for dynamic shared memory past half an SM's, which it does not use, so that
// no CTA of the next launches shares an SM with this one's (routers included) while it
// runs, as the staged launches do (decompose_k_staged.cu). H200, per call under PDL in a
// graph (bench/NOTES.md session 36), dedicated routers: DeepSeek-V3 t=16 at 7 splits
// cooperative 5.19 -> 4.29 us, Kimi K2 t=4 at 7 cooperative 5.05 -> 3.80, GLM-4.5 t=16 at 6
// cooperative 4.18 -> 3.97; but DeepSeek-V3 t=8 at 7 cooperative 3.69 -> 4.14 and Kimi K2
// t=8 at 10 cooperative 4.17 -> 5.99, so the autotuner times both.

// Per kernel instance, once: OneCtaPerSmDynamicSmem, with the instance allowed to ask for
// it (0 where either fails: such launches then run as they would without the option).
template <typename T, int kTokenTiles, bool kDedicatedRouters, bool kWideExperts, int kPassSteps>
size_t PolledOneCtaPerSmDynamicSmem() {
  static const size_t bytes = [] {
    const auto kernel =
        DecomposeKPolledKernel<T, kTokenTiles, kDedicatedRouters, kWideExperts, kPassSteps>;
    const size_t smem = OneCtaPerSmDynamicSmem(kernel);
    if (smem == 0 || cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          int(smem)) != cudaSuccess) {
      cudaGetLastError();
      return size_t(0);
    }
    return smem;
  }();
  return bytes;
}

template <typename T, int kTokenTiles, bool kDedicatedRouters, bool kWideExperts,
          int kPassSteps = TensorCoreUnrollSteps(kTokenTiles)>
cudaError_t LaunchInstance(dim3 grid, const KernelParams& params, cudaStream_t stream, bool pdl,
                           bool cooperative, bool one_cta_per_sm) {
  const size_t smem = pdl && one_cta_per_sm
                          ? PolledOneCtaPerSmDynamicSmem<T, kTokenTiles, kDedicatedRouters,
                                                         kWideExperts, kPassSteps>()
                          : 0;  // the kernel itself uses static shared memory only
  return Launch(DecomposeKPolledKernel<T, kTokenTiles, kDedicatedRouters, kWideExperts, kPassSteps>,
                grid, params, stream, pdl, /*cluster=*/0, cooperative, smem);
}

template <typename T, bool kDedicatedRouters, bool kWideExperts>
cudaError_t LaunchTyped(int token_tiles, dim3 grid, const KernelParams& params, cudaStream_t stream,
                        bool pdl, bool cooperative, bool one_cta_per_sm) {
  switch (token_tiles) {
    case 1:
      return LaunchInstance<T, 1, kDedicatedRouters, kWideExperts>(grid, params, stream, pdl,
                                                                   cooperative, one_cta_per_sm);
    case 2:
      static_assert(TensorCorePassSteps(2, kShortPassSteps) == kShortPassSteps);
      if (TensorCorePassSteps(2, params.steps_per_warp) == kShortPassSteps)
        return LaunchInstance<T, 2, kDedicatedRouters, kWideExperts, kShortPassSteps>(
            grid, params, stream, pdl, cooperative, one_cta_per_sm);
      return LaunchInstance<T, 2, kDedicatedRouters, kWideExperts>(grid, params, stream, pdl,
                                                                   cooperative, one_cta_per_sm);
    default:
      return LaunchInstance<T, 4, kDedicatedRouters, kWideExperts>(grid, params, stream, pdl,
                                                                   cooperative, one_cta_per_sm);
  }
}

template <typename T, bool kWideExperts>
cudaError_t LaunchTyped(int token_tiles, dim3 grid, const KernelParams& params, cudaStream_t stream,
                        bool pdl, bool cooperative, bool one_cta_per_sm) {
  return params.router_ctas > 0
             ? LaunchTyped<T, true, kWideExperts>(token_tiles, grid, params, stream, pdl,
                                                  cooperative, one_cta_per_sm)
             : LaunchTyped<T, false, kWideExperts>(token_tiles, grid, params, stream, pdl,
                                                   cooperative, one_cta_per_sm);
}

// An instance for routers of more than 256 experts and one for the rest
// (WithExpertsPerLaneOf).
template <typename T>
cudaError_t LaunchTyped(int token_tiles, dim3 grid, const KernelParams& params, cudaStream_t stream,
                        bool pdl, bool cooperative, bool one_cta_per_sm) {
  return WideExperts(params.experts) ? LaunchTyped<T, true>(token_tiles, grid, params, stream, pdl,
                                                            cooperative, one_cta_per_sm)
                                     : LaunchTyped<T, false>(token_tiles, grid, params, stream, pdl,
                                                             cooperative, one_cta_per_sm);
}

}  // namespace

int PolledMaxCtas() {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return sms;
}

cudaError_t LaunchPolledKernel(bool bf16, int token_tiles, dim3 grid, const KernelParams& params,
                               cudaStream_t stream, bool pdl, bool pdl_cooperative,
                               bool pdl_one_cta_per_sm) {
  const bool cooperative = !pdl || pdl_cooperative;
  return bf16 ? LaunchTyped<__nv_bfloat16>(token_tiles, grid, params, stream, pdl, cooperative,
                                           pdl_one_cta_per_sm)
              : LaunchTyped<__half>(token_tiles, grid, params, stream, pdl, cooperative,
                                    pdl_one_cta_per_sm);
}

}  // namespace moe::cuda
