// An empty kernel: the launch floor inside a CUDA graph.
#include "bench/empty_kernel.h"

namespace moe::bench {

__global__ void EmptyKernel() {}

cudaError_t LaunchEmptyKernel(cudaStream_t stream) {
  EmptyKernel<<<1, 32, 0, stream>>>();
  return cudaGetLastError();
}

}  // namespace moe::bench
