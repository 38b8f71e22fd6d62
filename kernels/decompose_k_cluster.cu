// Decompose-K with thread-block clusters (Hopper, sm_90+): the CTAs that share K ranges
// form a cluster and hand their partial logits over through distributed shared memory,
// instead of fp32 partials in global memory. Two kernels:
//
// - Routing in 8-token chunks with at most 128 experts (4 expert blocks;
//   DecomposeKClusterRouterKernel). Grid = (m_blocks · S, z_chunks), one cluster of
//   m_blocks · S <= 16 CTAs per chunk: rank r multiplies expert block r / S over the
//   (r % S)-th of S K ranges, and rank 0 routes. Every other rank sums its 8 warps and
//   pushes its 32 x 8 partial logits straight into a slot of rank 0's shared memory with
//   st.async, whose completion is counted in bytes by an mbarrier there; rank 0 waits on
//   it, sums each block's S partials in rank order (deterministic), adds the router bias
//   and routes from shared memory with the polled kernel's routers (a lone token by the
//   whole CTA). No global round trip, no arrival counter and one cluster barrier (before
//   the mainloop, hidden by it). With S at the one-pass count this is the polled kernel's
//   decode config (all weights in registers before the PDL wait) with the hand-over of
//   partials moved from L2 polling to shared memory.
// - Otherwise (DecomposeKClusterKernel, and the GEMM). Grid = (m_blocks · C, z_chunks),
//   cluster = (C, 1, 1): cluster m owns experts [32m, 32m + 32), its rank r the r-th of C
//   K ranges. After the mainloop each CTA sums its 8 warps into `cta_sum`; cluster
//   barrier; rank r then sums element i (for i ≡ r mod C slices) across all C CTAs'
//   `cta_sum` — a fixed order, so results are deterministic — adds the router bias and
//   writes the logits; cluster barrier again (no CTA may exit while its shared memory can
//   still be read); rank 0 arrives on the chunk's counter, and the last cluster of a
//   token chunk runs the routing epilogue.
#include <cooperative_groups.h>

#include <cuda/ptx>

#include "kernels/cuda_device.h"
#include "kernels/decompose_k_cluster.h"
#include "kernels/decompose_k_device.cuh"
#include "kernels/decompose_k_polled_router.cuh"

