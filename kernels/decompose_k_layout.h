// Internal: the geometry of a launch of the Decompose-K router kernels, shared by the
// launchers (decompose_k_router.cu), the config heuristic and rules (decompose_k_config.cc)
// and the workspace layout (decompose_k_layout.cc): the kernels' fixed tile sizes, a
// problem's shape, and a config's grid and workspace. Host code (the tile constants are the
// device code's too); stateless.
#pragma once

#include <algorithm>
#include <cstddef>

#include "kernels/cublaslt_gemm.h"
#include "kernels/decompose_k_cluster.h"
#include "kernels/decompose_k_gemm_tile.h"
#include "kernels/decompose_k_polled.h"
#include "kernels/decompose_k_router.h"
#include "kernels/decompose_k_staged.h"
#include "kernels/dtype.h"

namespace moe::cuda {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockExperts = 32;  // experts per CTA (two m16 tiles)
constexpr int kStepK = 32;         // hidden elements per warp step (4 lanes x 8)
constexpr int kMaxChunk = 32;      // tokens per CTA (NT = 4)
// K steps a warp of the tensor-core mainloop loads at once (one unrolled pass): a warp's
// first pass of weights is what it loads before griddepcontrol.wait. (A plain constexpr
// function in device code too: the kernels are compiled with --expt-relaxed-constexpr.)
constexpr int TensorCoreUnrollSteps(int token_tiles) { return token_tiles <= 2 ? 4 : 2; }
// The polled kernel's two-token-tile instances also come with a pass of 2 K steps, launched
// where a warp's K range is at most that (TensorCorePassSteps): a pass of 4 there loads and
// multiplies two steps of zeros and keeps twice the weight registers live. H200, session 49:
// a pass of 2 at two tiles took 0.23-0.35 us off the 16-token rows of the 128-expert routers
// (two steps a warp) but, for every split count, cost DeepSeek-V3 and Kimi K2 0.27 and 1.38
// (their warps' K ranges then need twice the splits to fit one pass); bench/NOTES.md.
constexpr int kShortPassSteps = 2;
constexpr int TensorCorePassSteps(int token_tiles, int steps_per_warp) {
  return token_tiles == 2 && steps_per_warp <= kShortPassSteps ? kShortPassSteps
                                                               : TensorCoreUnrollSteps(token_tiles);
}

// A routing problem or a general GEMM as the kernels see it: tokens (the GEMM's M),
// experts (N) and the hidden size K.
struct DecomposeKShape {
  int tokens, experts, K;
  DType x_dtype, w_dtype;
};

inline DecomposeKShape RouteShape(const RouteProblem& p) {
  return {p.tokens, p.spec.experts, p.spec.hidden, p.hidden_dtype, p.weight_dtype};
}
inline DecomposeKShape GemmShape(const GemmProblem& p) { return {p.m, p.n, p.k, p.dtype, p.dtype}; }

// 32-expert blocks (m-blocks) covering the experts.
inline int ExpertBlocks(const DecomposeKShape& s) {
  return (s.experts + kBlockExperts - 1) / kBlockExperts;
}

// Tokens of one chunk (a grid row).
inline int ChunkTokens(const DecomposeKConfig& c) {
  if (c.staged) return kStagedTileTokens;
  return c.mainloop == Mainloop::kFma ? 8 : 8 * c.token_tiles;
}

inline int StagedTotalStages(const DecomposeKShape& s) {
  return (s.K + kStagedStageK - 1) / kStagedStageK;
}
inline int StagedStagesPerSplit(const DecomposeKShape& s, int splits) {
  return (StagedTotalStages(s) + splits - 1) / splits;
}
inline int StagedExpertTiles(const DecomposeKShape& s) {
  return (s.experts + kStagedTileExperts - 1) / kStagedTileExperts;
}

// A config's grid and workspace for a shape. The workspace: arrival counters (and the
// two-level arrival's group counters), then fp32 partials, group partials and logits.
struct DecomposeKLayout {
  int m_blocks, z_chunks, chunk, total_steps, steps_per_warp;
  int split_group, groups;  // two-level arrival; groups = 1 without
  size_t group_counters_offset, group_partials_offset, group_partials_bytes;
  size_t counters_bytes, partials_offset, partials_bytes, logits_offset, logits_bytes, total;
  size_t zeroed_bytes;  // the prefix that must be zero before the first launch
};

DecomposeKLayout MakeLayout(const DecomposeKShape& s, const DecomposeKConfig& c);

// Dedicated router CTAs of a polled launch, per chunk: one for each of a chunk's tokens.
inline int DedicatedRouterCtas(const DecomposeKShape& s, const DecomposeKConfig& c,
                               const DecomposeKLayout& l) {
  return c.polled && c.dedicated_routers ? std::min(l.chunk, s.tokens) : 0;
}

// CTAs in a grid row: the mainloop CTAs and any dedicated routers.
inline int GridRowCtas(const DecomposeKShape& s, const DecomposeKConfig& c,
                       const DecomposeKLayout& l) {
  if (c.staged) return StagedExpertTiles(s) * c.k_splits;
  return l.m_blocks * c.k_splits + DedicatedRouterCtas(s, c, l);
}
inline int GridCtas(const DecomposeKShape& s, const DecomposeKConfig& c,
                    const DecomposeKLayout& l) {
  return GridRowCtas(s, c, l) * l.z_chunks;
}

// Tokens a router CTA of a polled config without dedicated routers gathers and routes:
// spread over the row's CTAs (PolledTokensPerRouter), or two with the staged router pairs
// (whose rows the config checks keep to at least half a chunk's tokens in CTAs).
inline int RouterCtaTokens(const DecomposeKShape& s, const DecomposeKConfig& c,
                           const DecomposeKLayout& l) {
  if (c.staged && c.staged_router_pairs) return 2;
  return PolledTokensPerRouter(std::min(l.chunk, s.tokens), GridRowCtas(s, c, l));
}

// Whether a routing launch of this cluster config runs the kernel whose rank 0 routes
// (DecomposeKClusterRouterKernel): 8-token chunks, at most kClusterRouterMaxBlocks expert
// blocks. Its clusters then span every expert block: m_blocks * k_splits CTAs.
inline bool RankZeroRoutes(const DecomposeKShape& s, const DecomposeKConfig& c) {
  return c.cluster > 0 && c.token_tiles == 1 && ExpertBlocks(s) <= kClusterRouterMaxBlocks;
}

// The staged-tile GEMM's shape for a config (gemm_tile != 0).
inline TileGemmShape TileShape(const GemmProblem& p, const DecomposeKConfig& c) {
  TileGemmShape s{p.m, p.n, p.k, c.gemm_tile, c.k_splits, c.gemm_tma};
  s.tile_m = c.gemm_tile_m;
  return s;
}

// A route_after_gemm config's GEMM: logits[tokens, experts] = hidden · weightᵀ.
inline GemmProblem RouterGemmProblem(const RouteProblem& p) {
  return {p.tokens, p.spec.experts, p.spec.hidden, p.hidden_dtype};
}

// A route_after_gemm config's workspace. The tile GEMM's: its own (zeroed counters first),
// then the logits at this offset. cuBLASLt's: the logits first, then cuBLASLt's workspace
// from RouteAfterCublasLtOffset (decompose_k_router.h) to the end.
inline size_t RouteAfterGemmLogitsOffset(const RouteProblem& p, const DecomposeKConfig& c) {
  if (c.gemm_cublas) return 0;
  return (TileGemmWorkspaceBytes(TileShape(RouterGemmProblem(p), c)) + 255) / 256 * 256;
}

}  // namespace moe::cuda
