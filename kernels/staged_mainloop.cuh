// The staged mainloop: one CTA computes its 32 experts over the whole hidden dimension
// (no K split) from shared memory. Its weight rows are copied in a single wave — one bulk
// copy (TMA) per row on sm_90, all in flight at once, no registers held — before
// griddepcontrol.wait, so under Programmatic Dependent Launch they stream while the
// previous kernel finishes; the chunk's hidden states follow after the wait. The MMAs then
// read shared memory only. Against the split mainloops this trades many SMs' bandwidth for
// no cross-CTA reduction: it wins where the weights are small (tens to a couple hundred
// KB per CTA) and latency, not bandwidth, sets the time.
//
// Shared memory (dynamic): [rows][stride] weight pieces then [tokens][stride] hidden-state
// pieces, 16 bytes each, stride = K/8 rounded so that stride % 8 == 4: the eight lanes of a
// quarter-warp (rows g, g+1 at columns t = 0..3) then hit eight distinct 16-byte bank
// groups. After the mainloop the same memory holds the CTA's SharedStorage.
#pragma once

#include "kernels/decompose_k_device.cuh"

namespace moe::cuda {

// 16-byte pieces per staged row.
__host__ __device__ inline int StagedStride(int K) {
  const int units = (K + 7) / 8;
  return units + (4 - units % 8 + 8) % 8;
}

// Dynamic shared memory of a staged CTA: its weight rows and `tokens` hidden-state rows,
// and at least the SharedStorage that reuses it.
__host__ __device__ inline size_t StagedSmemBytes(int experts, int K, int tokens) {
  const int rows = experts < kBlockExperts ? experts : kBlockExperts;
  const size_t staged = size_t(rows + tokens) * StagedStride(K) * 16;
  return staged > sizeof(SharedStorage) ? staged : sizeof(SharedStorage);
}

__device__ __forceinline__ void CopyAsync16(void* smem_dst, const void* gmem_src) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(gmem_src) : "memory");
}
__device__ __forceinline__ void CopyAsyncWaitAll() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;" ::: "memory");
}

// Copies `rows` rows of `src` ([*, K] row-major, 2-byte elements) from `first_row` into
// `dst` ([rows][stride] pieces); pieces past K are not copied (the MMA loop skips them).
// On sm_90 one bulk copy (TMA) per row, issued by warp 0 and counted on `bar`: cp.async's
// 16-byte pieces measured ~20 GB/s into one SM (64 KB took 3 us). Before sm_90, cp.async.
__device__ __forceinline__ void StageRows(uint4* dst, const void* src, int first_row, int rows,
                                          int K, int stride, uint64_t* bar) {
  const char* base = static_cast<const char*>(src) + size_t(first_row) * K * 2;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (threadIdx.x >= 32) return;
  const unsigned bar_addr = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  for (int r = threadIdx.x; r < rows; r += 32) {
    const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst + size_t(r) * stride));
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
            "r"(d),
        "l"(base + size_t(r) * K * 2), "r"(unsigned(K * 2)), "r"(bar_addr)
        : "memory");
  }
#else
  (void)bar;
  const int units = K / 8;  // K is a multiple of 8 (CanRouteDecomposeK)
  for (int i = threadIdx.x; i < rows * units; i += kThreads) {
    const int r = i / units, u = i % units;
    CopyAsync16(dst + size_t(r) * stride + u, base + (size_t(r) * K + size_t(u) * 8) * 2);
  }
#endif
}

// The staging barrier: armed by thread 0 for `bytes` of bulk copies before any is issued.
__device__ __forceinline__ void ArmStagingBarrier(uint64_t* bar, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(a) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(a), "r"(bytes)
                 : "memory");
  }
  __syncwarp();
#else
  (void)bar;
  (void)bytes;
#endif
}

// Waits until every staged byte has landed (all threads).
__device__ __forceinline__ void WaitStaged(uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __syncthreads();  // the barrier's initialisation is visible to every waiter
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  unsigned done = 0;
  while (!done)
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.b32 %0, 1, 0, "
        "p; }"
        : "=r"(done)
        : "r"(a)
        : "memory");
#else
  (void)bar;
  CopyAsyncWaitAll();
  __syncthreads();
#endif
}

// Accumulates the CTA's 32 experts x (8 * NT) tokens over all of K into acc, one K step
// (32 elements) per warp in turn. On return every staged piece has been read and the CTA
// has passed a barrier, so the caller may reuse the shared memory.
template <typename T, int NT>
__device__ __forceinline__ void StagedMainloop(const KernelParams& p, int m_block, int token_base,
                                               uint4* stage, float (&acc)[2][NT][4]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int stride = StagedStride(p.K), units = p.K / 8;
  const int rows = min(kBlockExperts, p.experts - m_block * kBlockExperts);
  const int tokens = min(8 * NT, p.tokens - token_base);
  uint4* w = stage;
  uint4* x = stage + size_t(rows) * stride;
  __shared__ uint64_t staged_bar;
  ArmStagingBarrier(&staged_bar, unsigned(rows + tokens) * p.K * 2);
  // Weights are model constants: copied before the previous kernel ends.
  StageRows(w, p.w, m_block * kBlockExperts, rows, p.K, stride, &staged_bar);
  WaitForPrerequisiteGrid();
  StageRows(x, p.x, token_base, tokens, p.K, stride, &staged_bar);
  WaitStaged(&staged_bar);
  const uint4 zero = make_uint4(0, 0, 0, 0);
  for (int step = warp; step < p.total_steps; step += kWarps) {
    const int u = step * 4 + t;
    const bool in = u < units;
    uint4 a[4], b[NT];
#pragma unroll
    for (int r = 0; r < 4; ++r)  // rows g, g+8, g+16, g+24 of the block
      a[r] = in && g + 8 * r < rows ? w[(g + 8 * r) * stride + u] : zero;
#pragma unroll
    for (int n = 0; n < NT; ++n)
      b[n] = in && 8 * n + g < tokens ? x[(8 * n + g) * stride + u] : zero;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      const uint4 lo = a[2 * mt], hi = a[2 * mt + 1];
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        Mma<T>(acc[mt][n], lo.x, hi.x, lo.y, hi.y, b[n].x, b[n].y);
        Mma<T>(acc[mt][n], lo.z, hi.z, lo.w, hi.w, b[n].z, b[n].w);
      }
    }
  }
  __syncthreads();
}

}  // namespace moe::cuda
