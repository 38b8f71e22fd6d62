// Staged-tile Decompose-K GEMM: C[m, n] = A[m, k] · B[n, k]ᵀ (+ bias), for skinny m, n and
// long k (the large-K skinny GEMMs of router_bench).
//
// Grid = (S, n tiles, m tiles). A CTA owns an output tile of 64 x 64, 128 x 128 or 64 rows
// of A by 128 of B (the heuristic's large-K tile: half the 128-tile's partial, two CTAs a
// SM, so it runs under PDL) and the split-th of S shares of the K stages (a contiguous
// range; with 128 rows of B every S-th stage). Its mainloop is a pipeline of kStages stages,
// each the tile's rows of B and of A over 64 hidden elements (128-byte rows, read whole
// from HBM); 8 warps multiply out of shared memory on the tensor cores (mma.sync m16n8k16, B rows
// as the MMA's M like the router kernels, with the same K permutation: a lane's four fragment
// registers are one 16-byte shared load). Two ways to fill the stages, same bits in C:
// - sm_90+: a ninth (producer) warp issues each stage as two TMA tensor-map tile copies
//   (128-byte swizzle) that complete on the stage's mbarrier; the MMA warps release stages
//   through a second mbarrier. H200: each CTA streams ~31 instead of ~27 bytes/ns (128-tiles)
//   and ~45 instead of ~35 (64-tiles); 128 x 128 x 131072 27.5 -> 26.7 us.
// - otherwise (and for operands not 16-byte aligned): cp.async from every thread, one CTA
//   barrier a stage, rows swizzled as in staged_tile_device.cuh.
//
// Reduction (S > 1): every CTA stores its fp32 partial tile into partials[split][tile], then
// the tile's S CTAs meet at a barrier (all resident: the grid is at most one CTA per SM,
// launched cooperatively) and each sums a 1/S slice of the tile over the S partials in a
// fixed order (deterministic), adds the bias and writes C. Spread over S SMs, that is a few
// L2 round trips; one last CTA summing all partials would read S x 64 KB through one SM.
//
// Programmatic Dependent Launch (TileGemmShape::pdl; the TMA instances of 64 rows of A,
// kPdl): B, the weights' operand, is loaded before griddepcontrol.wait, and the next
// launch's CTAs share the SMs while this one reduces: 0.35-1.0 us a call on the H200 (64 x
// 64), ~1.1 on the H100 (64 x 128 at 128 x 128 x 65536).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cuda/atomic>

#include "kernels/cuda_device.h"
#include "kernels/decompose_k_device.cuh"
#include "kernels/decompose_k_gemm_tile.h"
#include "kernels/pdl_device.cuh"
#include "kernels/staged_tile_device.cuh"
#include "kernels/tensor_map.h"
#include "kernels/tma_device.cuh"

