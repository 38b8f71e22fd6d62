// Internal: the staged-tile Decompose-K GEMM (decompose_k_gemm_tile.cu), which
// LaunchDecomposeKGemm runs for bf16/fp16 past 16 rows of A, at 9-16 up to K = 65536, and
// where the few-row tiles apply (ChooseGemmConfig says why). The router kernels' CTA tile
// (32 rows of B x up to 32 of A, operands straight from global memory into registers) reads
// A once per 32 rows of B and B once per 32 rows of A: 4x the bytes at 128 x 128. Here a
// CTA stages a 64- or 128-square tile of both operands through shared memory: an operand
// is read once per 64 or 128 rows of the other. On sm_90+ the GEMMs of few rows take 16- or
// 32-square tiles (decompose_k_gemm_few_rows.cu, ChooseFewRowGemmTile), whose stages hold
// the tile's rows only, so a SM has 4x the real bytes in flight.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace moe::cuda {

struct TileGemmShape {
  int m = 0, n = 0, k = 0;
  // CTA tile edge: 64 or 128, or 16 or 32 (square few-row tiles, decompose_k_gemm_few_rows.cu:
  // their warps take turns at deeper stages of the tile's rows only; sm_90+ with 16-byte
  // aligned operands, else the launch runs 64-tiles with the same splits)
  int tile = 128;
  int k_splits = 1;  // S: CTAs that share one output tile's K range
  // Stages loaded by the TMA (tensor-map tile copies from a producer warp, mbarriers)
  // instead of cp.async from every thread. Honoured where TileGemmTmaSupported() and both
  // operands are 16-byte aligned; otherwise the launch uses cp.async. Same bits either way.
  bool tma = false;
  // Launched with Programmatic Dependent Launch (64-tile TMA launches; the others launch
  // plain, which measured as fast or faster): B is a constant (not written by the kernel
  // before on the stream), so each CTA loads its first stages of B while the previous
  // kernel finishes; A, the workspace and C only after griddepcontrol.wait. The CTAs let
  // the next launch in once their mainloop is done, so its CTAs start, and read B, on the
  // SMs' second slot while this launch reduces its splits.
  bool pdl = false;
  // Rows of A a CTA tile covers: 0 for `tile` (square tiles), or 64 with tile = 128: a
  // 64 x 128 tile (64 rows of A by 128 of B), whose partial is half a 128-tile's at twice
  // the splits, for the 128 x 128 GEMMs whose split-K tail (partials through L2) is the
  // 128-tiles' loss.
  int tile_m = 0;
};

// Hidden elements (K) a stage of the staged-tile GEMM covers: a split owns whole stages.
inline constexpr int kTileGemmStageK = 64;

// Rows of A a CTA tile covers, from its rows of B and TileGemmShape::tile_m (0: square).
inline int TileRowsOfA(int tile, int tile_m) { return tile_m != 0 ? tile_m : tile; }

// Whether this device runs the TMA loads (sm_90+).
bool TileGemmTmaSupported();

// The tile edge along B: 128 past 64 rows of both A and B and 32768 of K, else 64.
int ChooseGemmTile(int m, int n, int k);
// Rows of A of that tile (TileGemmShape::tile_m): 64 where ChooseGemmTile is 128 (a 64 x
// 128 tile), else 0 (square).
int ChooseGemmTileM(int m, int n, int k);

// The few-row tile edge (16 or 32) for a shape on a device that runs the TMA, or 0 where
// the 64-tiles or the router kernels do better (decompose_k_gemm_tile.cu has the
// measurements).
int ChooseFewRowGemmTile(int m, int n, int k);

// S for a shape: about one CTA per SM over all output tiles (every CTA of a tile must be
// resident at once: they meet at a barrier), at least two 64-wide K stages each. Adjusted
// so that no split is empty.
int TileGemmSplits(int m, int n, int k, int tile, int sm_count, int tile_m = 0);

size_t TileGemmWorkspaceBytes(const TileGemmShape& s);
size_t TileGemmZeroedBytes(const TileGemmShape& s);  // counters: zero before the first launch

// Diagnostics (router_bench --gemm_timeline, never in service): when LaunchTileGemm gets a
// timeline (bf16 only), thread 0 of every CTA writes the globaltimer (ns) at each of these
// points into timeline[cta * kGemmStampSlots + slot], cta = (z * gridDim.y + y) *
// gridDim.x + x.
enum GemmStampSlot {
  kGemmStampStart,       // the CTA began
  kGemmStampFirstStage,  // its first K stage landed in shared memory
  kGemmStampMainloop,    // every warp's MMAs done (S > 1)
  kGemmStampPartial,     // its partial tile stored (S > 1)
  kGemmStampBarrier,     // the tile's S CTAs met (S > 1)
  kGemmStampEnd,         // its part of C written
  kGemmStampSlots
};

// C[m, n] = A[m, k] · B[n, k]ᵀ (+ bias[n]); bf16 (`bf16`) or fp16 operands, fp32 C. Under
// PDL (s.pdl) only B must be a constant; the bias is read after the wait.
cudaError_t LaunchTileGemm(bool bf16, TileGemmShape s, const void* a, const void* b,
                           const float* bias, float* c, void* workspace, cudaStream_t stream,
                           unsigned long long* timeline = nullptr);

// The CTAs of LaunchTileGemm's grid for `s` (the timeline's entries / kGemmStampSlots).
int TileGemmCtas(const TileGemmShape& s);

}  // namespace moe::cuda