namespace moe::cuda {
namespace {

namespace cg = cooperative_groups;

template <typename T, int NT>
__global__ void __launch_bounds__(kThreads, 2) DecomposeKClusterKernel(const KernelParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __shared__ alignas(16) SharedStorage smem;  // 16 bytes: cp.async into smem.reduce
  constexpr int kChunk = 8 * NT;
  __shared__ float cta_sum[kBlockExperts * kChunk];
  cg::cluster_group cluster = cg::this_cluster();
  const int C = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const int m_block = blockIdx.x / C, z = blockIdx.y;
  const int tid = threadIdx.x;
  AllowDependentLaunch();
  Stamp(p, kStampStart);
  PrefetchEpilogueInputs(p);
  float acc[2][NT][4] = {};
  TensorCoreMainloop<T, NT>(p, m_block, rank, z * kChunk, acc, smem.reduce);
  StoreAccumulators<NT>(smem.reduce, acc);
  __syncthreads();
  Stamp(p, kStampMainloop);
  for (int i = tid; i < kBlockExperts * kChunk; i += kThreads)
    cta_sum[i] = SumWarps<kChunk>(smem.reduce, i);
  cluster.sync();
  // Rank r reduces elements [r·per_rank, (r+1)·per_rank) over the cluster's CTAs.
  const int epad = p.m_blocks * kBlockExperts;
  const int per_rank = (kBlockExperts * kChunk + C - 1) / C;
  for (int i = rank * per_rank + tid; i < min((rank + 1) * per_rank, kBlockExperts * kChunk);
       i += kThreads) {
    float s = 0.0f;
    for (int r = 0; r < C; ++r) s += cluster.map_shared_rank(cta_sum, r)[i];
    const int el = i / kChunk, n = i % kChunk;
    p.logits_ws[(size_t(z) * kChunk + n) * epad + m_block * kBlockExperts + el] = s;
  }
  cluster.sync();  // every slice written; peers' shared memory no longer read
  Stamp(p, kStampReduced);
  if (rank != 0) return;
  AddBiasAndPublish<kChunk>(p, m_block, z);
  if (p.gemm_mode) return;
  if (p.m_blocks > 1 && !ArriveLast(p.counters + z, unsigned(p.m_blocks))) return;
  __syncthreads();
  Stamp(p, kStampArrived);
  RouteChunk<kChunk>(p, smem, z);
  __syncthreads();
  Stamp(p, kStampRouted);
#else
  __trap();  // launched only on sm_90+ (see ClustersSupported)
#endif
}

// Rank 0's shared memory besides the receive slots: the mainloop's reduction, the chunk's
// logits ([token][expert], as the polled routers read them), the biases and scratch.
struct ClusterRouterShared {
  SharedStorage main;
  float logits[kClusterRouterChunk * kClusterRouterMaxBlocks * kBlockExperts];
  PolledRouterShared router;
};

// A rank's partial logits: one 32-expert block of the chunk's 8 tokens.
constexpr int kClusterSlot = kBlockExperts * kClusterRouterChunk;
static_assert(kClusterSlot == kThreads, "a thread per (token, expert) of a block");

// Dynamic shared memory of DecomposeKClusterRouterKernel: rank 0's receive slots, one per
// other rank.
size_t ClusterRouterSlotBytes(int cluster_ctas) {
  return sizeof(float) * size_t(cluster_ctas - 1) * kClusterSlot;
}

// Routers of at most kClusterRouterMaxBlocks expert blocks, 8-token chunks (see the file
// comment). Rank r multiplies expert block r / S over K range r % S; rank 0 is also the
// router: it stages the biases, initialises the mbarrier that counts the other ranks'
// pushed bytes, and after the mainloop sums, adds the bias and routes (P: experts per
// lane). The cluster barrier at the start only publishes the mbarrier's initialisation:
// each rank arrives before its mainloop and waits right before it pushes.
//
// Thread (warp w, lane l) sums token w, expert l of its block: warp w holds token w, the
// token the polled routers give warp w (a lone token: warp 0, which CtaRouteToken routes
// alone up to 32 experts). So rank 0's warps write their own tokens' logits and route them
// after a warp barrier; only a lone token of more than 32 experts, whose columns
// CtaRouteToken spreads over the warps, needs a CTA barrier.
template <typename T, int P>
__global__ void __launch_bounds__(kThreads, 2) DecomposeKClusterRouterKernel(const KernelParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace ptx = ::cuda::ptx;
  constexpr int kChunk = kClusterRouterChunk;
  __shared__ ClusterRouterShared smem;
  __shared__ alignas(8) uint64_t pushed;  // rank 0: completes when every slot has landed
  extern __shared__ float slots[];        // rank 0: [rank - 1][kClusterSlot]
  cg::cluster_group cluster = cg::this_cluster();
  const int C = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const int S = p.k_splits;  // ranks per expert block
  const int z = blockIdx.y, tid = threadIdx.x, warp = tid / 32, lane = tid & 31;
  const int valid = min(kChunk, p.tokens - z * kChunk);
  AllowDependentLaunch();
  Stamp(p, kStampStart);
  if (rank == 0) {
    if (tid == 0) {
      ptx::mbarrier_init(&pushed, 1);
      ptx::fence_mbarrier_init(ptx::sem_release, ptx::scope_cluster);
    }
    StageBiases(p, smem.router);
  }
  ptx::barrier_cluster_arrive(ptx::sem_release);
  float acc[2][1][4] = {};
  TensorCoreMainloop<T, 1>(p, rank / S, rank % S, z * kChunk, acc, smem.main.reduce);
  StoreAccumulators<1>(smem.main.reduce, acc);
  __syncthreads();
  Stamp(p, kStampMainloop);
  const float own = SumWarps<kChunk>(smem.main.reduce, lane * kChunk + warp);
  ptx::barrier_cluster_wait(ptx::sem_acquire);  // rank 0's mbarrier is initialised
  if (rank != 0) {
    float* slot = cluster.map_shared_rank(slots, 0) + (rank - 1) * kClusterSlot;
    ptx::st_async(slot + tid, own, cluster.map_shared_rank(&pushed, 0));
    Stamp(p, kStampReduced);
    return;  // nothing reads this CTA's shared memory
  }
  // The only arrival, with the bytes the other ranks push: the phase completes when they
  // have all landed. After the cluster barrier, as the init must be seen first (pushes may
  // land before it: tx-count may go below zero, and the phase cannot complete before the
  // arrival).
  if (tid == 0)
    ptx::mbarrier_arrive_expect_tx(ptx::sem_release, ptx::scope_cta, ptx::space_shared, &pushed,
                                   uint32_t(sizeof(float) * (C - 1) * kClusterSlot));
  while (!ptx::mbarrier_try_wait_parity(ptx::sem_acquire, ptx::scope_cluster, &pushed, 0u)) {
  }
  Stamp(p, kStampReduced);
  const int blocks = C / S;
#pragma unroll
  for (int m = 0; m < P; ++m) {
    const int e = m * kBlockExperts + lane;
    if (m >= blocks || e >= p.experts || warp >= valid) break;
    float s = m == 0 ? own : 0.0f;
    for (int r = max(m * S, 1); r < (m + 1) * S; ++r)  // rank order
      s += slots[(r - 1) * kClusterSlot + tid];
    s += smem.router.router_bias[e];
    smem.logits[warp * p.experts + e] = s;
    if (p.logits_out) p.logits_out[size_t(z * kChunk + warp) * p.experts + e] = s;
  }
  if (P > 1 && valid == 1)
    __syncthreads();  // CtaRouteToken gives each warp a column of the lone token
  else
    __syncwarp();  // a warp routes only the token whose logits it wrote
  Stamp(p, kStampArrived);
  RouteChunkTokensP<P, kChunk>(p, smem.router, smem.logits, z, RouterTokens{0, valid},
                               /*dry=*/false);
  __syncthreads();
  Stamp(p, kStampRouted);
#else
  __trap();  // launched only on sm_90+ (see ClustersSupported)
#endif
}

// Each instance opts in once (static initialisation is thread-safe): to 16-CTA clusters
// ("non-portable") when asked for, and the router kernel to its largest receive slots (past
// the 48 KB default with its static part).
template <typename T, int P>
cudaError_t LaunchRouter(dim3 grid, const KernelParams& params, int cluster_ctas,
                         cudaStream_t stream, bool pdl) {
  auto kernel = DecomposeKClusterRouterKernel<T, P>;
  static const cudaError_t slots =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(ClusterRouterSlotBytes(kClusterRouterMaxCtas)));
  if (slots != cudaSuccess) return slots;
  if (cluster_ctas > 8) {
    static const cudaError_t opt_in =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (opt_in != cudaSuccess) return opt_in;
  }
  return Launch(kernel, grid, params, stream, pdl, cluster_ctas, /*cooperative=*/false,
                ClusterRouterSlotBytes(cluster_ctas));
}

template <typename T, int NT>
cudaError_t LaunchTyped(dim3 grid, const KernelParams& params, int cluster, cudaStream_t stream,
                        bool pdl) {
  auto kernel = DecomposeKClusterKernel<T, NT>;
  if (cluster > 8) {  // 16-CTA clusters are "non-portable": opt in once per instance
    static const cudaError_t opt_in =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (opt_in != cudaSuccess) return opt_in;
  }
  return Launch(kernel, grid, params, stream, pdl, cluster);
}

}  // namespace

