// Internal: the cluster variant's launcher, used by decompose_k_router.cu's dispatch.
#pragma once

#include <cuda_runtime_api.h>

namespace moe::cuda {

struct KernelParams;

// Whether the current device runs thread-block clusters (compute capability 9.0+).
bool ClustersSupported();

// The cluster config of a routing launch whose rank 0 routes
// (DecomposeKClusterRouterKernel): chunks of this many tokens (token_tiles 1), at most
// kClusterRouterMaxBlocks 32-expert blocks; its clusters span every expert block, so a
// cluster has m_blocks * k_splits CTAs, at most kClusterRouterMaxCtas.
constexpr int kClusterRouterChunk = 8;
constexpr int kClusterRouterMaxBlocks = 4;
constexpr int kClusterRouterMaxCtas = 16;

// grid.x = m_blocks * k_splits, clusters of cluster_ctas = m_blocks * k_splits CTAs;
// params.experts <= 32 * kClusterRouterMaxBlocks, 8-token chunks, routing (not gemm_mode).
cudaError_t LaunchClusterRouterKernel(bool bf16, dim3 grid, const KernelParams& params,
                                      int cluster_ctas, cudaStream_t stream, bool pdl);

// Otherwise: grid.x = m_blocks * cluster; cluster in {1, 2, 4, 8, 16}; tensor-core
// mainloop only.
cudaError_t LaunchClusterKernel(bool bf16, int token_tiles, dim3 grid, const KernelParams& params,
                                int cluster, cudaStream_t stream, bool pdl);

}  // namespace moe::cuda
