// Staged-tile Decompose-K GEMM for few rows: C[m, n] = A[m, k] · B[n, k]ᵀ (+ bias) with a
// 16 x 16 or 32 x 32 CTA tile (TileGemmShape::tile 16 or 32), sm_90+ (TMA) only.
//
// Why. A 64-tile CTA (decompose_k_gemm_tile.cu) over a GEMM of 16 rows holds 4 stages of
// 16 KB in shared memory of which 4 KB are real rows (the TMA fills the rest with zeros),
// and its 8 warps multiply every stage together: 16 KB of real bytes in flight a SM, so a
// split's stream is a chain of HBM round trips (H100, 16 x 16 x K: fewer, longer splits were
// slower at every K; bench/NOTES.md session 55). Here a stage is the tile's rows only (2 x
// 16 or 2 x 32 rows of 128 bytes, 4 or 8 KB) and there are kFewRowStages of them, so 64 or
// 128 KB of real rows are in flight a SM: at 16 x 16 x 131072 a split's whole K range.
//
// Grid = (S, n tiles, m tiles), as the 64-tiles. A producer warp issues stage i (two
// tensor-map boxes of `tile` rows, 128-byte swizzle) into buffer i % kFewRowStages; the 8
// MMA warps take turns: warp w multiplies stages w, w + 8, ... (buffer b always belongs to
// warp b % 8, which releases it through its `empty` mbarrier), each into its own
// accumulators (mma.sync m16n8k16, B rows as the MMA's M, the K permutation and staged-row
// order of the other tiles). The 8 warps' accumulators are then added in warp order
// through shared memory (deterministic), and the split reduction is the 64-tiles' (the
// partial straight from the summed fragments, the tile barrier, a 1/S slice of the tile
// each; tile_gemm_device.cuh).
//
// Programmatic Dependent Launch (TileGemmShape::pdl): B's boxes of the first stages before
// griddepcontrol.wait, as the 64-tiles do (all 16 for 16-tiles, 4 for 32-tiles:
// kEarlyStages); the CTAs (64 or 128 KB of stages) leave room for one of the next launch
// on their SM at 16 rows.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/tile_gemm_device.cuh"

