// Device side shared by the staged-tile GEMM kernels (decompose_k_gemm_tile.cu: 64- and
// 128-row tiles whose 8 warps multiply every stage; decompose_k_gemm_few_rows.cu: 16- and
// 32-row tiles whose warps take turns at the stages): the kernels' parameters, the
// diagnostic stamps, the split barrier and the split reduction's slice sum. Included by
// those .cu files only.
#pragma once

#include <cuda.h>  // CUtensorMap

#include <cstddef>
#include <cuda/atomic>

#include "kernels/decompose_k_device.cuh"
#include "kernels/decompose_k_gemm_tile.h"
#include "kernels/pdl_device.cuh"
#include "kernels/staged_tile_device.cuh"
#include "kernels/tma_device.cuh"

namespace moe::cuda {

constexpr int kTileStageK = 64;  // hidden elements a stage: one 128-byte row per operand row
constexpr int kTileReduceSplitsInFlight = 16;  // a thread's partial loads in flight

struct TileGemmParams {
  const void* a;
  const void* b;
  const float* bias;
  float* c;
  int m, n, k, k_splits, stages_per_split, total_stages;
  float* partials;               // [split][tile][T x T]
  unsigned* counters;            // [m tile][n tile][kTileCounters] (TileBarrier)
  unsigned long long* timeline;  // diagnostics, or null (GemmStampSlot)
  // The TMA instances' operand maps (EncodeSwizzledRowsMap, box = one tile edge of rows).
  CUtensorMap map_a, map_b;
};

// A separate instance (kStamps) writes the stamps: the service's kernels do not even test
// for them: stamps behind a run-time null test made these kernels 0.2-0.8 us a call slower
// (H200, bench/NOTES.md session 24).
template <bool kStamps>
__device__ __forceinline__ void GemmStamp(const TileGemmParams& p, int slot) {
  if constexpr (!kStamps) return;
  if (threadIdx.x != 0) return;
  const size_t cta = (size_t(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  p.timeline[cta * kGemmStampSlots + slot] = GlobalTimerNs();
}

// The tile's split barrier: its S CTAs, after storing their partial tiles, wait until all
// S have arrived. Per tile: two arrival counters used in turns and a generation
// (counters[tile][kCounter*]). The generation g, read when the CTA starts (it cannot move
// before this CTA has arrived), picks this launch's counter (g & 1); every CTA adds its
// arrival and waits until that counter holds S, so the last arrival releases the others
// as soon as it lands in L2. The last arrival then zeroes the other counter (the previous
// launch's, which nobody reads any more) and advances the generation for the next launch,
// so graph replays need no reset. Release/acquire through thread 0 and the CTA barriers,
// as in ArriveLast. Before (one counter the last arrival reset, the others waiting for its
// generation store, the generation read at the barrier) the barrier passed ~1.5 us after
// the last partial; now ~1.0, and every tile GEMM row with S > 1 is 0.4-0.8 us faster
// (H200, bench/NOTES.md session 40).
enum TileCounter {
  kCounterArrivalsEven,
  kCounterArrivalsOdd,
  kCounterGeneration,
  kTileCounters = 4
};

// TileBarrier picks this launch's arrival counter as counters[generation & 1].
static_assert(kCounterArrivalsEven == 0 && kCounterArrivalsOdd == 1, "parity indexes arrivals");

__device__ __forceinline__ unsigned* TileCounters(const TileGemmParams& p, size_t tile) {
  return p.counters + kTileCounters * tile;
}

// The tile barrier's generation, read by thread 0 (S > 1): early, so that it is off the
// barrier's path; under PDL only after the previous launch has finished (its last arrival
// advances it).
__device__ __forceinline__ unsigned ReadTileGeneration(const TileGemmParams& p, size_t tile) {
  if (threadIdx.x != 0 || p.k_splits <= 1) return 0;
  return ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device>(
             TileCounters(p, tile)[kCounterGeneration])
      .load(::cuda::memory_order_relaxed);
}

__device__ inline void TileBarrier(unsigned* counters, unsigned generation, unsigned expected) {
  __syncthreads();
  if (threadIdx.x == 0) {
    ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> count(counters[generation & 1]);
    if (count.fetch_add(1u, ::cuda::memory_order_acq_rel) == expected - 1) {
      ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device>(counters[(generation + 1) & 1])
          .store(0u, ::cuda::memory_order_relaxed);
      ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device>(counters[kCounterGeneration])
          .store(generation + 1, ::cuda::memory_order_relaxed);
    } else {
      while (count.load(::cuda::memory_order_acquire) != expected) __nanosleep(64);
    }
  }
  __syncthreads();
}

// The TMA producer of a staged tile (one thread of the producer warp): issues stages 0 to
// count - 1 into kStages buffers in turn, each two boxes (`load_half(i, is_a)`: B's rows,
// then A's) that complete on the buffer's `full` mbarrier, which expects kStageBytes; a
// buffer's next stage waits for its `empty` mbarrier to have seen the previous one
// multiplied. kPdl: B is a constant (a model's weights), so B's boxes of the first
// `max_early` stages (of at most count and kStages) are issued before griddepcontrol.wait,
// while the previous kernel still runs; A's after.
// sm_90+ only (tma_device.cuh): called in code compiled under `__CUDA_ARCH__ >= 900`.
template <int kStages, int kStageBytes, bool kPdl, typename LoadHalf>
__device__ __forceinline__ void IssueTileStages(int count, int max_early, uint64_t (&full)[kStages],
                                                uint64_t (&empty)[kStages], LoadHalf load_half) {
  int i = 0;
  if constexpr (kPdl) {
    const int early = min(min(count, kStages), max_early);
    for (int j = 0; j < early; ++j) {
      MbarrierArriveExpectTx(&full[j], kStageBytes);
      load_half(j, false);
    }
    WaitForPrerequisiteGrid();
    FenceProxyAsyncGlobal();  // A may have been written by the previous kernel
    for (; i < early; ++i) load_half(i, true);
  }
  for (; i < count; ++i) {
    const int buf = i % kStages;
    // The buffer's previous stage (i - kStages) must have been multiplied.
    if (i >= kStages) MbarrierWait(&empty[buf], (i / kStages - 1) & 1);
    MbarrierArriveExpectTx(&full[buf], kStageBytes);
    load_half(i, false);
    load_half(i, true);
  }
}

// After the split barrier, this CTA's slice of the tile's kTileVec float4s (f_begin to
// f_end, a lane each) summed over the S partials: warp w sums splits w, w + 8, ..., and
// warp 0 adds the 8 warps' sums in order (deterministic) and hands each float4 f whose
// fragment f / 32 holds real rows (`fragment_in(f / 32)`) to `write(f, total)`. The
// producer warp of the TMA instances (`producer`) sums nothing but meets the CTA barriers.
// `warp_sums`: kWarps x 32 float4s of shared memory.
template <int kTileVec, typename FragmentIn, typename Write>
__device__ __forceinline__ void SumTileSlice(const TileGemmParams& p, size_t tile, int split,
                                             bool producer, float4 (*warp_sums)[32],
                                             FragmentIn fragment_in, Write write) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const float4* partials = reinterpret_cast<const float4*>(p.partials);
  const size_t tiles = size_t(gridDim.y) * gridDim.z;
  const int per = (kTileVec + p.k_splits - 1) / p.k_splits;
  const int f_begin = split * per, f_end = min(f_begin + per, kTileVec);
  const size_t split_stride = tiles * kTileVec;
  for (int fb = f_begin; fb < f_end; fb += 32) {
    const int f = fb + lane;
    const bool valid = f < f_end && fragment_in(f / 32);
    float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int s0 = warp; !producer && s0 < p.k_splits; s0 += kWarps * kTileReduceSplitsInFlight) {
      float4 v[kTileReduceSplitsInFlight];
#pragma unroll
      for (int u = 0; u < kTileReduceSplitsInFlight; ++u) {
        const int sp = s0 + u * kWarps;
        v[u] = valid && sp < p.k_splits ? __ldcg(partials + sp * split_stride + tile * kTileVec + f)
                                        : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
#pragma unroll
      for (int u = 0; u < kTileReduceSplitsInFlight; ++u) {
        sum.x += v[u].x;
        sum.y += v[u].y;
        sum.z += v[u].z;
        sum.w += v[u].w;
      }
    }
    __syncthreads();  // the previous block's warp_sums have been read
    if (!producer) warp_sums[warp][lane] = sum;
    __syncthreads();
    if (warp == 0 && valid) {
      float4 total = warp_sums[0][lane];
#pragma unroll
      for (int w = 1; w < kWarps; ++w) {
        const float4 x = warp_sums[w][lane];
        total.x += x.x;
        total.y += x.y;
        total.z += x.z;
        total.w += x.w;
      }
      write(f, total);
    }
  }
}

// The 16- and 32-row tiles (decompose_k_gemm_few_rows.cu; `tile` 16 or 32, sm_90+ only, p's
// maps encoded with boxes of `tile` rows). Grid and splits as LaunchTileGemm's.
cudaError_t LaunchFewRowTileGemm(bool bf16, bool stamps, bool pdl, int tile,
                                 const TileGemmParams& p, dim3 grid, cudaStream_t stream);

// The MMA side of a staged tile under the TMA producer: stages first, first + step, ... below
// count, each waited for on its buffer's `full` mbarrier, multiplied
// (`multiply(buffer_address)`), and released through its `empty` mbarrier once every lane's
// shared loads are done. The 64-tiles' 8 warps multiply every stage together (first 0, step
// 1); the few-row tiles' warps take turns (first warp, step 8: buffer b always warp b % 8's).
// sm_90+ only, as IssueTileStages.
template <int kStages, int kStageBytes, bool kStamps, typename Multiply>
__device__ __forceinline__ void ConsumeTileStages(const TileGemmParams& p, const uint8_t* stages,
                                                  int first, int step, int count,
                                                  uint64_t (&full)[kStages],
                                                  uint64_t (&empty)[kStages], Multiply multiply) {
  for (int i = first; i < count; i += step) {
    const int buf = i % kStages;
    MbarrierWait(&full[buf], (i / kStages) & 1);
    if (i == 0) GemmStamp<kStamps>(p, kGemmStampFirstStage);
    multiply(stages + buf * kStageBytes);
    __syncwarp();  // every lane's shared loads of the stage are done
    if ((threadIdx.x & 31) == 0) MbarrierArrive(&empty[buf]);
  }
}

}  // namespace moe::cuda