namespace moe::cuda {
namespace {

constexpr int kStageK = 64;  // hidden elements a stage: one 128-byte row per operand row
constexpr int kRowBytes = kSwizzledRowBytes;
constexpr int kStages = 4;
constexpr int kReduceSplitsInFlight = 16;  // a thread's partial loads in flight

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

// The TMA instances (sm_90+): one producer warp more, whose one thread issues each stage as
// two tensor-map tile copies completing on the stage's `full` mbarrier; the 8 MMA warps
// wait on it and release the stage through its `empty` mbarrier. No per-thread address
// math, no CTA barrier a stage.
template <bool kTma>
constexpr int kCtaThreads = kThreads + (kTma ? 32 : 0);

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

// kPdl (TMA instances of 64 rows of A, launched with Programmatic Dependent Launch): B is a
// constant (a model's weights), so the producer loads B's half of the first stages into
// shared memory before griddepcontrol.wait, while the previous launch still runs; A, the
// workspace and C only after the wait. Each CTA allows the next launch in once its
// mainloop is done: its CTAs (64 x 64: 65 KB, 93 registers; 64 x 128: 97 KB, 94) leave
// room for one of the next launch on their SM, which loads its B while this one reduces
// (L2 traffic only). H200: 0.3-1.0 us a call on every 64-tile row (bench/NOTES.md session
// 39); H100, 64 x 128 at 128 x 128 x 65536: 17.88 against 19.01 plain. The 128 x 128 tiles
// (129 KB, one a SM) launch plain: under PDL they were 0.5 us slower at K = 65536 and no faster at
// 131072, and cut to 3 stages and 112 registers, so that two fit a SM, ~3 us slower;
// prefetching more of B into L2 before the wait lost on every row.
// kTile: the CTA tile's rows of B (n); kTileM its rows of A (m): 64 x 64, 128 x 128, or 64
// rows of A by 128 of B.
template <typename T, int kTile, int kTileM, bool kStamps, bool kTma, bool kPdl>
__global__ void __launch_bounds__(kCtaThreads<kTma>, kPdl ? 2 : 1)
    TileGemmKernel(const __grid_constant__ TileGemmParams p) {
  static_assert(kTma || !kPdl, "PDL instances load by the TMA");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  if constexpr (kTma) {
    __trap();  // launched only on sm_90+ (TileGemmTmaSupported)
    return;
  }
#endif
  constexpr int kWarpsN = kTile / 32;        // warps along n: 32 rows of B each
  constexpr int kWarpsM = kWarps / kWarpsN;  // warps along m
  constexpr int kWarpM = kTileM / kWarpsM;   // rows of A a warp: 64, 16 or 32 (64 x 128)
  constexpr int kNT = kWarpM / 8;            // n8 MMA tiles a warp
  constexpr int kRows = kTile + kTileM;      // B rows, then A rows
  constexpr int kStageBytes = kRows * kRowBytes;
  static_assert(kRows * 8 % kThreads == 0, "whole chunks a thread");
  extern __shared__ __align__(128) uint8_t dynamic_smem[];
  // The TMA's swizzled stages start kSwizzleAlignment-aligned (LaunchTyped allocates the
  // slack).
  uint8_t* const stages =
      kTma ? dynamic_smem + ((kSwizzleAlignment - SharedAddress(dynamic_smem) % kSwizzleAlignment) %
                             kSwizzleAlignment)
           : dynamic_smem;
  __shared__ float4 warp_sums[kWarps][32];
  // The TMA instances' stage barriers (unused, and unreferenced before sm_90, elsewhere).
  [[maybe_unused]] __shared__ alignas(8) uint64_t full[kStages], empty[kStages];
  GemmStamp<kStamps>(p, kGemmStampStart);
  const int split = blockIdx.x, n0 = blockIdx.y * kTile, m0 = blockIdx.z * kTileM;
  const size_t tile = size_t(blockIdx.z) * gridDim.y + blockIdx.y;
  // The tile barrier's generation (thread 0; S > 1), read early so that it is off the
  // barrier's path. Under PDL only after the previous launch has finished (its last
  // arrival advances it), so there after the wait below.
  unsigned generation = 0;
  auto read_generation = [&] {
    if (threadIdx.x == 0 && p.k_splits > 1)
      generation = ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device>(
                       TileCounters(p, tile)[kCounterGeneration])
                       .load(::cuda::memory_order_relaxed);
  };
  if constexpr (!kPdl) read_generation();

  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wn = warp % kWarpsN, wm = warp / kWarpsN;
  // Fragments wholly past the tile's real rows of A or of B (a GEMM of fewer rows than
  // the tile, or a ragged edge) hold nothing that reaches C: the partials skip storing and
  // summing them (at 16 x 16, 15 of a 64-tile partial's 16 float4s). Their MMAs still run
  // (on zeros): skipping them made the 64 x 128 PDL instance spill, for a mainloop bound
  // by its loads anyway.
  const auto fragment_in = [&p](int w, int mt, int nt) {
    // In 8-row groups of A (an n8 MMA tile) and 16-row groups of B (an m16 tile).
    const int groups_a = (p.m - int(blockIdx.z) * kTileM + 7) / 8;
    const int groups_b = (p.n - int(blockIdx.y) * kTile + 15) / 16;
    return (w / kWarpsN) * kNT + nt < groups_a && (w % kWarpsN) * 2 + mt < groups_b;
  };
  // Which K stages this split owns. 128-tiles: every S-th from `split`, so the tile's S
  // CTAs read neighbouring 128-byte pieces of each row at the same time (H200, 128 x 128 x
  // 131072: 28.6 -> 27.3 us against contiguous ranges). 64-tiles: a contiguous range each
  // (there the interleaving measured 0.1-0.3 us slower below K = 131072).
  constexpr bool kInterleaved = kTile == 128;
  const int first = kInterleaved ? split : split * p.stages_per_split;
  const int stride = kInterleaved ? p.k_splits : 1;
  const int count = kInterleaved ? (p.total_stages - split + p.k_splits - 1) / p.k_splits
                                 : min(p.stages_per_split, p.total_stages - first);

  auto load_stage = [&](int stage, int buf) {
    uint8_t* dst = stages + buf * kStageBytes;
    const int k0 = stage * kStageK;
#pragma unroll
    for (int j = 0; j < kRows * 8 / kThreads; ++j) {
      const int idx = threadIdx.x + j * kThreads, row = idx / 8, chunk = idx % 8;
      const bool is_b = row < kTile;
      const int grow = is_b ? n0 + row : m0 + row - kTile;
      const int k = k0 + 8 * chunk;
      const bool in = grow < (is_b ? p.n : p.m) && k < p.k;
      const char* base = static_cast<const char*>(is_b ? p.b : p.a);
      CpAsync16<kInterleaved>(dst + ChunkOffset(row, chunk),
                              base + (in ? (size_t(grow) * p.k + k) * sizeof(T) : 0), in);
    }
  };

  // The stage's two 32-wide K steps for this warp, from shared memory.
  auto multiply_stage = [&](const uint8_t* buf, float(&acc)[2][kNT][4]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint4 a[4];  // B rows g, g+8, g+16, g+24 of the warp's 32
#pragma unroll
      for (int r = 0; r < 4; ++r)
        a[r] = LoadShared16(
            buf + StagedChunkOffset<kTma>(wn * 32 + StagedRow<kTma>(g) + 8 * r, 4 * h + t));
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        const uint4 b =
            LoadShared16(buf + StagedChunkOffset<kTma>(
                                   kTile + wm * kWarpM + nt * 8 + StagedRow<kTma>(g), 4 * h + t));
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          const uint4 lo = a[2 * mt], hi = a[2 * mt + 1];
          Mma<T>(acc[mt][nt], lo.x, hi.x, lo.y, hi.y, b.x, b.y);
          Mma<T>(acc[mt][nt], lo.z, hi.z, lo.w, hi.w, b.z, b.w);
        }
      }
    }
  };

  float acc[2][kNT][4] = {};
  const bool producer = kTma && warp == kWarps;
  if constexpr (kTma) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (threadIdx.x == 0) {
      for (int s = 0; s < kStages; ++s) {
        MbarrierInit(&full[s], 1);
        MbarrierInit(&empty[s], kWarps);
      }
      FenceMbarrierInit();
    }
    __syncthreads();
    if (producer) {
      if (lane == 0) {
        PrefetchTensorMap(&p.map_a);
        PrefetchTensorMap(&p.map_b);
        // Stage i's half of B (rows n0..) or of A (rows m0..): a box into its buffer,
        // counted by the buffer's `full` barrier (which expects both halves).
        auto load_half = [&](int i, bool is_a) {
          const int buf = i % kStages;
          TmaLoad2d(stages + buf * kStageBytes + (is_a ? kTile * kRowBytes : 0),
                    is_a ? &p.map_a : &p.map_b, (first + i * stride) * kStageK, is_a ? m0 : n0,
                    &full[buf]);
        };
        int i = 0;
        if constexpr (kPdl) {
          // B's half of the first stages now; A's halves once the previous kernel is done.
          const int early = min(count, kStages);
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
          // A buffer's previous use (stage i - kStages) must have been read by every warp.
          if (i >= kStages) MbarrierWait(&empty[buf], (i / kStages - 1) & 1);
          MbarrierArriveExpectTx(&full[buf], kStageBytes);
          load_half(i, false);
          load_half(i, true);
        }
      }
      __syncwarp();
      if constexpr (kPdl) AllowDependentLaunch();
    } else {
      // Nothing of the previous kernel's is read before the partials and C are written, but
      // those writes (the same workspace and C) must not start before it has finished.
      if constexpr (kPdl) {
        WaitForPrerequisiteGrid();
        read_generation();
      }
      for (int i = 0; i < count; ++i) {
        const int buf = i % kStages;
        MbarrierWait(&full[buf], (i / kStages) & 1);
        if (i == 0) GemmStamp<kStamps>(p, kGemmStampFirstStage);
        multiply_stage(stages + buf * kStageBytes, acc);
        __syncwarp();  // every lane's shared loads of the stage are done
        if (lane == 0) MbarrierArrive(&empty[buf]);
      }
      if constexpr (kPdl) AllowDependentLaunch();  // the next launch may stream B meanwhile
    }
