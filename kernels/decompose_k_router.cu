// Fused Decompose-K router kernel.
//
// Problem: logits[t, e] = x[t, :] · W[e, :] for tokens t < T (1..256), experts e < E
// (1..512), hidden K (8..16384, multiple of 8), then the routing epilogue per token.
// W dominates the bytes (E·K·2 for bf16) and T is tiny, so the work is bound by reading W
// once; an ordinary GEMM tiling would give a few CTAs to the whole chip.
//
// Decomposition. Grid = (m_blocks · S, z_chunks). A CTA owns 32 experts (an m-block), one
// of S contiguous K ranges and one chunk of 8·NT tokens; its 8 warps split that K range
// again. Each warp streams its W rows with 16-byte loads and multiplies them on the tensor
// cores (mma.sync m16n8k16; experts are the MMA's M, tokens its N, so one token wastes
// 7/8 of an MMA but none of the bandwidth). K is permuted inside each 32-wide step so that
// every lane's four A/B fragment registers come from one 16-byte load (the dot product is
// invariant under a permutation of K applied to both operands).
//
// Reduction (last-CTA): warps reduce through shared memory; the CTA writes fp32 partials;
// the last of the S CTAs of an (m-block, chunk) — found with an arrival counter — sums the
// partials in a fixed order (deterministic), adds the router bias and writes the chunk's
// logits; the last m-block of a chunk runs the routing epilogue, one warp per token. Each
// last CTA resets its counter, so graph replays need no memset.
//
// Programmatic Dependent Launch: weights do not depend on the previous kernel, so the
// first weight loads are issued before griddepcontrol.wait; hidden states after it.
//
// Here: the arrival-counter kernels and every router launch's dispatch. Which config a
// shape gets, and which a device can run: decompose_k_config.cc; the grid and workspace a
// config has: decompose_k_layout.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/decompose_k_cluster.h"
#include "kernels/decompose_k_device.cuh"
#include "kernels/decompose_k_gemm_tile.h"
#include "kernels/decompose_k_layout.h"
#include "kernels/decompose_k_polled.h"
#include "kernels/decompose_k_router.h"
#include "kernels/decompose_k_staged.h"
#include "kernels/gemm_launch.h"
#include "kernels/routing_epilogue_kernel.h"

