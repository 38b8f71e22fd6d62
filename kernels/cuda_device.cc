#include "kernels/cuda_device.h"

#include <cuda_runtime_api.h>

namespace moe::cuda {

DeviceInfo ProbeDevice(int ordinal) {
  DeviceInfo info;
  info.ordinal = ordinal;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count <= ordinal) {
    info.reason = err != cudaSuccess ? cudaGetErrorString(err) : "no CUDA device";
    cudaGetLastError();  // clear the sticky-free error so later probes start clean
    return info;
  }
  cudaDeviceProp prop;
  err = cudaGetDeviceProperties(&prop, ordinal);
  if (err != cudaSuccess) {
    info.reason = cudaGetErrorString(err);
    return info;
  }
  if (prop.major < 8) {
    info.reason = "compute capability below 8.0 is not supported";
    return info;
  }
  info.available = true;
  info.name = prop.name;
  info.sm_count = prop.multiProcessorCount;
  info.major = prop.major;
  info.minor = prop.minor;
  info.memory_bytes = prop.totalGlobalMem;
  info.can_map_host_memory = prop.canMapHostMemory && prop.unifiedAddressing;
  return info;
}

bool CurrentDeviceIsSm90OrNewer() {
  static const bool sm90 = [] {
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
      return false;
    return major >= 9;
  }();
  return sm90;
}

}  // namespace moe::cuda