#endif
  } else {
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < count) load_stage(first + s * stride, s);
      CpAsyncCommit();
    }
    for (int i = 0; i < count; ++i) {
      CpAsyncWait<kStages - 2>();
      __syncthreads();  // stage i landed for every thread; stage i - 1's buffer is free
      if (i == 0) GemmStamp<kStamps>(p, kGemmStampFirstStage);
      if (i + kStages - 1 < count)
        load_stage(first + (i + kStages - 1) * stride, (i + kStages - 1) % kStages);
      CpAsyncCommit();
      multiply_stage(stages + (i % kStages) * kStageBytes, acc);
    }
    CpAsyncWait<0>();
  }

  const int tm = min(kTileM, p.m - m0), tn = min(kTile, p.n - n0);
  if (p.k_splits == 1) {  // one split owns the whole K: C directly
    if (producer) return;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int col = wn * 32 + mt * 16 + StagedRow<kTma>(g) + (r >= 2 ? 8 : 0);
          const int row = wm * kWarpM + nt * 8 + StagedRow<kTma>(2 * t + (r & 1));
          if (col >= tn || row >= tm) continue;
          p.c[size_t(m0 + row) * p.n + n0 + col] =
              acc[mt][nt][r] + (p.bias ? p.bias[n0 + col] : 0.0f);
        }
    GemmStamp<kStamps>(p, kGemmStampEnd);
    return;
  }

  // The partial tile goes out straight from the MMA fragments, a float4 each: float4 f of
  // a tile is lane l's fragment (mt, nt) of warp w, f = ((w * 2 + mt) * kNT + nt) * 32 + l,
  // its four values in register order. So a warp's store is 512 contiguous bytes, with no
  // pass through shared memory; the layout is the reduction's own (the slice reduction
  // maps it back to C). Scattered 4-byte stores in C's layout had made the reduction cost
  // as much as the mainloop at 128 x 128.
  constexpr int kTileVec = kTile * kTileM / 4;  // float4s a tile
  static_assert(kWarps * 2 * kNT * 32 == kTileVec, "the fragments cover the tile");
  GemmStamp<kStamps>(p, kGemmStampMainloop);
  const size_t tiles = size_t(gridDim.y) * gridDim.z;
  float4* partials = reinterpret_cast<float4*>(p.partials);
  float4* mine = partials + (size_t(split) * tiles + tile) * kTileVec;
  if (!producer)
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
        if (fragment_in(warp, mt, nt))
          mine[((warp * 2 + mt) * kNT + nt) * 32 + lane] =
              make_float4(acc[mt][nt][0], acc[mt][nt][1], acc[mt][nt][2], acc[mt][nt][3]);

  GemmStamp<kStamps>(p, kGemmStampPartial);
  TileBarrier(TileCounters(p, tile), generation, unsigned(p.k_splits));
  GemmStamp<kStamps>(p, kGemmStampBarrier);

  // This CTA's slice of the tile: float4s [f_begin, f_end), a lane each; warp w sums splits
  // w, w + 8, ... and warp 0 adds the 8 warps' sums in order.
  const int per = (kTileVec + p.k_splits - 1) / p.k_splits;
  const int f_begin = split * per, f_end = min(f_begin + per, kTileVec);
  const size_t split_stride = tiles * kTileVec;
  for (int fb = f_begin; fb < f_end; fb += 32) {
    const int f = fb + lane;
    const int fv = f / 32;  // the fragment (warp, mt, nt) this float4 came from
    const bool valid = f < f_end && fragment_in(fv / kNT / 2, fv / kNT % 2, fv % kNT);
    float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    // The producer warp (TMA) sums nothing but meets the CTA barriers.
    for (int s0 = warp; !producer && s0 < p.k_splits; s0 += kWarps * kReduceSplitsInFlight) {
      float4 v[kReduceSplitsInFlight];
#pragma unroll
      for (int u = 0; u < kReduceSplitsInFlight; ++u) {
        const int sp = s0 + u * kWarps;
        v[u] = valid && sp < p.k_splits ? __ldcg(partials + sp * split_stride + tile * kTileVec + f)
                                        : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
#pragma unroll
      for (int u = 0; u < kReduceSplitsInFlight; ++u) {
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
      // f back to the fragment it came from (the store above), then to C's row and column
      // as in the one-split path.
      const float e[4] = {total.x, total.y, total.z, total.w};
      const int fl = f % 32, fnt = f / 32 % kNT, fmt = f / 32 / kNT % 2, fw = f / 32 / kNT / 2;
      const int fg = fl >> 2, ft = fl & 3;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int col = (fw % kWarpsN) * 32 + fmt * 16 + StagedRow<kTma>(fg) + (r >= 2 ? 8 : 0);
        const int row = (fw / kWarpsN) * kWarpM + fnt * 8 + StagedRow<kTma>(2 * ft + (r & 1));
        if (row < tm && col < tn)
          p.c[size_t(m0 + row) * p.n + n0 + col] = e[r] + (p.bias ? p.bias[n0 + col] : 0.0f);
      }
    }
  }
  GemmStamp<kStamps>(p, kGemmStampEnd);
}