namespace moe::cuda {
namespace {

// Sums `count` partial tiles of 32 experts x kChunk floats, laid out one after another, in
// order (deterministic), into this thread's elements tid + e * kThreads. The loads of eight
// tiles for all of a thread's elements are in flight together: a dependent chain would cost
// one L2 round trip per tile.
template <int kChunk>
__device__ __forceinline__ void SumTiles(const float* tiles, int count,
                                         float (&sum)[kBlockExperts * kChunk / kThreads]) {
  constexpr int kPer = kBlockExperts * kChunk / kThreads;
  static_assert(kPer * kThreads == kBlockExperts * kChunk, "a tile is whole thread rows");
  constexpr size_t kTile = size_t(kBlockExperts) * kChunk;
#pragma unroll
  for (int e = 0; e < kPer; ++e) sum[e] = 0.0f;
  for (int t0 = 0; t0 < count; t0 += 8) {
    float v[8][kPer];
#pragma unroll
    for (int u = 0; u < 8; ++u)
#pragma unroll
      for (int e = 0; e < kPer; ++e)
        v[u][e] =
            t0 + u < count ? __ldcg(tiles + (t0 + u) * kTile + threadIdx.x + e * kThreads) : 0.0f;
#pragma unroll
    for (int u = 0; u < 8; ++u)
#pragma unroll
      for (int e = 0; e < kPer; ++e) sum[e] += v[u][e];
  }
}

// Sums the warps' accumulators; then, with S > 1, publishes the CTA's partials and
// returns whether this CTA is the last of its (m-block, chunk) to arrive; the last one
// leaves the chunk's summed logits in logits_ws. Every thread gets the same answer.
// With many splits the arrival is two-level (p.split_group): one CTA summing hundreds of
// partials is a serial tail of L2 round trips and of one SM's bandwidth; the last of each
// group sums the group's, the last group reducer sums the groups'.
template <int kChunk>
__device__ bool ReduceSplits(const KernelParams& p, SharedStorage& smem, int m_block, int split,
                             int z) {
  constexpr int kPer = kBlockExperts * kChunk / kThreads;
  constexpr size_t kTile = size_t(kBlockExperts) * kChunk;
  const int tid = threadIdx.x;
  const int epad = p.m_blocks * kBlockExperts;
  const size_t zm = size_t(z) * p.m_blocks + m_block;  // this CTA's (chunk, m-block)
  float* my_partials = p.partials + (zm * p.k_splits + split) * kTile;
  __syncthreads();
  for (int i = tid; i < kBlockExperts * kChunk; i += kThreads) {
    const float s = SumWarps<kChunk>(smem.reduce, i);
    if (p.k_splits == 1) {
      const int el = i / kChunk, n = i % kChunk;
      p.logits_ws[(size_t(z) * kChunk + n) * epad + m_block * kBlockExperts + el] = s;
    } else {
      my_partials[i] = s;
    }
  }
  if (p.k_splits == 1) {
    __syncthreads();
    return true;
  }
  float sum[kPer];
  if (p.split_group > 0) {
    const int groups = (p.k_splits + p.split_group - 1) / p.split_group;
    const int group = split / p.split_group, first = group * p.split_group;
    const int members = min(p.split_group, p.k_splits - first);
    if (!ArriveLast(p.group_counters + zm * groups + group, unsigned(members))) return false;
    SumTiles<kChunk>(p.partials + (zm * p.k_splits + first) * kTile, members, sum);
    float* group_sum = p.group_partials + (zm * groups + group) * kTile;
#pragma unroll
    for (int e = 0; e < kPer; ++e) group_sum[tid + e * kThreads] = sum[e];
    if (!ArriveLast(p.counters + zm, unsigned(groups))) return false;
    SumTiles<kChunk>(p.group_partials + zm * groups * kTile, groups, sum);
  } else {
    if (!ArriveLast(p.counters + zm, unsigned(p.k_splits))) return false;
    SumTiles<kChunk>(p.partials + zm * p.k_splits * kTile, p.k_splits, sum);
  }
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int i = tid + e * kThreads, el = i / kChunk, n = i % kChunk;
    p.logits_ws[(size_t(z) * kChunk + n) * epad + m_block * kBlockExperts + el] = sum[e];
  }
  __syncthreads();
  return true;
}

// After the split reduction: bias, then the last m-block of the chunk routes its tokens.
template <int kChunk>
__device__ void FinishChunk(const KernelParams& p, SharedStorage& smem, int m_block, int z) {
  AddBiasAndPublish<kChunk>(p, m_block, z);
  if (p.gemm_mode) return;
  if (p.m_blocks > 1) {
    if (!ArriveLast(p.counters + size_t(gridDim.y) * p.m_blocks + z, unsigned(p.m_blocks))) return;
  } else {
    __syncthreads();
  }
  Stamp(p, kStampArrived);
  RouteChunk<kChunk>(p, smem, z);
  __syncthreads();
  Stamp(p, kStampRouted);
}

// kRoute = false: the general GEMM's instance, without the routing epilogue's code and
// registers. Two CTAs per SM (<= 128 registers a thread): the routing epilogue runs once a
// launch and may spill a little; the mainloop runs everywhere and wants the occupancy.
template <typename T, int NT, bool kRoute>
__global__ void __launch_bounds__(kThreads, 2) DecomposeKTensorCoreKernel(const KernelParams p) {
  __shared__ alignas(16) SharedStorage smem;  // 16 bytes: cp.async into smem.reduce
  constexpr int kChunk = 8 * NT;
  const int m_block = blockIdx.x % p.m_blocks, split = blockIdx.x / p.m_blocks, z = blockIdx.y;
  AllowDependentLaunch();
  Stamp(p, kStampStart);
  PrefetchEpilogueInputs(p);
  float acc[2][NT][4] = {};
  TensorCoreMainloop<T, NT>(p, m_block, split, z * kChunk, acc, smem.reduce);
  StoreAccumulators<NT>(smem.reduce, acc);
  __syncthreads();
  Stamp(p, kStampMainloop);
  if (!ReduceSplits<kChunk>(p, smem, m_block, split, z)) return;
  Stamp(p, kStampReduced);
  if constexpr (kRoute) {
    FinishChunk<kChunk>(p, smem, m_block, z);
  } else {
    AddBiasAndPublish<kChunk>(p, m_block, z);
  }
}

template <typename TX, typename TW>
__global__ void __launch_bounds__(kThreads, 2) DecomposeKFmaKernel(const KernelParams p) {
  __shared__ SharedStorage smem;
  const int m_block = blockIdx.x % p.m_blocks, split = blockIdx.x / p.m_blocks, z = blockIdx.y;
  AllowDependentLaunch();
  PrefetchEpilogueInputs(p);
  FmaMainloop<TX, TW>(p, m_block, split, z * 8, smem);
  if (!ReduceSplits<8>(p, smem, m_block, split, z)) return;
  FinishChunk<8>(p, smem, m_block, z);
}

// ---------------------------------------------------------------------------------------
// Host side.

using Shape = DecomposeKShape;
using Layout = DecomposeKLayout;

template <bool kRoute>
cudaError_t LaunchTensorCore(bool bf16, int token_tiles, dim3 grid, const KernelParams& params,
                             cudaStream_t stream, bool pdl) {
  using B = __nv_bfloat16;
  using H = __half;
  switch (token_tiles) {
    case 1:
      return bf16 ? Launch(DecomposeKTensorCoreKernel<B, 1, kRoute>, grid, params, stream, pdl)
                  : Launch(DecomposeKTensorCoreKernel<H, 1, kRoute>, grid, params, stream, pdl);
    case 2:
      return bf16 ? Launch(DecomposeKTensorCoreKernel<B, 2, kRoute>, grid, params, stream, pdl)
                  : Launch(DecomposeKTensorCoreKernel<H, 2, kRoute>, grid, params, stream, pdl);
    default:
      return bf16 ? Launch(DecomposeKTensorCoreKernel<B, 4, kRoute>, grid, params, stream, pdl)
                  : Launch(DecomposeKTensorCoreKernel<H, 4, kRoute>, grid, params, stream, pdl);
  }
}

cudaError_t LaunchForShape(const Shape& s, const DecomposeKConfig& c, KernelParams params,
                           void* workspace, cudaStream_t stream, bool pdl) {
  const Layout l = MakeLayout(s, c);
  char* ws = static_cast<char*>(workspace);
  params.counters = reinterpret_cast<unsigned*>(ws);
  params.partials = reinterpret_cast<float*>(ws + l.partials_offset);
  params.logits_ws = reinterpret_cast<float*>(ws + l.logits_offset);
  params.split_group = l.split_group;
  params.group_counters = reinterpret_cast<unsigned*>(ws + l.group_counters_offset);
  params.group_partials = reinterpret_cast<float*>(ws + l.group_partials_offset);
  params.m_blocks = l.m_blocks;
  params.k_splits = c.k_splits;
  params.total_steps = l.total_steps;
  params.steps_per_warp = l.steps_per_warp;
  if (c.polled) {
    if (params.gemm_mode) return cudaErrorInvalidValue;  // routing only
    params.router_ctas = DedicatedRouterCtas(s, c, l);
    params.warm_routers = pdl;  // without PDL a dry run would delay the gather
    const dim3 grid(GridRowCtas(s, c, l), l.z_chunks);
    const bool cooperative = LaunchesCooperatively(c, pdl, stream);
    if (c.staged) {
      params.stages_per_split = StagedStagesPerSplit(s, c.k_splits);
      const int per_router = RouterCtaTokens(s, c, l);
      return LaunchStagedKernel(
          s.w_dtype == DType::kBF16, grid, params,
          StagedDynamicSmemBytes(params.stages_per_split, per_router * s.experts), stream, pdl,
          cooperative, /*tma=*/!c.staged_cp_async, c.staged_router_pairs);
    }
    return LaunchPolledKernel(s.w_dtype == DType::kBF16, c.token_tiles, grid, params, stream, pdl,
                              cooperative, c.pdl_one_cta_per_sm);
  }
  const dim3 grid(l.m_blocks * c.k_splits, l.z_chunks);
  if (c.cluster > 0 && !params.gemm_mode && RankZeroRoutes(s, c))
    return LaunchClusterRouterKernel(s.w_dtype == DType::kBF16, grid, params,
                                     l.m_blocks * c.cluster, stream, pdl);
  if (c.cluster > 0)
    return LaunchClusterKernel(s.w_dtype == DType::kBF16, c.token_tiles, grid, params, c.cluster,
                               stream, pdl);
  if (c.mainloop == Mainloop::kTensorCore) {
    const bool bf16 = s.w_dtype == DType::kBF16;
    return params.gemm_mode
               ? LaunchTensorCore<false>(bf16, c.token_tiles, grid, params, stream, pdl)
               : LaunchTensorCore<true>(bf16, c.token_tiles, grid, params, stream, pdl);
  }
  // FMA mainloop: dispatch on the (hidden, weight) dtype pair.
  const int pair = int(s.x_dtype) * 3 + int(s.w_dtype);
  using B = __nv_bfloat16;
  using H = __half;
  using F = float;
  switch (pair) {
    case 0:
      return Launch(DecomposeKFmaKernel<B, B>, grid, params, stream, pdl);
    case 1:
      return Launch(DecomposeKFmaKernel<B, H>, grid, params, stream, pdl);
    case 2:
      return Launch(DecomposeKFmaKernel<B, F>, grid, params, stream, pdl);
    case 3:
      return Launch(DecomposeKFmaKernel<H, B>, grid, params, stream, pdl);
    case 4:
      return Launch(DecomposeKFmaKernel<H, H>, grid, params, stream, pdl);
    case 5:
      return Launch(DecomposeKFmaKernel<H, F>, grid, params, stream, pdl);
    case 6:
      return Launch(DecomposeKFmaKernel<F, B>, grid, params, stream, pdl);
    case 7:
      return Launch(DecomposeKFmaKernel<F, H>, grid, params, stream, pdl);
    default:
      return Launch(DecomposeKFmaKernel<F, F>, grid, params, stream, pdl);
  }
}

}  // namespace

