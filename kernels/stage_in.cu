#include <algorithm>
#include <cstdint>

#include "kernels/pdl_device.cuh"
#include "kernels/stage_in.h"

namespace moe::cuda {
namespace {

constexpr int kStageThreads = 256;
constexpr int kMaxStageBlocks = 1024;

// One 16-byte vector a thread per round. Host memory is read with L2-only (.cg) loads:
// coherent, and nothing is kept in L1 that is read once.
__global__ void __launch_bounds__(kStageThreads)
    StageInKernel(const uint4* src, uint4* __restrict__ dst, size_t vectors,
                  unsigned long long* start_ns) {
  if (start_ns != nullptr && blockIdx.x == 0 && threadIdx.x == 0) *start_ns = GlobalTimerNs();
  // The dependent router may start now: it touches the hidden states only after
  // griddepcontrol.wait, which waits for this whole grid to finish and its writes to land.
  AllowDependentLaunch();
  const size_t stride = size_t(gridDim.x) * kStageThreads;
  for (size_t i = size_t(blockIdx.x) * kStageThreads + threadIdx.x; i < vectors; i += stride)
    dst[i] = __ldcg(src + i);
}

__global__ void CompletionStampKernel(unsigned long long* end_ns) {
  WaitForPrerequisiteGrid();
  *end_ns = GlobalTimerNs();
}

}  // namespace

cudaError_t LaunchStageIn(const void* mapped_src, void* dst, size_t bytes, cudaStream_t stream,
                          unsigned long long* start_ns) {
  if (bytes % 16 != 0 || reinterpret_cast<uintptr_t>(mapped_src) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(dst) % 16 != 0)
    return cudaErrorInvalidValue;
  const size_t vectors = bytes / 16;
  if (vectors == 0 && start_ns == nullptr) return cudaSuccess;  // else still stamp the start
  const size_t blocks = std::max<size_t>(1, (vectors + kStageThreads - 1) / kStageThreads);
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(unsigned(blocks < kMaxStageBlocks ? blocks : kMaxStageBlocks));
  config.blockDim = dim3(kStageThreads);
  config.stream = stream;
  return cudaLaunchKernelEx(&config, StageInKernel, static_cast<const uint4*>(mapped_src),
                            static_cast<uint4*>(dst), vectors, start_ns);
}

cudaError_t LaunchCompletionStamp(unsigned long long* end_ns, cudaStream_t stream) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(1);
  config.blockDim = dim3(1);
  config.stream = stream;
  cudaLaunchAttribute pdl;
  pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  pdl.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &pdl;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, CompletionStampKernel, end_ns);
}

}  // namespace moe::cuda
