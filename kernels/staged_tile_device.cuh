// Device helpers for operand tiles staged in shared memory by cp.async (the staged-tile
// GEMM, decompose_k_gemm_tile.cu, and the staged router, decompose_k_staged.cu): the
// asynchronous copies and a swizzled layout of 64-element (128-byte) rows of 16-bit
// operands. Included by .cu files only.
//
// Layout: row r's 16-byte chunks are stored XOR-swizzled by (r & 1) << 2, so the 8 lanes
// of each quarter-warp reading chunk t of rows g (the MMA fragment loads below) read 128
// distinct bytes (conflict-free), and the cp.async writes of 8 threads fill one row.
#pragma once

#include <cstdint>

namespace moe::cuda {

constexpr int kSwizzledRowBytes = 128;  // 64 elements of a 16-bit operand

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row`.
__device__ __forceinline__ int ChunkOffset(int row, int chunk) {
  return row * kSwizzledRowBytes + ((chunk ^ ((row & 1) << 2)) << 4);
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
