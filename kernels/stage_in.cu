#include <algorithm>
#include <cstdint>

#include "kernels/launch_attributes.h"
#include "kernels/pdl_device.cuh"
#include "kernels/stage_in.h"

namespace moe::cuda {
namespace {

constexpr int kStageThreads = int(kStageBlockBytes / 16);
constexpr int kMaxStageBlocks = 1024;

// The check as the kernels take it: a row's length in 16-byte vectors and the exponent
// mask of one 32-bit word's values (a value is not finite when its exponent bits are all
// ones: two 16-bit values a word, or one fp32).
struct RowCheck {
  uint8_t* bad_rows;  // null: no check
  size_t row_vectors;
  unsigned exponent_mask;
  bool two_halves;
};

RowCheck MakeRowCheck(const FiniteCheck& c) {
  const bool two_halves = c.dtype != DType::kFP32;
  const unsigned mask = ExponentMask(c.dtype);
  return {c.bad_rows, c.row_bytes / 16, two_halves ? mask | mask << 16 : mask, two_halves};
}

__device__ __forceinline__ bool WordFinite(unsigned w, const RowCheck& c) {
  const unsigned e = w & c.exponent_mask;
  if (!c.two_halves) return e != c.exponent_mask;
  const unsigned lo = c.exponent_mask & 0xffffu;
  return (e & 0xffffu) != lo && (e >> 16) != lo;
}

// Marks vector i's row when one of its values is not finite (a plain store of 1: threads
// of one row may race, all writing the same byte).
__device__ __forceinline__ void CheckVector(const uint4& v, size_t i, const RowCheck& c) {
  if (c.bad_rows == nullptr) return;
  if (!(WordFinite(v.x, c) && WordFinite(v.y, c) && WordFinite(v.z, c) && WordFinite(v.w, c)))
    c.bad_rows[i / c.row_vectors] = 1;
}

// Polls a chunk's mark (system-scope acquire: the host's stores before it are then visible)
// until it holds `generation`; traps after kStageMarkTimeoutNs.
__device__ void WaitForChunkMark(const unsigned* mark, unsigned generation) {
  const unsigned long long start = GlobalTimerNs();
  for (;;) {
    unsigned v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(mark) : "memory");
    if (v == generation) return;
    if (GlobalTimerNs() - start > kStageMarkTimeoutNs) __trap();
  }
}

// One 16-byte vector a thread per round; a round is a chunk (kStageBlockBytes). Host memory
// is read with L2-only (.cg) loads: coherent, and nothing is kept in L1 that is read once;
// a chunk waited for is read with .cv loads, fetched after its mark. `source_cells`, when
// not null, hold the source address (and chunk marks) instead of `src`, one cell a block
// (LaunchStageInFrom).
__global__ void __launch_bounds__(kStageThreads)
    StageInKernel(const uint4* src, const char* source_cells, uint4* __restrict__ dst,
                  size_t vectors, unsigned long long* start_ns, RowCheck check) {
  if (start_ns != nullptr && blockIdx.x == 0 && threadIdx.x == 0) *start_ns = GlobalTimerNs();
  // The dependent router may start now: it touches the hidden states only after
  // griddepcontrol.wait, which waits for this whole grid to finish and its writes to land.
  AllowDependentLaunch();
  __shared__ StageSourceCell cell;
  if (source_cells != nullptr) {
    // This block's own cell, by L2-only loads like the data's (the host wrote it before
    // the launch).
    if (threadIdx.x < 2) {
      const auto* line =
          reinterpret_cast<const uint4*>(source_cells + blockIdx.x * kStageSourceCellStride);
      reinterpret_cast<uint4*>(&cell)[threadIdx.x] = __ldcg(line + threadIdx.x);
    }
    __syncthreads();
    src = static_cast<const uint4*>(cell.src);
  }
  const unsigned waited = source_cells != nullptr ? cell.chunks : 0u;
  for (size_t chunk = blockIdx.x; chunk * kStageThreads < vectors; chunk += gridDim.x) {
    const size_t i = chunk * kStageThreads + threadIdx.x;
    if (chunk < waited) {
      if (threadIdx.x == 0)
        WaitForChunkMark(reinterpret_cast<const unsigned*>(static_cast<const char*>(cell.marks) +
                                                           chunk * kStageMarkStride),
                         cell.generation);
      __syncthreads();
      if (i < vectors) {
        const uint4 v = __ldcv(src + i);
        dst[i] = v;
        CheckVector(v, i, check);
      }
    } else if (i < vectors) {
      const uint4 v = __ldcg(src + i);
      dst[i] = v;
      CheckVector(v, i, check);
    }
  }
}

__global__ void __launch_bounds__(kStageThreads)
    CheckFiniteRowsKernel(const uint4* __restrict__ data, size_t vectors, RowCheck check) {
  const size_t stride = size_t(gridDim.x) * kStageThreads;
  for (size_t i = size_t(blockIdx.x) * kStageThreads + threadIdx.x; i < vectors; i += stride)
    CheckVector(__ldg(data + i), i, check);
}

bool ValidCheck(const FiniteCheck& c) {
  return c.bad_rows == nullptr || (c.row_bytes > 0 && c.row_bytes % 16 == 0);
}

// The grid-stride kernels' launch: a thread a vector, up to kMaxStageBlocks blocks.
cudaLaunchConfig_t GridStrideConfig(size_t vectors, cudaStream_t stream) {
  const size_t blocks = std::max<size_t>(1, (vectors + kStageThreads - 1) / kStageThreads);
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(unsigned(blocks < kMaxStageBlocks ? blocks : kMaxStageBlocks));
  config.blockDim = dim3(kStageThreads);
  config.stream = stream;
  return config;
}

__global__ void CompletionStampKernel(unsigned long long* end_ns) {
  WaitForPrerequisiteGrid();
  *end_ns = GlobalTimerNs();
}

// Either a source (`source_cells` null) or the cells holding it.
cudaError_t LaunchStage(const void* mapped_src, const void* source_cells, void* dst, size_t bytes,
                        cudaStream_t stream, unsigned long long* start_ns,
                        const FiniteCheck& check) {
  if (bytes % 16 != 0 || reinterpret_cast<uintptr_t>(mapped_src) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(dst) % 16 != 0 || !ValidCheck(check))
    return cudaErrorInvalidValue;
  const size_t vectors = bytes / 16;
  if (vectors == 0 && start_ns == nullptr) return cudaSuccess;  // else still stamp the start
  cudaLaunchConfig_t config = GridStrideConfig(vectors, stream);
  if (source_cells != nullptr && config.gridDim.x > unsigned(kStageSourceCells))
    config.gridDim.x = kStageSourceCells;  // a cell a block; the grid-stride loop does the rest
  return cudaLaunchKernelEx(&config, StageInKernel, static_cast<const uint4*>(mapped_src),
                            static_cast<const char*>(source_cells), static_cast<uint4*>(dst),
                            vectors, start_ns, MakeRowCheck(check));
}

}  // namespace

