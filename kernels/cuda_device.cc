#include "kernels/cuda_device.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>

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

namespace {

bool IsSm90OrNewer(int device) {
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major >= 9;
}

}  // namespace

bool CurrentDeviceIsSm90OrNewer() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();  // no driver or device: nothing of sm_90 to use
    return false;
  }
  // One answer per ordinal, kept: asked on launches, and a process may drive GPUs of two
  // architectures (the C ABI follows its caller's current device). 0 unknown, 1 no, 2 yes;
  // trivially destructible, so a launch at exit still finds it.
  constexpr int kKnownDevices = 64;
  static std::atomic<int8_t> known[kKnownDevices] = {};
  if (device < 0 || device >= kKnownDevices) return IsSm90OrNewer(device);
  int8_t answer = known[device].load(std::memory_order_relaxed);
  if (answer == 0) {
    answer = IsSm90OrNewer(device) ? 2 : 1;
    known[device].store(answer, std::memory_order_relaxed);
  }
  return answer == 2;
}

}  // namespace moe::cuda
