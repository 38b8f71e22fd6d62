// Internal: the cluster variant's launcher, used by decompose_k_router.cu's dispatch.
#pragma once

#include <cuda_runtime_api.h>

namespace moe::cuda {

struct KernelParams;

// Whether the current device runs thread-block clusters (compute capability 9.0+).
bool ClustersSupported();

// grid.x = m_blocks * cluster; cluster in {1, 2, 4, 8, 16}; tensor-core mainloop only.
cudaError_t LaunchClusterKernel(bool bf16, int token_tiles, dim3 grid, const KernelParams& params,
                                int cluster, cudaStream_t stream, bool pdl);

}  // namespace moe::cuda