bool ClustersSupported() { return CurrentDeviceIsSm90OrNewer(); }

cudaError_t LaunchClusterRouterKernel(bool bf16, dim3 grid, const KernelParams& params,
                                      int cluster_ctas, cudaStream_t stream, bool pdl) {
  switch (ExpertsPerLane(params.experts)) {
    case 1:
      return bf16 ? LaunchRouter<__nv_bfloat16, 1>(grid, params, cluster_ctas, stream, pdl)
                  : LaunchRouter<__half, 1>(grid, params, cluster_ctas, stream, pdl);
    case 2:
      return bf16 ? LaunchRouter<__nv_bfloat16, 2>(grid, params, cluster_ctas, stream, pdl)
                  : LaunchRouter<__half, 2>(grid, params, cluster_ctas, stream, pdl);
    case 4:
      return bf16 ? LaunchRouter<__nv_bfloat16, 4>(grid, params, cluster_ctas, stream, pdl)
                  : LaunchRouter<__half, 4>(grid, params, cluster_ctas, stream, pdl);
    default:
      return cudaErrorInvalidValue;  // more experts than kClusterRouterMaxBlocks blocks
  }
}

cudaError_t LaunchClusterKernel(bool bf16, int token_tiles, dim3 grid, const KernelParams& params,
                                int cluster, cudaStream_t stream, bool pdl) {
  switch (token_tiles) {
    case 1:
      return bf16 ? LaunchTyped<__nv_bfloat16, 1>(grid, params, cluster, stream, pdl)
                  : LaunchTyped<__half, 1>(grid, params, cluster, stream, pdl);
    case 2:
      return bf16 ? LaunchTyped<__nv_bfloat16, 2>(grid, params, cluster, stream, pdl)
                  : LaunchTyped<__half, 2>(grid, params, cluster, stream, pdl);
    default:
      return bf16 ? LaunchTyped<__nv_bfloat16, 4>(grid, params, cluster, stream, pdl)
                  : LaunchTyped<__half, 4>(grid, params, cluster, stream, pdl);
  }
}

}  // namespace moe::cuda