cudaError_t LaunchStageIn(const void* mapped_src, void* dst, size_t bytes, cudaStream_t stream,
                          unsigned long long* start_ns, const FiniteCheck& check) {
  return LaunchStage(mapped_src, nullptr, dst, bytes, stream, start_ns, check);
}

cudaError_t LaunchStageInFrom(const void* mapped_cells, void* dst, size_t bytes,
                              cudaStream_t stream, unsigned long long* start_ns,
                              const FiniteCheck& check) {
  if (mapped_cells == nullptr) return cudaErrorInvalidValue;
  return LaunchStage(nullptr, mapped_cells, dst, bytes, stream, start_ns, check);
}

cudaError_t LaunchCheckFiniteRows(const void* data, size_t bytes, const FiniteCheck& check,
                                  cudaStream_t stream) {
  if (check.bad_rows == nullptr || !ValidCheck(check) || bytes % check.row_bytes != 0 ||
      reinterpret_cast<uintptr_t>(data) % 16 != 0)
    return cudaErrorInvalidValue;
  const size_t vectors = bytes / 16;
  if (vectors == 0) return cudaSuccess;
  const cudaLaunchConfig_t config = GridStrideConfig(vectors, stream);
  return cudaLaunchKernelEx(&config, CheckFiniteRowsKernel, static_cast<const uint4*>(data),
                            vectors, MakeRowCheck(check));
}

cudaError_t LaunchCompletionStamp(unsigned long long* end_ns, cudaStream_t stream) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(1);
  config.blockDim = dim3(1);
  config.stream = stream;
  LaunchAttributes attributes;
  attributes.Pdl(true).AttachTo(config);
  return cudaLaunchKernelEx(&config, CompletionStampKernel, end_ns);
}

}  // namespace moe::cuda
