// Internal: the polled-reduction variant's launcher and limits, used by
// decompose_k_router.cu's dispatch and config checks.
#pragma once

#include <cuda_runtime_api.h>

namespace moe::cuda {

struct KernelParams;

// A router CTA holds its tokens' logits in shared memory: its tokens x experts floats.
inline constexpr int kPolledMaxChunkLogits = 8192;

// Multiprocessors of the current device (0 when there is none): the polled kernel's grid
// must not exceed one CTA per SM, so that the router CTA never waits on a CTA that cannot
// be scheduled.
int PolledMaxCtas();

// Tokens each router CTA of a polled chunk owns: the chunk's `valid` tokens over its grid
// row of `grid_x` blocks, one a block while there are blocks enough. The kernel assigns
// routers by it and the config check bounds a router's logits by it.
__host__ __device__ inline int PolledTokensPerRouter(int valid, int grid_x) {
  const int routers = valid < grid_x ? valid : grid_x;
  return routers > 0 ? (valid + routers - 1) / routers : 0;
}

// grid.x = m_blocks * k_splits, grid.y = token chunks; tensor-core mainloop only.
// Cooperative when !pdl or `pdl_cooperative` (DecomposeKConfig::pdl_cooperative); under PDL
// one CTA per SM with `pdl_one_cta_per_sm` (DecomposeKConfig::pdl_one_cta_per_sm).
cudaError_t LaunchPolledKernel(bool bf16, int token_tiles, dim3 grid, const KernelParams& params,
                               cudaStream_t stream, bool pdl, bool pdl_cooperative,
                               bool pdl_one_cta_per_sm);

}  // namespace moe::cuda