size_t Align256(size_t n) { return (n + 255) / 256 * 256; }
int Tiles(int extent, int tile) { return (extent + tile - 1) / tile; }
// Rows of A a CTA tile of `s` covers (TileGemmShape::tile_m).
int TileM(const TileGemmShape& s) { return TileRowsOfA(s.tile, s.tile_m); }
int OutputTiles(const TileGemmShape& s) { return Tiles(s.m, TileM(s)) * Tiles(s.n, s.tile); }
int TotalStages(int k) { return (k + kStageK - 1) / kStageK; }
int StagesPerSplit(const TileGemmShape& s) {
  return (TotalStages(s.k) + s.k_splits - 1) / s.k_splits;
}

template <typename T, int kTile, int kTileM, bool kStamps, bool kTma, bool kPdl>
cudaError_t LaunchTyped(const TileGemmParams& params, dim3 grid, cudaStream_t stream) {
  const auto kernel = TileGemmKernel<T, kTile, kTileM, kStamps, kTma, kPdl>;
  // The TMA instances align their stages themselves (kSwizzleAlignment): the slack.
  constexpr int kSmem = kStages * (kTile + kTileM) * kRowBytes + (kTma ? kSwizzleAlignment : 0);
  // Past the 48 KB default: opt in once per instance (not a stream operation, so also
  // legal while a graph is being captured).
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (opt_in != cudaSuccess) return opt_in;
  // With S > 1 the CTAs of a tile wait for each other. A cooperative launch has the driver
  // make the whole grid resident at once, also when another launch (say a second GEMM on
  // another stream) holds SMs: without it two such grids could each hold half the SMs and
  // wait for the other half forever. A grid too large to be resident is an error, not a hang.
  return Launch(kernel, grid, params, stream, kPdl, /*cluster=*/0,
                /*cooperative=*/params.k_splits > 1, kSmem, kCtaThreads<kTma>);
}

