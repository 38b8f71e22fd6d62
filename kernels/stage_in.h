// Staging a batch's hidden states for the router kernel without a copy engine: a small
// kernel reads them straight from page-locked host memory mapped into the device's address
// space and writes them to device memory. It lets the next kernel in the stream start at
// once (Programmatic Dependent Launch), so a router launched after it with `pdl` streams its
// weights, which do not depend on the hidden states, while they cross PCIe; it reads them
// only after griddepcontrol.wait. A copy-engine transfer is a graph node the router cannot
// overlap: the router's whole weight stream waits behind it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"

namespace moe::cuda {

// Where a kernel that reads hidden states marks the rows holding a NaN or an infinity:
// `bad_rows[r]` is set to 1 for each such row r (and never cleared: the caller zeroes the
// rows it will read before the launch). Rows are `row_bytes` long (a multiple of 16) of
// `dtype` values. Lets the server check hidden states on the device, where they pass
// anyway, instead of reading every request's bytes once more on the host; routing is per
// token, so a bad row spoils only its own outputs.
struct FiniteCheck {
  uint8_t* bad_rows = nullptr;  // null: no check
  size_t row_bytes = 0;
  DType dtype = DType::kBF16;
};

// Copies `bytes` (a multiple of 16; both pointers 16-byte aligned) from `mapped_src`, a
// device pointer to page-locked host memory (cudaHostGetDevicePointer), to `dst` in device
// memory. Stream ordered and graph capturable; no allocation. cudaErrorInvalidValue for
// a misaligned or ragged copy. `start_ns`, when not null, receives the device clock
// (%globaltimer, ns) as the kernel starts. With `check.bad_rows` it also marks the rows
// of what it copies that are not finite.
cudaError_t LaunchStageIn(const void* mapped_src, void* dst, size_t bytes, cudaStream_t stream,
                          unsigned long long* start_ns = nullptr, const FiniteCheck& check = {});

// Where LaunchStageInFrom finds its source: page-locked host memory holding one copy of
// the source address per block of the kernel, each on its own 128-byte line. Blocks
// reading one shared address from host memory are served one after another (H200: one
// cell for 56 blocks cost 5.7 us, a volatile one 45 us); distinct lines are read in
// parallel, one PCIe round trip.
inline constexpr int kStageSourceCells = 64;  // blocks of a LaunchStageInFrom grid, at most
inline constexpr size_t kStageSourceCellStride = 128;
inline constexpr size_t kStageSourceCellsBytes = kStageSourceCells * kStageSourceCellStride;
// Bytes a stage-in block copies in one pass (256 threads, 16 bytes each).
inline constexpr size_t kStageBlockBytes = 256 * 16;

// Names the source of the next LaunchStageInFrom launches of up to `bytes` reading `cells`
// (the host's view of kStageSourceCellsBytes of page-locked memory): `mapped_src`, as the
// device sees it. Only the cells of those launches' blocks are written, and only where
// they hold another address: a line the device has read and the host writes again must be
// fetched back first, and a server reusing one input block names the same source each time.
inline void SetStageInSource(void* cells, const void* mapped_src, size_t bytes) {
  const size_t blocks = (bytes + kStageBlockBytes - 1) / kStageBlockBytes;
  const int n = blocks < size_t(kStageSourceCells) ? int(blocks) : kStageSourceCells;
  for (int b = 0; b < n; ++b) {
    auto* cell = reinterpret_cast<const void* volatile*>(static_cast<char*>(cells) +
                                                         b * kStageSourceCellStride);
    if (*cell != mapped_src) *cell = mapped_src;
  }
}

// The same as LaunchStageIn, but the kernel takes its source address from the cells at
// `mapped_cells` (the device's view; SetStageInSource) as it starts: one graph then stages
// whichever buffer the host names before each launch (the server's per-request input
// blocks). The address must be 16-byte aligned, device-readable host memory with `bytes`
// to read; reading it costs one PCIe round trip before the copy starts.
cudaError_t LaunchStageInFrom(const void* mapped_cells, void* dst, size_t bytes,
                              cudaStream_t stream, unsigned long long* start_ns = nullptr,
                              const FiniteCheck& check = {});

// Marks the rows of `bytes` of device memory at `data` (16-byte aligned, a multiple of
// `check.row_bytes`) that are not finite: the check for hidden states that came in by a
// copy-engine transfer.
cudaError_t LaunchCheckFiniteRows(const void* data, size_t bytes, const FiniteCheck& check,
                                  cudaStream_t stream);

// Writes the device clock (%globaltimer, ns) into `*end_ns` once the previous kernel in the
// stream has finished and its writes are visible. Launched under PDL, so it is resident
// before that kernel ends (which must allow dependents early, as the router kernels do).
// With LaunchStageIn's start_ns it times a batch on the device without CUDA events: event
// record nodes cost ~4 us of a graph launch on the host (bench/NOTES.md).
cudaError_t LaunchCompletionStamp(unsigned long long* end_ns, cudaStream_t stream);

}  // namespace moe::cuda
