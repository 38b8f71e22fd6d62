#include <cstdint>

#include "kernels/pdl_device.cuh"
#include "tests/slow_producer.h"

namespace moe::testing {
namespace {

__global__ void SlowCopy(uint32_t* dst, const uint32_t* src, size_t words, unsigned delay_ns) {
  // Let the dependent launch begin now: it overlaps this kernel unless it waits properly.
  cuda::AllowDependentLaunch();
  const unsigned long long start = cuda::GlobalTimerNs();
  while (cuda::GlobalTimerNs() - start < delay_ns) {
  }
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < words; i += gridDim.x * blockDim.x)
    dst[i] = src[i];
}

}  // namespace

cudaError_t LaunchSlowProducer(void* dst, const void* src, size_t bytes, unsigned delay_ns,
                               cudaStream_t stream) {
  SlowCopy<<<8, 256, 0, stream>>>(static_cast<uint32_t*>(dst), static_cast<const uint32_t*>(src),
                                  bytes / 4, delay_ns);
  return cudaGetLastError();
}

}  // namespace moe::testing