// `pdl` is honoured by the TMA instances whose CTAs leave room for one of the next launch
// (64 x 64 and 64 x 128 tiles; see kPdl); the 128 x 128 tiles launch plain, which is what
// PDL relaxes.
template <int kTile, int kTileM, bool kTma>
cudaError_t LaunchForTile(bool bf16, bool stamps, bool pdl, const TileGemmParams& p, dim3 grid,
                          cudaStream_t stream) {
  using B = __nv_bfloat16;
  using H = __half;
  if constexpr (kTma && kTileM == 64) {
    if (pdl)
      return stamps ? LaunchTyped<B, kTile, kTileM, true, true, true>(p, grid, stream)
             : bf16 ? LaunchTyped<B, kTile, kTileM, false, true, true>(p, grid, stream)
                    : LaunchTyped<H, kTile, kTileM, false, true, true>(p, grid, stream);
  }
  return stamps ? LaunchTyped<B, kTile, kTileM, true, kTma, false>(p, grid, stream)
         : bf16 ? LaunchTyped<B, kTile, kTileM, false, kTma, false>(p, grid, stream)
                : LaunchTyped<H, kTile, kTileM, false, kTma, false>(p, grid, stream);
}

template <bool kTma>
cudaError_t LaunchForShape(bool bf16, bool stamps, bool pdl, const TileGemmShape& s,
                           const TileGemmParams& p, dim3 grid, cudaStream_t stream) {
  if (s.tile == 64) return LaunchForTile<64, 64, kTma>(bf16, stamps, pdl, p, grid, stream);
  if (TileM(s) == 64) return LaunchForTile<128, 64, kTma>(bf16, stamps, pdl, p, grid, stream);
  return LaunchForTile<128, 128, kTma>(bf16, stamps, pdl, p, grid, stream);
}

}  // namespace

