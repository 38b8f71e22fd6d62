// Internal: the polled-reduction variant's launcher and limits, used by
// decompose_k_router.cu's dispatch and config checks.
#pragma once

#include <cuda_runtime_api.h>

namespace moe::cuda {

struct KernelParams;

// The router CTA holds a chunk's logits in shared memory: chunk tokens x experts floats.
inline constexpr int kPolledMaxChunkLogits = 8192;

// Multiprocessors of the current device (0 when there is none): the polled kernel's grid
// must not exceed one CTA per SM, so that the router CTA never waits on a CTA that cannot
// be scheduled.
int PolledMaxCtas();

// Dynamic shared memory a staged CTA may use on the current device (0 when there is none):
// the per-block opt-in limit less the kernel's static shared memory.
size_t StagedMaxSmemBytes();

// grid.x = m_blocks * k_splits, grid.y = token chunks; tensor-core mainloop only.
// staged: k_splits == 1 and the weights staged in shared memory (staged_mainloop.cuh);
// token_tiles 1 or 2.
cudaError_t LaunchPolledKernel(bool bf16, int token_tiles, bool staged, dim3 grid,
                               const KernelParams& params, cudaStream_t stream, bool pdl);

}  // namespace moe::cuda
