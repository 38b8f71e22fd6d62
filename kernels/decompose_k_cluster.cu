// Decompose-K with thread-block clusters (Hopper, sm_90+): the S CTAs that share one
// expert block's K range form a cluster and reduce their partial logits through
// distributed shared memory, instead of fp32 partials in global memory, a fence, an
// arrival counter and L2 reads by the last CTA. One global arrival per cluster remains:
// the last cluster of a token chunk runs the routing epilogue.
//
// Grid = (m_blocks · C, z_chunks), cluster = (C, 1, 1): cluster m owns experts
// [32m, 32m + 32); its rank r owns the r-th of C K ranges. After the mainloop each CTA sums
// its 8 warps into `cta_sum`; cluster barrier; rank r then sums element i (for i ≡ r mod C
// slices) across all C CTAs' `cta_sum` — a fixed order, so results are deterministic —
// adds the router bias and writes the logits; cluster barrier again (no CTA may exit
// while its shared memory can still be read); rank 0 arrives on the chunk's counter.
#include <cooperative_groups.h>

#include "kernels/decompose_k_cluster.h"
#include "kernels/decompose_k_device.cuh"

namespace moe::cuda {
namespace {

namespace cg = cooperative_groups;

template <typename T, int NT>
__global__ void __launch_bounds__(kThreads, 2) DecomposeKClusterKernel(const KernelParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __shared__ SharedStorage smem;
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
  TensorCoreMainloop<T, NT>(p, m_block, rank, z * kChunk, acc);
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

bool ClustersSupported() {
  static const bool supported = [] {
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
      return false;
    return major >= 9;
  }();
  return supported;
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