int ChooseGemmTile(int m, int n, int k) {
  // 128-tiles read each byte once but their partials (64 KB a split) and their longer MMA
  // tail cost a fixed ~7 us; 64-tiles read A and B twice at 128 x 128 (mostly L2 hits) with
  // a quarter of those partials. H100, 128 x 128: 64-tiles 7.1 / 13.6 / 22.6 / 39.6 us at
  // K = 8k / 32k / 64k / 128k, 128-tiles 9.4 / 14.1 / 21.6 / 35.9. H200, with the 128-tiles'
  // interleaved stages: at K = 32k still 12.27 (64) against 12.94 us (128). Where 128 wins,
  // it takes 64 rows of A (ChooseGemmTileM).
  return m <= 64 || n <= 64 || k <= 32768 ? 64 : 128;
}

int ChooseGemmTileM(int m, int n, int k) {
  // 64 rows of A by 128 of B: A read once, B twice (by the two m-tiles of a split, the
  // second time from L2), half the 128-tile's partial at twice the splits, and two CTAs fit
  // a SM, so it launches under PDL. H100, per call under PDL in a graph, two rounds
  // (bench/RESULTS.md session 54): 128 x 128 x 65536 17.88 / 17.87 us against 20.86 / 21.30 (128 x
  // 128 tiles) and 18.73 / 19.04 (64-tiles); x131072 30.55 / 30.30 against 34.25 / 34.40 and 32.86
  // / 33.78. Its mainloop streams at HBM's pace with 1.5 us between the first and last CTA's end
  // where the 128-tiles' spread 5.4 us, and its tail after the mainloop is ~2.8 us against ~4.
  return ChooseGemmTile(m, n, k) == 128 ? 64 : 0;
}

