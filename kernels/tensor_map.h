// Host side of the TMA tile loads (tma_device.cuh): 2-D tensor maps of row-major 16-bit
// operands, encoded through the driver's cuTensorMapEncodeTiled (found through the
// runtime, so nothing links libcuda directly).
#pragma once

#include <cuda.h>  // CUtensorMap
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda {

// A map of `base`, a row-major [rows, cols] array of 16-bit elements, whose box is
// `box_rows` rows of 64 elements (128 bytes), stored 128-byte swizzled: 16-byte chunk c of
// box row r lands at r * 128 + ((c ^ (r % 8)) * 16) of a 1024-byte-aligned destination.
// Reads past the array's edges fill zeros. cudaErrorInvalidValue when the driver refuses
// the map (`base` not 16-byte aligned, `cols` not a multiple of 8), cudaErrorNotSupported
// without the entry point.
cudaError_t EncodeSwizzledRowsMap(CUtensorMap* map, const void* base, int rows, int cols,
                                  int box_rows, bool promote_256 = true);

// Whether `p` can be a tensor map's base (16-byte aligned).
inline bool TensorMapAligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace moe::cuda