cudaError_t ResetDecomposeKWorkspace(void* workspace, const RouteProblem& problem,
                                     const DecomposeKConfig& config, cudaStream_t stream) {
  return cudaMemsetAsync(workspace, 0, DecomposeKZeroedBytes(problem, config), stream);
}

bool LaunchesCooperatively(const DecomposeKConfig& config, bool pdl, cudaStream_t stream) {
  if (!pdl || config.pdl_cooperative) return true;
  // Streams are created with the least priority by default; read once (every launch of a
  // plain config asks).
  static const int least = [] {
    int lowest = 0, greatest = 0;
    if (cudaDeviceGetStreamPriorityRange(&lowest, &greatest) != cudaSuccess) cudaGetLastError();
    return lowest;
  }();
  int priority = 0;
  if (cudaStreamGetPriority(stream, &priority) != cudaSuccess) {
    cudaGetLastError();
    return true;  // cannot tell: the launch that needs no ordering
  }
  return priority != least;
}

cudaError_t LaunchDecomposeKRouter(const RouteProblem& problem, const RouteArgs& args,
                                   const DecomposeKConfig& config, void* workspace,
                                   size_t workspace_bytes, cudaStream_t stream, bool pdl) {
  return LaunchDecomposeKRouterWithTimeline(problem, args, config, workspace, workspace_bytes,
                                            stream, pdl, nullptr);
}

