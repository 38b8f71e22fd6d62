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

// Where LaunchStageInFrom finds its source: page-locked host memory holding one cell per
// block of the kernel, each on its own 128-byte line. Blocks reading one shared address
// from host memory are served one after another (H200: one cell for 56 blocks cost 5.7 us,
// a volatile one 45 us); distinct lines are read in parallel, one PCIe round trip.
inline constexpr int kStageSourceCells = 64;  // blocks of a LaunchStageInFrom grid, at most
inline constexpr size_t kStageSourceCellStride = 128;
inline constexpr size_t kStageSourceCellsBytes = kStageSourceCells * kStageSourceCellStride;
// Bytes a stage-in block copies in one pass (256 threads, 16 bytes each): a chunk.
inline constexpr size_t kStageBlockBytes = 256 * 16;

// Chunk marks: how a stage-in may start before its source is written. The host copies the
// source a chunk (kStageBlockBytes) at a time and, after each, stores `generation` into
// that chunk's mark (its own 128-byte line of page-locked memory the device can read) with
// a release store (server/input_pool.h's BlockFill, the one writer of marks, tests too);
// the stage-in block of a marked chunk polls the mark until it holds that value, then
// copies the chunk. The server hands a lone request to its worker before copying its
// hidden states, so the launch, the router's weight stream and the PCIe transfer overlap
// the copy out of gRPC's buffers. A mark still unset after kStageMarkTimeoutNs stops the
// kernel with a trap (a fail-stop device error), never a hang.
inline constexpr size_t kStageMarkStride = 128;
inline constexpr unsigned long long kStageMarkTimeoutNs = 2'000'000'000ull;
struct StageChunkMarks {
  const void* device_marks = nullptr;  // the device's view of mark 0; marks follow at the stride
  uint32_t generation = 0;             // the value of a written chunk's mark
  uint32_t chunks = 0;                 // chunks 0..chunks-1 are waited for; 0: none
};

// A source cell as the kernel reads it (the first 32 bytes of its line).
struct StageSourceCell {
  const void* src;
  const void* marks;  // StageChunkMarks::device_marks
  uint32_t generation;
  uint32_t chunks;
  uint64_t unused;
};
static_assert(sizeof(StageSourceCell) == 32, "two 16-byte loads");

// Names the source of the next LaunchStageInFrom launches of up to `bytes` reading `cells`
// (the host's view of kStageSourceCellsBytes of page-locked memory): `mapped_src`, as the
// device sees it, with `marks` for a source still being written. Only the cells of those
// launches' blocks are written, and only where they hold something else: a line the device
// has read and the host writes again must be fetched back first, and a server reusing one
// input block names the same source each time.
inline void SetStageInSource(void* cells, const void* mapped_src, size_t bytes,
                             const StageChunkMarks& marks = {}) {
  const size_t blocks = (bytes + kStageBlockBytes - 1) / kStageBlockBytes;
  const int n = blocks < size_t(kStageSourceCells) ? int(blocks) : kStageSourceCells;
  const StageSourceCell want = {mapped_src, marks.chunks > 0 ? marks.device_marks : nullptr,
                                marks.chunks > 0 ? marks.generation : 0u, marks.chunks, 0};
  for (int b = 0; b < n; ++b) {
    auto* cell = reinterpret_cast<volatile StageSourceCell*>(static_cast<char*>(cells) +
                                                             b * kStageSourceCellStride);
    if (cell->src != want.src) cell->src = want.src;
    if (cell->marks != want.marks) cell->marks = want.marks;
    if (cell->generation != want.generation) cell->generation = want.generation;
    if (cell->chunks != want.chunks) cell->chunks = want.chunks;
  }
}

// The same as LaunchStageIn, but the kernel takes its source address (and chunk marks) from
// the cells at `mapped_cells` (the device's view; SetStageInSource) as it starts: one graph
// then stages whichever buffer the host names before each launch (the server's per-request
// input blocks). The address must be 16-byte aligned, device-readable host memory with
// `bytes` to read; reading it costs one PCIe round trip before the copy starts, and a
// marked chunk at least one more.
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
