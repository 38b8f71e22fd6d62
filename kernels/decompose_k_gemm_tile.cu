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

#include "kernels/cuda_device.h"
#include "kernels/decompose_k_device.cuh"
#include "kernels/decompose_k_gemm_tile.h"
#include "kernels/pdl_device.cuh"
#include "kernels/staged_tile_device.cuh"
#include "kernels/tensor_map.h"
#include "kernels/tile_gemm_device.cuh"
#include "kernels/tma_device.cuh"

namespace moe::cuda {
namespace {

constexpr int kStageK = kTileStageK;
static_assert(kStageK == kTileGemmStageK, "the host's split checks count these stages");
constexpr int kRowBytes = kSwizzledRowBytes;
constexpr int kStages = 4;

// The TMA instances (sm_90+): one producer warp more, whose one thread issues each stage as
// two tensor-map tile copies completing on the stage's `full` mbarrier; the 8 MMA warps
// wait on it and release the stage through its `empty` mbarrier. No per-thread address
// math, no CTA barrier a stage.
template <bool kTma>
constexpr int kCtaThreads = kThreads + (kTma ? 32 : 0);

// Under PDL, the stages whose B boxes go before griddepcontrol.wait: a split's whole K
// range where it fits the 4 stages (the CTA then has only A left to wait for), else 2.
// With all 4 early on longer splits, the next launch's CTAs pulled B while this launch's
// last splits still streamed and reduced. H100, per call under PDL, same run, two rounds
// (bench/NOTES.md session 58), 2 early against 4: 64 x 64 x 131072 15.84 -> 15.48 us,
// 128 x 128 x 32768 11.03 -> 10.69, x131072 29.49 -> 29.08, 16 x 64 x 65536 7.49 -> 7.15,
// 64 x 256 x 65536 20.47 -> 19.98; but 64 x 64 x 32768 (4 stages a split) 6.19 -> 6.56.
// 1 early was no better.
__device__ __forceinline__ int EarlyStages(int count) { return count <= kStages ? count : 2; }

// kPdl (TMA instances of 64 rows of A, launched with Programmatic Dependent Launch): B is a
// constant (a model's weights), so the producer loads B's half of the first stages
// (EarlyStages) into shared memory before griddepcontrol.wait, while the previous launch
// still runs; A, the workspace and C only after the wait. Each CTA allows the next launch
// in once its mainloop is done: its CTAs (64 x 64: 65 KB, 93 registers; 64 x 128: 97 KB,
// 94) leave room for one of the next launch on their SM, which loads its B while this one
// reduces (L2 traffic only). H200: 0.3-1.0 us a call on every 64-tile row (bench/NOTES.md
// session 39); H100, 64 x 128 at 128 x 128 x 65536: 17.88 against 19.01 plain. The 128 x
// 128 tiles (129 KB, one a SM) launch plain: under PDL they were 0.5 us slower at K =
// 65536 and no faster at 131072, and cut to 3 stages and 112 registers, so that two fit a
// SM, ~3 us slower; prefetching more of B into L2 before the wait lost on every row.
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
  if constexpr (!kPdl) generation = ReadTileGeneration(p, tile);

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
        // Locals by value (the map by reference: it must stay in parameter space): captured by
        // reference, as IssueTileStages' argument, they changed ptxas' allocation (an 8-byte
        // spill in the 32-tile's PDL stamps instance, +2 registers in the square 128-tiles').
        auto load_half = [&p, stages, first, stride, m0, n0](int i, bool is_a) {
          const int buf = i % kStages;
          TmaLoad2d(stages + buf * kStageBytes + (is_a ? kTile * kRowBytes : 0),
                    is_a ? &p.map_a : &p.map_b, (first + i * stride) * kStageK, is_a ? m0 : n0,
                    &full[buf]);
        };
        IssueTileStages<kStages, kStageBytes, kPdl>(count, EarlyStages(count), full, empty,
                                                    load_half);
      }
      __syncwarp();
      if constexpr (kPdl) AllowDependentLaunch();
    } else {
      // Nothing of the previous kernel's is read before the partials and C are written, but
      // those writes (the same workspace and C) must not start before it has finished.
      if constexpr (kPdl) {
        WaitForPrerequisiteGrid();
        generation = ReadTileGeneration(p, tile);
      }
      ConsumeTileStages<kStages, kStageBytes, kStamps>(
          p, stages, 0, 1, count, full, empty,
          [&](const uint8_t* buf) { multiply_stage(buf, acc); });
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

  // This CTA's slice of the tile (SumTileSlice), each float4 f mapped back to the fragment
  // it came from (the store above), then to C's row and column as in the one-split path.
  SumTileSlice<kTileVec>(
      p, tile, split, producer, warp_sums,
      [&](int fv) { return fragment_in(fv / kNT / 2, fv / kNT % 2, fv % kNT); },
      [&](int f, float4 total) {
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
      });
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

int ChooseFewRowGemmTile(int m, int n, int k) {
  // H100, per call under PDL in a graph, us (bench/RESULTS.md session 57), against what
  // the heuristic ran before (64-tiles, or the router kernels at 8 rows or fewer and past
  // K = 65536 at 9-16):
  // - 16-tiles where they make one output tile: 16 x 16 x 8192 / 32768 / 65536 / 131072
  //   3.52 / 4.03 / 4.71 / 5.74 against 3.83 / 4.78 / 6.58 / 8.85, 1 x 16 x 131072 5.29 /
  //   6.29, 1 x 8 x 8192 3.26 / 4.60, 8 x 8 x 65536 4.28 / 5.34, 4 x 16 x 32768 3.96 / 5.09;
  //   and two or three up to K = 65536: 12 x 40 x 65536 6.47 / 6.88, 1 x 48 x 32768 4.88 /
  //   5.26, 16 x 48 x 16384 4.14 / 4.42. Not three past that (2 x 40 x 131072 9.58 against
  //   the router kernels' 7.55: 44 splits a tile, each 47 stages long), nor more (16 x 128 x
  //   65536 12.15 against 11.58, 32 x 32 x 131072 11.55 against 10.97: each tile reads the
  //   other operand again).
  // - 32-tiles from K = 65536 where the smaller operand has 9-32 rows and the larger at most
  //   32 or 65-256: 32 x 32 x 65536 / 131072 6.86 / 9.92 against 7.04 / 10.97, 24 x 24 x
  //   131072 8.43 / 9.83, 16 x 256 x 65536 17.55 / 18.78, 32 x 256 x 65536 18.14 / 19.22,
  //   32 x 128 x 65536 11.83 / 12.14, 16 x 128 x 65536 11.46 / 11.58, 9 x 100 x 131072 15.5 /
  //   17.3. At 33-64 the 64-tile holds the larger operand in one tile: 16 x 64 x 65536 8.05
  //   against 7.49 (32 x 64 x 131072 13.0 against 13.3). Not below K = 65536 (32 x 32 x 8192
  //   / 32768 4.03 / 5.49 against 3.94 / 5.20), nor at 64 rows (64 x 64 x 131072 17.52
  //   against 16.10) or 4 x 256 x 16384 (7.66 against the router kernels' 7.02).
  const int tiles16 = Tiles(m, 16) * Tiles(n, 16);
  if (tiles16 == 1 || (tiles16 <= 3 && k <= 65536)) return 16;
  const int lo = std::min(m, n), hi = std::max(m, n);
  if (lo > 8 && lo <= 32 && (hi <= 32 || (hi > 64 && hi <= 256)) && k >= 65536) return 32;
  return 0;
}

namespace {

// About `wanted` splits of `total` K stages, at most half as many as stages where there
// are two, adjusted so that no split is empty.
int EvenSplits(int total, int wanted) {
  const int splits = std::min(std::max(1, wanted), std::max(1, total / 2));
  const int per = (total + splits - 1) / splits;
  return (total + per - 1) / per;
}

// The calling thread's current device's SMs.
cudaError_t CurrentDeviceSmCount(int* sm_count) {
  int device = 0;
  const cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  return cudaDeviceGetAttribute(sm_count, cudaDevAttrMultiProcessorCount, device);
}

}  // namespace

int TileGemmSplits(int m, int n, int k, int tile, int sm_count, int tile_m) {
  const int tiles = Tiles(m, TileRowsOfA(tile, tile_m)) * Tiles(n, tile);
  return EvenSplits(TotalStages(k), sm_count / tiles);
}

size_t TileGemmZeroedBytes(const TileGemmShape& s) {
  return Align256(sizeof(unsigned) * kTileCounters * size_t(OutputTiles(s)));
}

namespace {

// The 64-tile shape a 16- or 32-row tile's launch falls back to (no TMA, or operands not
// 16-byte aligned; the heuristic picks few-row tiles only where the TMA runs, and the C ABI
// refuses unaligned operands): about as many CTAs as the few-row grid, at most the
// device's SMs (as TileGemmSplits: they meet at a barrier) and FallbackCtaCap. Not the
// few-row splits: at 100 x 300 x 20000 16-tiles take S = 1, and one 64-tile CTA summing
// 20000 products was 2.4e-5 from a double reference where the tests hold C to 1e-5.
constexpr int kMaxFallbackCtas = 1024;
int FallbackCtaCap(const TileGemmShape& s) { return std::min(TileGemmCtas(s), kMaxFallbackCtas); }
TileGemmShape FallbackFromFewRows(TileGemmShape s, int sm_count) {
  const int ctas = std::min(FallbackCtaCap(s), sm_count);
  s.tile = 64;
  s.tile_m = 0;
  s.k_splits = EvenSplits(TotalStages(s.k), ctas / OutputTiles(s));
  return s;
}

size_t PartialsBytes(const TileGemmShape& s) {
  // [split][tile][rows of A x rows of B]: whole tiles, ragged edges included.
  return s.k_splits > 1 ? sizeof(float) * size_t(s.k_splits) * OutputTiles(s) * s.tile * TileM(s)
                        : 0;
}

}  // namespace

size_t TileGemmWorkspaceBytes(const TileGemmShape& s) {
  // Few-row tiles: room for their fallback's partials too, at most FallbackCtaCap 64-tiles
  // (with two splits or more its splits times tiles are at most that; its counters are a
  // prefix of the few-row tiles': a 64-tile covers at least as much as each smaller one).
  const size_t fallback = sizeof(float) * 64 * 64 * size_t(FallbackCtaCap(s));
  const size_t partials = s.tile < 64 ? std::max(PartialsBytes(s), fallback) : PartialsBytes(s);
  return TileGemmZeroedBytes(s) + Align256(partials);
}

bool TileGemmTmaSupported() { return CurrentDeviceIsSm90OrNewer(); }

int TileGemmCtas(const TileGemmShape& s) { return s.k_splits * OutputTiles(s); }

cudaError_t LaunchTileGemm(bool bf16, TileGemmShape s, const void* a, const void* b,
                           const float* bias, float* c, void* workspace, cudaStream_t stream,
                           unsigned long long* timeline) {
  const bool square = TileM(s) == s.tile;
  const bool few_rows = s.tile == 16 || s.tile == 32;
  if ((s.tile != 64 && s.tile != 128 && !few_rows) ||
      !(square || (s.tile == 128 && TileM(s) == 64)))
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
  // After the counters of `s` also where a few-row tile falls back to 64-tiles (fewer).
  p.partials = reinterpret_cast<float*>(static_cast<char*>(workspace) + TileGemmZeroedBytes(s));
  const bool stamps = timeline != nullptr;
  if (few_rows) {
    if (s.tma && TileGemmTmaSupported() && TensorMapAligned(a) && TensorMapAligned(b) &&
        EncodeSwizzledRowsMap(&p.map_a, a, s.m, s.k, s.tile, /*promote_256=*/false) ==
            cudaSuccess &&
        EncodeSwizzledRowsMap(&p.map_b, b, s.n, s.k, s.tile, /*promote_256=*/false) ==
            cudaSuccess) {
      const dim3 grid(s.k_splits, Tiles(s.n, s.tile), Tiles(s.m, s.tile));
      return LaunchFewRowTileGemm(bf16, stamps, s.pdl, s.tile, p, grid, stream);
    }
    int sm_count = 0;
    const cudaError_t err = CurrentDeviceSmCount(&sm_count);
    if (err != cudaSuccess) return err;
    s = FallbackFromFewRows(s, sm_count);
    p.k_splits = s.k_splits;
    p.stages_per_split = StagesPerSplit(s);
  }
  const dim3 grid(s.k_splits, Tiles(s.n, s.tile), Tiles(s.m, TileM(s)));
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
