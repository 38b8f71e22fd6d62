#include <cstdint>

#include "tests/slow_producer.h"

namespace moe::testing {
namespace {

__global__ void SlowCopy(uint32_t* dst, const uint32_t* src, size_t words, unsigned delay_ns) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Let the dependent launch begin now: it overlaps this kernel unless it waits properly.
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  unsigned long long start;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  for (;;) {
    unsigned long long now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    if (now - start >= delay_ns) break;
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