cudaError_t LaunchDecomposeKRouterWithTimeline(const RouteProblem& problem, const RouteArgs& args,
                                               const DecomposeKConfig& config, void* workspace,
                                               size_t workspace_bytes, cudaStream_t stream,
                                               bool pdl, unsigned long long* timeline) {
  if (config.route_after_gemm) {
    if (timeline != nullptr) return cudaErrorNotSupported;  // two kernels, neither stamps
    // The GEMM's workspace: cuBLASLt's past the logits, the tile GEMM's before them.
    if (workspace_bytes < DecomposeKLeastWorkspaceBytes(problem, config))
      return cudaErrorInvalidValue;
    char* ws = static_cast<char*>(workspace);
    const size_t gemm_bytes =
        config.gemm_cublas ? workspace_bytes - RouteAfterCublasLtOffset(problem) : workspace_bytes;
    float* logits = reinterpret_cast<float*>(ws + RouteAfterGemmLogitsOffset(problem, config));
    void* gemm_workspace = config.gemm_cublas ? ws + RouteAfterCublasLtOffset(problem) : ws;
    // The general GEMM's own dispatch (cuBLASLt or the tile GEMM). The tile GEMM reads the
    // weights (its B) before griddepcontrol.wait under PDL, as the one-launch kernels do; the
    // hidden states (A) after it. cuBLASLt's launches plainly.
    const cudaError_t gemm =
        LaunchGemm(RouterGemmProblem(problem), args.hidden, args.weight, nullptr, logits, config,
                   gemm_workspace, gemm_bytes, stream, pdl);
    if (gemm != cudaSuccess) return gemm;
    return LaunchRoutingEpilogue(problem, logits, args, stream, pdl);
  }
  if (workspace_bytes < DecomposeKWorkspaceBytes(problem, config)) return cudaErrorInvalidValue;
  const RouterSpec& s = problem.spec;
  KernelParams params = {};
  params.w = args.weight;
  params.x = args.hidden;
  params.tokens = problem.tokens;
  params.K = s.hidden;
  params.experts = s.experts;
  params.router_bias = s.has_router_bias ? args.router_bias : nullptr;
  params.correction_bias = s.has_correction_bias ? args.correction_bias : nullptr;
  params.ids = args.expert_ids;
  params.weights = args.expert_weights;
  params.logits_out = args.logits;
  params.gemm_mode = 0;
  params.ep = MakeEpilogueParams(s);
  params.timeline = timeline;
  return LaunchForShape(RouteShape(problem), config, params, workspace, stream, pdl);
}

