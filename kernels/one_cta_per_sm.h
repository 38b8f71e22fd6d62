// Host helper for the launchers of kernels whose CTAs wait for each other (the polled and
// staged reductions): the dynamic shared memory that keeps a kernel to one CTA per SM.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace moe::cuda {

// The dynamic shared memory past which two CTAs of `kernel` no longer fit on one SM of the
// current device: two fit while 2 * (static + dynamic + reserved per block) <= the SM's
// shared memory. 0 where the device cannot say (the caller then launches as it would
// have). Not cached: callers keep it per kernel instance.
template <typename Kernel>
size_t OneCtaPerSmDynamicSmem(Kernel kernel) {
  int device = 0, per_sm = 0, reserved = 0;
  cudaFuncAttributes attributes{};
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device) !=
          cudaSuccess ||
      cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, device) !=
          cudaSuccess ||
      cudaFuncGetAttributes(&attributes, kernel) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  const long half = long(per_sm) / 2 - long(attributes.sharedSizeBytes) - reserved;
  return half > 0 ? size_t(half) + 128 : 0;
}

}  // namespace moe::cuda
