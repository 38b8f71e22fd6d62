// Decompose-K with one polled reduction: no arrival counters, no fences, one L2 round trip.
//
// Grid = (m_blocks · S, z_chunks) with at most one CTA per SM (so all are resident at
// once; CanRouteDecomposeK checks it). CTA (m-block, split) computes the partial logits of
// 32 experts over one of S K ranges for a chunk of 8·NT tokens, exactly as the other
// variants (same mainloop), then stores them into the workspace with relaxed stores whose
// bit pattern is never zero (StorePolled: +0.0 is stored as -0.0). The chunk's router CTAs,
// the first ceil(tokens / 8) blocks of its grid row, each own up to 8 of its tokens: a
// router preloads the biases while it streams its own weights, then polls every partial
// of its tokens until it is non-zero, sums the S splits of each (expert, token) in split
// order (deterministic), empties each slot for the next launch, and routes its tokens,
// one warp per token.
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
#include "kernels/staged_mainloop.cuh"

namespace moe::cuda {
namespace {

// What a router CTA keeps beside the SharedStorage (which the staged kernel places in its
// dynamic shared memory, over the staged weights).
struct RouterShared {
  float router_bias[kMaxExperts];
  float correction_bias[kMaxExperts];
  CtaRouteScratch cta_route;  // a router with one token only
};

__device__ void StageBiases(const KernelParams& p, RouterShared& smem) {
  for (int e = threadIdx.x; e < p.experts; e += kThreads) {
    smem.router_bias[e] = p.router_bias ? __ldg(p.router_bias + e) : 0.0f;
    smem.correction_bias[e] = p.correction_bias ? __ldg(p.correction_bias + e) : 0.0f;
  }
}

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

// The chunk tokens [first, last) a router CTA gathers and routes: the chunk's tokens are
// split over its first ceil(tokens / 8) blocks, so each routing warp has one token.
struct RouterTokens {
  int first, last;
};
__device__ __forceinline__ RouterTokens TokensOfRouter(int valid) {
  const int routers = min((valid + kWarps - 1) / kWarps, int(gridDim.x));
  const int per_router = (valid + routers - 1) / routers;
  const int first = int(blockIdx.x) * per_router;
  return {first, min(first + per_router, valid)};
}

// Sum of `splits` polled slots `stride` floats apart, in slot order (deterministic);
// empties each slot. Sixteen slots are polled together and every round re-issues the loads
// of all that are still empty, so slots that land late cost one L2 round trip between
// them, not one each.
__device__ __forceinline__ float SumPolled(float* first, int splits, size_t stride) {
  constexpr int kBatch = 16;
  float s = 0.0f;
  for (int sp = 0; sp < splits; sp += kBatch) {
    uint32_t v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
      v[u] = sp + u < splits ? LoadPolledBits(first + (sp + u) * stride) : 0x80000000u;
    for (;;) {
      bool empty = false;
#pragma unroll
      for (int u = 0; u < kBatch; ++u) empty |= v[u] == 0u;
      if (!empty) break;
#pragma unroll
      for (int u = 0; u < kBatch; ++u)
        if (v[u] == 0u) v[u] = LoadPolledBits(first + (sp + u) * stride);
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (sp + u >= splits) break;
      s += __uint_as_float(v[u]);
      EmptyPolled(first + (sp + u) * stride);
    }
  }
  return s;
}

// Router CTA: its tokens' logits (bias added) into shared memory, [token - first][expert],
// and to the optional logits output; a thread per (token, expert). (Polling a thread's
// slots of several elements together measured slower at one token; see bench/NOTES.md.)
template <int kChunk>
__device__ void GatherChunkLogits(const KernelParams& p, SharedStorage& main,
                                  const RouterShared& smem, int z, RouterTokens mine) {
  const int E = p.experts, epad = p.m_blocks * kBlockExperts;
  const size_t split_stride = size_t(kChunk) * epad;
  float* base = p.partials + size_t(z) * p.k_splits * split_stride;
  for (int i = threadIdx.x; i < (mine.last - mine.first) * E; i += kThreads) {
    const int n = mine.first + i / E, e = i % E;
    const float s =
        SumPolled(base + size_t(n) * epad + e, p.k_splits, split_stride) + smem.router_bias[e];
    main.chunk_logits[i] = s;
    if (p.logits_out) p.logits_out[size_t(z * kChunk + n) * E + e] = s;
  }
}

// A CTA that holds all of the chunk's experts (m_blocks == 1, no K split): its tokens'
// logits straight from the warps' accumulators, no round trip through the workspace.
// NT values a thread, read before the barrier because chunk_logits overlays reduce.
template <int NT>
__device__ void OwnChunkLogits(const KernelParams& p, SharedStorage& main, const RouterShared& smem,
                               int z, int valid) {
  constexpr int kChunk = 8 * NT;
  const int E = p.experts;
  float v[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int i = threadIdx.x + j * kThreads, n = i / kBlockExperts, e = i % kBlockExperts;
    v[j] = n < valid && e < E ? SumWarps<kChunk>(main.reduce, e * kChunk + n) + smem.router_bias[e]
                              : 0.0f;
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int i = threadIdx.x + j * kThreads, n = i / kBlockExperts, e = i % kBlockExperts;
    if (n >= valid || e >= E) continue;
    main.chunk_logits[n * E + e] = v[j];
    if (p.logits_out) p.logits_out[size_t(z * kChunk + n) * E + e] = v[j];
  }
}

// A router with one token (decode) spreads the token's per-expert work over its warps
// where the spec allows (CtaRouteToken); otherwise a warp per token.
template <int P, int kChunk>
__device__ void RouteChunkTokens(const KernelParams& p, const SharedStorage& main,
                                 RouterShared& smem, int z, RouterTokens mine) {
  if (mine.last - mine.first == 1 && CtaRouteTokenApplies(p.ep)) {
    const size_t tok = size_t(z) * kChunk + mine.first;
    CtaRouteToken<P>(p.ep, main.chunk_logits, smem.correction_bias, smem.cta_route, kWarps,
                     p.ids + tok * p.ep.top_k, p.weights + tok * p.ep.top_k);
    return;
  }
  const int warp = threadIdx.x / 32;
  for (int n = mine.first + warp; n < mine.last; n += kWarps) {
    const size_t tok = size_t(z) * kChunk + n;
    WarpRouteTokenP<P>(p.ep, main.chunk_logits + (n - mine.first) * p.experts, smem.correction_bias,
                       p.ids + tok * p.ep.top_k, p.weights + tok * p.ep.top_k);
  }
}

template <int kChunk>
__device__ void RouteChunkTokens(const KernelParams& p, const SharedStorage& main,
                                 RouterShared& smem, int z, RouterTokens mine) {
  WithExpertsPerLane(p.experts, [&](auto width) {
    RouteChunkTokens<decltype(width)::value, kChunk>(p, main, smem, z, mine);
  });
}

// Two CTAs per SM (<= 128 registers a thread): one of this launch, one of the next
// launch already streaming its weights under PDL.
template <typename T, int NT>
__global__ void __launch_bounds__(kThreads, 2) DecomposeKPolledKernel(const KernelParams p) {
  __shared__ SharedStorage main;
  __shared__ RouterShared smem;
  constexpr int kChunk = 8 * NT;
  const int m_block = blockIdx.x % p.m_blocks, split = blockIdx.x / p.m_blocks, z = blockIdx.y;
  const int valid = min(kChunk, p.tokens - z * kChunk);
  // The first blocks are dispatched first: they finish their own share first and are
  // already polling when the last partials land.
  const RouterTokens mine = TokensOfRouter(valid);
  const bool router = mine.first < mine.last;
  AllowDependentLaunch();
  Stamp(p, kStampStart);
  if (router) StageBiases(p, smem);
  float acc[2][NT][4] = {};
  TensorCoreMainloop<T, NT>(p, m_block, split, z * kChunk, acc);
  StoreAccumulators<NT>(main.reduce, acc);
  __syncthreads();
  Stamp(p, kStampMainloop);
  PublishPartials<kChunk>(p, main.reduce, m_block, split, z, valid);
  Stamp(p, kStampReduced);
  if (!router) return;
  __syncthreads();  // main.reduce becomes chunk_logits
  GatherChunkLogits<kChunk>(p, main, smem, z, mine);
  __syncthreads();
  Stamp(p, kStampArrived);
  RouteChunkTokens<kChunk>(p, main, smem, z, mine);
  __syncthreads();
  Stamp(p, kStampRouted);
}

// The staged variant (staged_mainloop.cuh): k_splits == 1, one CTA per (m-block, chunk),
// the weights in dynamic shared memory, which then holds the SharedStorage. With one
// m-block the CTA routes from its own accumulators; otherwise it publishes and block 0 of
// the row polls the others, as above. One CTA per SM (its shared memory).
template <typename T, int NT>
__global__ void __launch_bounds__(kThreads, 1) DecomposeKStagedKernel(const KernelParams p) {
  extern __shared__ uint4 dynamic_smem[];
  __shared__ RouterShared smem;
  SharedStorage& main = *reinterpret_cast<SharedStorage*>(dynamic_smem);
  constexpr int kChunk = 8 * NT;
  const int m_block = blockIdx.x, z = blockIdx.y;
  const int valid = min(kChunk, p.tokens - z * kChunk);
  const RouterTokens mine = TokensOfRouter(valid);
  const bool router = mine.first < mine.last;
  AllowDependentLaunch();
  Stamp(p, kStampStart);
  if (router) StageBiases(p, smem);
  float acc[2][NT][4] = {};
  StagedMainloop<T, NT>(p, m_block, z * kChunk, dynamic_smem, acc);
  StoreAccumulators<NT>(main.reduce, acc);
  __syncthreads();
  Stamp(p, kStampMainloop);
  if (p.m_blocks == 1) {
    OwnChunkLogits<NT>(p, main, smem, z, valid);
  } else {
    PublishPartials<kChunk>(p, main.reduce, m_block, 0, z, valid);
    if (!router) return;
    __syncthreads();  // main.reduce becomes chunk_logits
    GatherChunkLogits<kChunk>(p, main, smem, z, mine);
  }
  __syncthreads();
  Stamp(p, kStampArrived);
  RouteChunkTokens<kChunk>(p, main, smem, z, mine);
  __syncthreads();
  Stamp(p, kStampRouted);
}

template <int NT, typename Kernel>
cudaError_t LaunchStaged(Kernel kernel, dim3 grid, const KernelParams& params, cudaStream_t stream,
                         bool pdl) {
  // The largest staging any launch may ask for, set once per instance (not a stream
  // operation: fine during graph capture).
  const size_t max_bytes = StagedMaxSmemBytes();
  static const cudaError_t opted_in =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(max_bytes));
  if (opted_in != cudaSuccess) return opted_in;
  const size_t bytes = StagedSmemBytes(params.experts, params.K, min(8 * NT, params.tokens));
  if (bytes > max_bytes) return cudaErrorInvalidValue;  // CheckConfig refuses it first
  return Launch(kernel, grid, params, stream, pdl, 0, bytes);
}

template <typename T>
cudaError_t LaunchTyped(int token_tiles, bool staged, dim3 grid, const KernelParams& params,
                        cudaStream_t stream, bool pdl) {
  if (staged)
    return token_tiles == 1
               ? LaunchStaged<1>(DecomposeKStagedKernel<T, 1>, grid, params, stream, pdl)
               : LaunchStaged<2>(DecomposeKStagedKernel<T, 2>, grid, params, stream, pdl);
  switch (token_tiles) {
    case 1:
      return Launch(DecomposeKPolledKernel<T, 1>, grid, params, stream, pdl);
    case 2:
      return Launch(DecomposeKPolledKernel<T, 2>, grid, params, stream, pdl);
    default:
      return Launch(DecomposeKPolledKernel<T, 4>, grid, params, stream, pdl);
  }
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

size_t StagedMaxSmemBytes() {
  int device = 0, optin = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
          cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  // Static shared memory of the staged kernel: RouterShared, plus a margin for the
  // epilogue's own and the driver's reserve.
  const size_t reserved = sizeof(RouterShared) + 2048;
  return size_t(optin) > reserved ? size_t(optin) - reserved : 0;
}

cudaError_t LaunchPolledKernel(bool bf16, int token_tiles, bool staged, dim3 grid,
                               const KernelParams& params, cudaStream_t stream, bool pdl) {
  return bf16 ? LaunchTyped<__nv_bfloat16>(token_tiles, staged, grid, params, stream, pdl)
              : LaunchTyped<__half>(token_tiles, staged, grid, params, stream, pdl);
}

}  // namespace moe::cuda
