// RAII owners of CUDA resources: device memory, pinned host memory, streams, events and
// graph executables. Move-only; not thread-safe (own one per thread or guard it).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "absl/status/statusor.h"
#include "kernels/cuda_check.h"

namespace moe {

template <typename Release>
class CudaHandle {
 public:
  using Raw = typename Release::Raw;
  CudaHandle() = default;
  explicit CudaHandle(Raw raw) : raw_(raw) {}
  ~CudaHandle() { reset(); }
  CudaHandle(CudaHandle&& o) noexcept : raw_(std::exchange(o.raw_, Raw{})) {}
  CudaHandle& operator=(CudaHandle&& o) noexcept {
    if (this != &o) {
      reset();
      raw_ = std::exchange(o.raw_, Raw{});
    }
    return *this;
  }
  CudaHandle(const CudaHandle&) = delete;
  CudaHandle& operator=(const CudaHandle&) = delete;
  Raw get() const { return raw_; }
  explicit operator bool() const { return raw_ != Raw{}; }
  void reset() {
    if (raw_ != Raw{}) Release::Free(raw_);
    raw_ = Raw{};
  }

 private:
  Raw raw_{};
};

struct DeviceMemRelease {
  using Raw = void*;
  static void Free(void* p) { cudaFree(p); }
};
struct PinnedMemRelease {
  using Raw = void*;
  static void Free(void* p) { cudaFreeHost(p); }
};
struct StreamRelease {
  using Raw = cudaStream_t;
  static void Free(cudaStream_t s) { cudaStreamDestroy(s); }
};
struct EventRelease {
  using Raw = cudaEvent_t;
  static void Free(cudaEvent_t e) { cudaEventDestroy(e); }
};
struct GraphExecRelease {
  using Raw = cudaGraphExec_t;
  static void Free(cudaGraphExec_t g) { cudaGraphExecDestroy(g); }
};
struct GraphRelease {
  using Raw = cudaGraph_t;
  static void Free(cudaGraph_t g) { cudaGraphDestroy(g); }
};

using CudaStream = CudaHandle<StreamRelease>;
using CudaEvent = CudaHandle<EventRelease>;
using CudaGraphExec = CudaHandle<GraphExecRelease>;
using CudaGraph = CudaHandle<GraphRelease>;

// Memory of a fixed size from one CUDA allocator (device or page-locked host memory).
template <typename Release, cudaError_t (*Alloc)(void**, size_t), const char* kAllocName>
class CudaMemory {
 public:
  CudaMemory() = default;
  static absl::StatusOr<CudaMemory> Allocate(size_t bytes) {
    CudaMemory b;
    if (bytes == 0) return b;
    void* p = nullptr;
    const cudaError_t err = Alloc(&p, bytes);
    if (err != cudaSuccess) return CudaStatus(err, kAllocName);
    b.mem_ = CudaHandle<Release>(p);
    b.bytes_ = bytes;
    return b;
  }
  void* get() const { return mem_.get(); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(mem_.get());
  }
  size_t bytes() const { return bytes_; }

 private:
  CudaHandle<Release> mem_;
  size_t bytes_ = 0;
};

inline cudaError_t DeviceAlloc(void** p, size_t bytes) { return cudaMalloc(p, bytes); }
inline cudaError_t PinnedAlloc(void** p, size_t bytes) { return cudaMallocHost(p, bytes); }
inline constexpr char kCudaMallocName[] = "cudaMalloc";
inline constexpr char kCudaMallocHostName[] = "cudaMallocHost";

// Device memory.
using DeviceBuffer = CudaMemory<DeviceMemRelease, DeviceAlloc, kCudaMallocName>;
// Page-locked host memory, for asynchronous copies.
using PinnedBuffer = CudaMemory<PinnedMemRelease, PinnedAlloc, kCudaMallocHostName>;

inline absl::StatusOr<CudaStream> MakeStream() {
  cudaStream_t s;
  const cudaError_t err = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  if (err != cudaSuccess) return CudaStatus(err, "cudaStreamCreate");
  return CudaStream(s);
}

inline absl::StatusOr<CudaEvent> MakeEvent(bool timing = true) {
  cudaEvent_t e;
  const cudaError_t err =
      cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming);
  if (err != cudaSuccess) return CudaStatus(err, "cudaEventCreate");
  return CudaEvent(e);
}

}  // namespace moe
