// Device helpers for operand tiles staged in shared memory (the staged-tile GEMM,
// decompose_k_gemm_tile.cu, and the staged router, decompose_k_staged.cu): the
// asynchronous copies and the two swizzled layouts of 64-element (128-byte) rows of 16-bit
// operands. Included by .cu files only.
//
// cp.async layout: row r's 16-byte chunks are stored XOR-swizzled by (r & 1) << 2, so the
// 8 lanes of each quarter-warp reading chunk t of rows g (the MMA fragment loads) read 128
// distinct bytes (conflict-free), and the cp.async writes of 8 threads fill one row.
// TMA layout (tensor-map copies with the 128-byte swizzle): chunk c of row r at c ^ (r % 8),
// read in the row order of StagedRow.
#pragma once

#include <cstdint>

namespace moe::cuda {

constexpr int kSwizzledRowBytes = 128;  // 64 elements of a 16-bit operand

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row`.
__device__ __forceinline__ int ChunkOffset(int row, int chunk) {
  return row * kSwizzledRowBytes + ((chunk ^ ((row & 1) << 2)) << 4);
}

// Shared-memory position of 16-byte chunk `chunk` of staged row `row`: the cp.async
// layout or the TMA's 128-byte swizzle (chunk ^ row % 8).
template <bool kTma>
__device__ __forceinline__ int StagedChunkOffset(int row, int chunk) {
  if constexpr (kTma) return row * kSwizzledRowBytes + ((chunk ^ (row & 7)) << 4);
  return ChunkOffset(row, chunk);
}

// The staged row that MMA row (or column) g of an 8-row group reads. Under the TMA
// swizzle, rows r and r + 1 hold the same four chunks of a 64-byte half in swapped pairs,
// so the quarter-warp reading rows g = 0, 1 (lanes 0-7) would hit each bank twice; rows
// g and g + 4 hold the two halves apart. So g = 0..7 reads rows 0, 4, 1, 5, 2, 6, 3, 7,
// and whoever maps an accumulator back to its row and column applies the same permutation.
template <bool kTma>
__host__ __device__ constexpr int StagedRow(int g) {
  return kTma ? ((g & 1) << 2) | (g >> 1) : g;
}

// kPrefetch256: also have L2 fetch the next 128 bytes of the row (the next stage's): 35.0-36.2
// against 36.1-37.4 us at 128 x 128 x 131072 on the H100; no gain with 64-tiles.
template <bool kPrefetch256>
__device__ __forceinline__ void CpAsync16(void* smem_dst, const void* src, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  // src-size 0: the 16 bytes are zero-filled and nothing is read.
  if constexpr (kPrefetch256)
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;" ::"r"(dst), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
  else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}
__device__ __forceinline__ uint4 LoadShared16(const uint8_t* p) {
  return *reinterpret_cast<const uint4*>(p);
}

}  // namespace moe::cuda
