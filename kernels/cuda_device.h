// Which CUDA device (if any) this process can use. Stateless; thread-safe.
#pragma once

#include <string>

namespace moe::cuda {

struct DeviceInfo {
  bool available = false;
  int ordinal = 0;
  std::string name;  // e.g. "NVIDIA H100 80GB HBM3"
  int sm_count = 0;
  int major = 0, minor = 0;
  size_t memory_bytes = 0;
  bool can_map_host_memory = false;  // kernels may read/write page-locked host memory
  std::string reason;                // why not available
};

// Probes device `ordinal`; never throws or aborts when there is no driver or GPU.
DeviceInfo ProbeDevice(int ordinal = 0);

// Whether the calling thread's current device is sm_90 or newer (thread-block clusters,
// the TMA); false without a device. Asked once per device ordinal, then remembered.
bool CurrentDeviceIsSm90OrNewer();

}  // namespace moe::cuda