cudaError_t ResetGemmWorkspace(void* workspace, const GemmProblem& problem,
                               const DecomposeKConfig& config, cudaStream_t stream) {
  if (config.gemm_cublas) return cudaSuccess;  // cuBLAS's workspace is scratch
  const size_t bytes = config.gemm_tile != 0
                           ? TileGemmZeroedBytes(TileShape(problem, config))
                           : MakeLayout(GemmShape(problem), config).counters_bytes;
  return cudaMemsetAsync(workspace, 0, bytes, stream);
}

cudaError_t LaunchDecomposeKGemm(const GemmProblem& problem, const void* a, const void* b,
                                 const float* bias, float* c, const DecomposeKConfig& config,
                                 void* workspace, cudaStream_t stream, bool pdl) {
  if (config.gemm_cublas) return cudaErrorInvalidValue;  // LaunchGemm's (gemm_launch.h)
  if (config.gemm_tile != 0) {
    if (problem.dtype == DType::kFP32) return cudaErrorInvalidValue;  // tensor cores only
    TileGemmShape shape = TileShape(problem, config);
    shape.pdl = pdl;
    // A grid whose split CTAs cannot all be resident is refused by its cooperative launch.
    return LaunchTileGemm(problem.dtype == DType::kBF16, shape, a, b, bias, c, workspace, stream);
  }
  KernelParams params = {};
  params.w = b;
  params.x = a;
  params.tokens = problem.m;
  params.K = problem.k;
  params.experts = problem.n;
  params.router_bias = bias;
  params.logits_out = c;
  params.gemm_mode = 1;
  // Under PDL the router kernels read B as their weights, before the wait, and A as their
  // hidden states after it.
  return LaunchForShape(GemmShape(problem), config, params, workspace, stream, pdl);
}

}  // namespace moe::cuda