namespace moe::cuda {
namespace {

constexpr int kRowBytes = kSwizzledRowBytes;
constexpr int kCtaThreads = kThreads + 32;  // 8 MMA warps and the producer warp

// Stages in flight: 16 whatever the tile (64 KB at 16 rows, 128 KB at 32), a multiple of
// the 8 MMA warps so that each buffer has one owner.
constexpr int kFewRowStages = 16;
static_assert(kFewRowStages % kWarps == 0, "a buffer belongs to one MMA warp");

template <int kEdge>
constexpr int kFewRowStageBytes = 2 * kEdge* kRowBytes;  // B's rows, then A's

// Under PDL, the stages whose B boxes are issued before griddepcontrol.wait: all 16 for
// 16-tiles, 4 for 32-tiles. A 32-tile CTA (128 KB of stages) has its SM to itself, and
// with all 16 early (64 KB of B each, 8 MB over 32 x 32 x 131072's grid) the next
// launch's CTAs pulled B while this launch's last splits were still streaming and reducing.
// H100, per call under PDL, same run, two rounds (bench/NOTES.md session 58): 4 early
// stages took 32 x 32 x 131072 9.77 -> 9.55 us, 24 x 24 x 131072 8.38 -> 8.08, 9 x 100 x
// 131072 15.23 -> 14.42, 32 x 256 x 65536 18.10 -> 17.12; 2 or 8 no better. 16-tiles lost
// 0.33 us at 16 x 16 x 131072 with 4 (a split's whole K range is 16 stages there) and
// 0.15 with 8.
template <int kEdge>
constexpr int kEarlyStages = kEdge == 16 ? kFewRowStages : 4;

template <int kEdge>
constexpr int kFewRowSmem = kFewRowStages* kFewRowStageBytes<kEdge> + kSwizzleAlignment;

// kEdge: rows of A and of B a CTA tile covers (16 or 32).
template <typename T, int kEdge, bool kStamps, bool kPdl>
__global__ void __launch_bounds__(kCtaThreads, kPdl ? 2 : 1)
    FewRowTileGemmKernel(const __grid_constant__ TileGemmParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  __trap();  // launched only on sm_90+ (TileGemmTmaSupported)
#else
  constexpr int kMT = kEdge / 16;  // m16 MMA tiles over the tile's rows of B
  constexpr int kNT = kEdge / 8;   // n8 MMA tiles over its rows of A
  constexpr int kFragments = kMT * kNT;
  constexpr int kTileVec = kFragments * 32;  // float4s a tile
  static_assert(kTileVec * 4 == kEdge * kEdge && kTileVec <= kThreads, "a float4 a thread");
  constexpr int kStageBytes = kFewRowStageBytes<kEdge>;
  static_assert(kWarps * kTileVec * int(sizeof(float4)) <= kFewRowStages * kStageBytes,
                "the warps' sums fit the stages");
  extern __shared__ __align__(128) uint8_t dynamic_smem[];
  // The TMA's swizzled stages start kSwizzleAlignment-aligned (the launch allocates the
  // slack).
  uint8_t* const stages =
      dynamic_smem +
      ((kSwizzleAlignment - SharedAddress(dynamic_smem) % kSwizzleAlignment) % kSwizzleAlignment);
  __shared__ float4 warp_sums[kWarps][32];
  __shared__ alignas(8) uint64_t full[kFewRowStages], empty[kFewRowStages];
  GemmStamp<kStamps>(p, kGemmStampStart);
  const int split = blockIdx.x, n0 = blockIdx.y * kEdge, m0 = blockIdx.z * kEdge;
  const size_t tile = size_t(blockIdx.z) * gridDim.y + blockIdx.y;
  unsigned generation = 0;
  if constexpr (!kPdl) generation = ReadTileGeneration(p, tile);

  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const bool producer = warp == kWarps;
  // Fragment fv = mt * kNT + nt holds real rows of A (8-row groups) and of B (16-row).
  const auto fragment_in = [&p, m0, n0](int fv) {
    return fv % kNT < (p.m - m0 + 7) / 8 && fv / kNT < (p.n - n0 + 15) / 16;
  };
  // A contiguous range of K stages a split, as the 64-tiles.
  const int first = split * p.stages_per_split;
  const int count = min(p.stages_per_split, p.total_stages - first);

  // One stage's two 32-wide K steps into this warp's accumulators.
  auto multiply_stage = [&](const uint8_t* buf, float(&acc)[kMT][kNT][4]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint4 a[2 * kMT];  // B rows g, g + 8, ... of the tile
#pragma unroll
      for (int r = 0; r < 2 * kMT; ++r)
        a[r] = LoadShared16(buf + StagedChunkOffset<true>(StagedRow<true>(g) + 8 * r, 4 * h + t));
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        const uint4 b = LoadShared16(
            buf + StagedChunkOffset<true>(kEdge + nt * 8 + StagedRow<true>(g), 4 * h + t));
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          const uint4 lo = a[2 * mt], hi = a[2 * mt + 1];
          Mma<T>(acc[mt][nt], lo.x, hi.x, lo.y, hi.y, b.x, b.y);
          Mma<T>(acc[mt][nt], lo.z, hi.z, lo.w, hi.w, b.z, b.w);
        }
      }
    }
  };

  if (threadIdx.x == 0) {
    for (int s = 0; s < kFewRowStages; ++s) {
      MbarrierInit(&full[s], 1);
      MbarrierInit(&empty[s], 1);
    }
    FenceMbarrierInit();
  }
  __syncthreads();
  float acc[kMT][kNT][4] = {};
  if (producer) {
    if (lane == 0) {
      PrefetchTensorMap(&p.map_a);
      PrefetchTensorMap(&p.map_b);
      // Locals by value (the map by reference: it must stay in parameter space): captured by
      // reference, as IssueTileStages' argument, they changed ptxas' allocation (an 8-byte
      // spill in the 32-tile's PDL stamps instance, +2 registers in the square 128-tiles').
      auto load_half = [&p, stages, first, m0, n0](int i, bool is_a) {
        const int buf = i % kFewRowStages;
        TmaLoad2d(stages + buf * kStageBytes + (is_a ? kEdge * kRowBytes : 0),
                  is_a ? &p.map_a : &p.map_b, (first + i) * kTileStageK, is_a ? m0 : n0,
                  &full[buf]);
      };
      IssueTileStages<kFewRowStages, kStageBytes, kPdl>(count, kEarlyStages<kEdge>, full, empty,
                                                        load_half);
    }
    __syncwarp();
    if constexpr (kPdl) AllowDependentLaunch();
  } else {
    // Nothing of the previous kernel's is read before the partials and C are written, but
    // those writes must not start before it has finished.
    if constexpr (kPdl) {
      WaitForPrerequisiteGrid();
      generation = ReadTileGeneration(p, tile);
    }
    // Warp w multiplies stages w, w + 8, ... into its own accumulators.
    ConsumeTileStages<kFewRowStages, kStageBytes, kStamps>(
        p, stages, warp, kWarps, count, full, empty,
        [&](const uint8_t* buf) { multiply_stage(buf, acc); });
    if constexpr (kPdl) AllowDependentLaunch();  // the next launch may stream B meanwhile
  }

  // The warps' accumulators, added in warp order through the stages' shared memory (every
  // stage issued has been multiplied once the MMA warps meet): thread f < kTileVec sums
  // float4 f = fragment f / 32, lane f % 32, into `tile_sum`.
  float4* const sums = reinterpret_cast<float4*>(stages);  // [warp][fragment][lane]
  constexpr int kMmaThreads = kThreads;
  if (!producer) {
    asm volatile("bar.sync 1, %0;" ::"n"(kMmaThreads) : "memory");
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
        sums[(warp * kFragments + mt * kNT + nt) * 32 + lane] =
            make_float4(acc[mt][nt][0], acc[mt][nt][1], acc[mt][nt][2], acc[mt][nt][3]);
    asm volatile("bar.sync 1, %0;" ::"n"(kMmaThreads) : "memory");
  }
  const int f = threadIdx.x;
  const bool sums_f = !producer && f < kTileVec && fragment_in(f / 32);
  float4 tile_sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (sums_f) {
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float4 x = sums[w * kTileVec + f];
      tile_sum.x += x.x;
      tile_sum.y += x.y;
      tile_sum.z += x.z;
      tile_sum.w += x.w;
    }
  }

  // Float4 f of the tile back to C's rows and columns (f = fragment * 32 + lane, fragment
  // = mt * kNT + nt, its four values in MMA register order).
  const int tm = min(kEdge, p.m - m0), tn = min(kEdge, p.n - n0);
  const auto write_c = [&](int fc, float4 total) {
    const float e[4] = {total.x, total.y, total.z, total.w};
    const int fv = fc / 32, fl = fc % 32, mt = fv / kNT, nt = fv % kNT;
    const int fg = fl >> 2, ft = fl & 3;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int col = mt * 16 + StagedRow<true>(fg) + (r >= 2 ? 8 : 0);
      const int row = nt * 8 + StagedRow<true>(2 * ft + (r & 1));
      if (row < tm && col < tn)
        p.c[size_t(m0 + row) * p.n + n0 + col] = e[r] + (p.bias ? p.bias[n0 + col] : 0.0f);
    }
  };
  if (p.k_splits == 1) {  // one split owns the whole K: C directly
    if (sums_f) write_c(f, tile_sum);
    GemmStamp<kStamps>(p, kGemmStampEnd);
    return;
  }

  GemmStamp<kStamps>(p, kGemmStampMainloop);
  const size_t tiles = size_t(gridDim.y) * gridDim.z;
  if (sums_f)
    reinterpret_cast<float4*>(p.partials)[(size_t(split) * tiles + tile) * kTileVec + f] = tile_sum;
  GemmStamp<kStamps>(p, kGemmStampPartial);
  TileBarrier(TileCounters(p, tile), generation, unsigned(p.k_splits));
  GemmStamp<kStamps>(p, kGemmStampBarrier);
  SumTileSlice<kTileVec>(p, tile, split, producer, warp_sums, fragment_in, write_c);
  GemmStamp<kStamps>(p, kGemmStampEnd);
