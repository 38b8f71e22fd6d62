// An empty kernel, to measure the launch floor of a graph node.
#pragma once
#include <cuda_runtime_api.h>
namespace moe::bench {
cudaError_t LaunchEmptyKernel(cudaStream_t stream);
}  // namespace moe::bench