int TileGemmSplits(int m, int n, int k, int tile, int sm_count, int tile_m) {
  const int tiles = Tiles(m, TileRowsOfA(tile, tile_m)) * Tiles(n, tile);
  const int total = TotalStages(k);
  int splits = std::max(1, sm_count / tiles);
  splits = std::min(splits, std::max(1, total / 2));
  const int per = (total + splits - 1) / splits;
  return (total + per - 1) / per;
}

size_t TileGemmZeroedBytes(const TileGemmShape& s) {
  return Align256(sizeof(unsigned) * kTileCounters * size_t(OutputTiles(s)));
}

size_t TileGemmWorkspaceBytes(const TileGemmShape& s) {
  // [split][tile][rows of A x rows of B]: whole tiles, ragged edges included.
  const size_t partials =
      s.k_splits > 1 ? sizeof(float) * size_t(s.k_splits) * OutputTiles(s) * s.tile * TileM(s) : 0;
  return TileGemmZeroedBytes(s) + Align256(partials);
}

bool TileGemmTmaSupported() { return CurrentDeviceIsSm90OrNewer(); }

int TileGemmCtas(const TileGemmShape& s) { return s.k_splits * OutputTiles(s); }

cudaError_t LaunchTileGemm(bool bf16, const TileGemmShape& s, const void* a, const void* b,
                           const float* bias, float* c, void* workspace, cudaStream_t stream,
                           unsigned long long* timeline) {
  const bool square = TileM(s) == s.tile;
  if ((s.tile != 64 && s.tile != 128) || !(square || (s.tile == 128 && TileM(s) == 64)))
    return cudaErrorInvalidValue;
  if (timeline != nullptr && !bf16) return cudaErrorInvalidValue;  // diagnostics: bf16 only
  TileGemmParams p = {};
  p.a = a;
  p.b = b;
  p.bias = bias;
  p.c = c;
  p.m = s.m;
  p.n = s.n;
  p.k = s.k;
  p.k_splits = s.k_splits;
  p.total_stages = TotalStages(s.k);
  p.stages_per_split = StagesPerSplit(s);
  // Every split must own at least one stage (TileGemmSplits guarantees it).
  if ((s.k_splits - 1) * p.stages_per_split >= p.total_stages) return cudaErrorInvalidValue;
  p.timeline = timeline;
  p.counters = static_cast<unsigned*>(workspace);
  p.partials = reinterpret_cast<float*>(static_cast<char*>(workspace) + TileGemmZeroedBytes(s));
  const dim3 grid(s.k_splits, Tiles(s.n, s.tile), Tiles(s.m, TileM(s)));
  const bool stamps = timeline != nullptr;
  // L2 fetches 256 bytes a row where B's tile is 128 rows (those splits take every S-th
  // stage, so the other half is the neighbouring split's); the 64-tiles' contiguous ranges
  // measured 0.05-0.5 us faster without (H200, bench/NOTES.md session 38), as with cp.async.
  const bool promote = s.tile == 128;
  if (s.tma && TileGemmTmaSupported() && TensorMapAligned(a) && TensorMapAligned(b) &&
      EncodeSwizzledRowsMap(&p.map_a, a, s.m, s.k, TileM(s), promote) == cudaSuccess &&
      EncodeSwizzledRowsMap(&p.map_b, b, s.n, s.k, s.tile, promote) == cudaSuccess) {
    return LaunchForShape<true>(bf16, stamps, s.pdl, s, p, grid, stream);
  }
  // No PDL without the TMA (pre-sm_90, where it does not exist, or unaligned operands).
  return LaunchForShape<false>(bf16, stamps, false, s, p, grid, stream);
}

}  // namespace moe::cuda