#endif
}

template <typename T, int kEdge, bool kStamps, bool kPdl>
cudaError_t LaunchTyped(const TileGemmParams& params, dim3 grid, cudaStream_t stream) {
  const auto kernel = FewRowTileGemmKernel<T, kEdge, kStamps, kPdl>;
  constexpr int kSmem = kFewRowSmem<kEdge>;
  // Past the 48 KB default: opt in once per instance (not a stream operation, so also
  // legal while a graph is being captured).
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (opt_in != cudaSuccess) return opt_in;
  // The split CTAs of a tile wait for each other: cooperative, as LaunchTileGemm's.
  return Launch(kernel, grid, params, stream, kPdl, /*cluster=*/0,
                /*cooperative=*/params.k_splits > 1, kSmem, kCtaThreads);
}

template <int kEdge>
cudaError_t LaunchForEdge(bool bf16, bool stamps, bool pdl, const TileGemmParams& p, dim3 grid,
                          cudaStream_t stream) {
  using B = __nv_bfloat16;
  using H = __half;
  if (pdl)
    return stamps ? LaunchTyped<B, kEdge, true, true>(p, grid, stream)
           : bf16 ? LaunchTyped<B, kEdge, false, true>(p, grid, stream)
                  : LaunchTyped<H, kEdge, false, true>(p, grid, stream);
  return stamps ? LaunchTyped<B, kEdge, true, false>(p, grid, stream)
         : bf16 ? LaunchTyped<B, kEdge, false, false>(p, grid, stream)
                : LaunchTyped<H, kEdge, false, false>(p, grid, stream);
}

}  // namespace

cudaError_t LaunchFewRowTileGemm(bool bf16, bool stamps, bool pdl, int tile,
                                 const TileGemmParams& p, dim3 grid, cudaStream_t stream) {
  if (tile == 16) return LaunchForEdge<16>(bf16, stamps, pdl, p, grid, stream);
  if (tile == 32) return LaunchForEdge<32>(bf16, stamps, pdl, p, grid, stream);
  return cudaErrorInvalidValue;
}

}  // namespace moe::cuda
