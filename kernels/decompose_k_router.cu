// Fused Decompose-K router kernel.
//
// Problem: logits[t, e] = x[t, :] · W[e, :] for tokens t < T (1..256), experts e < E
// (1..512), hidden K (8..16384, multiple of 8), then the routing epilogue per token.
// W dominates the bytes (E·K·2 for bf16) and T is tiny, so the work is bound by reading W
// once; an ordinary GEMM tiling would give a few CTAs to the whole chip.
//
// Decomposition. Grid = (m_blocks · S, z_chunks). A CTA owns 32 experts (an m-block), one
// of S contiguous K ranges and one chunk of 8·NT tokens; its 8 warps split that K range
// again. Each warp streams its W rows with 16-byte loads and multiplies them on the tensor
// cores (mma.sync m16n8k16; experts are the MMA's M, tokens its N, so one token wastes
// 7/8 of an MMA but none of the bandwidth). K is permuted inside each 32-wide step so that
// every lane's four A/B fragment registers come from one 16-byte load (the dot product is
// invariant under a permutation of K applied to both operands).
//
// Reduction (last-CTA): warps reduce through shared memory; the CTA writes fp32 partials;
// the last of the S CTAs of an (m-block, chunk) — found with an arrival counter — sums the
// partials in a fixed order (deterministic), adds the router bias and writes the chunk's
// logits; the last m-block of a chunk runs the routing epilogue, one warp per token. Each
// last CTA resets its counter, so graph replays need no memset.
//
// Programmatic Dependent Launch: weights do not depend on the previous kernel, so the
// first weight loads are issued before griddepcontrol.wait; hidden states after it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/decompose_k_cluster.h"
#include "kernels/decompose_k_device.cuh"
#include "kernels/decompose_k_gemm_tile.h"
#include "kernels/decompose_k_polled.h"
#include "kernels/decompose_k_router.h"
#include "kernels/decompose_k_staged.h"

namespace moe::cuda {
namespace {

// Sums `count` partial tiles of 32 experts x kChunk floats, laid out one after another, in
// order (deterministic), into this thread's elements tid + e * kThreads. The loads of eight
// tiles for all of a thread's elements are in flight together: a dependent chain would cost
// one L2 round trip per tile.
template <int kChunk>
__device__ __forceinline__ void SumTiles(const float* tiles, int count,
                                         float (&sum)[kBlockExperts * kChunk / kThreads]) {
  constexpr int kPer = kBlockExperts * kChunk / kThreads;
  static_assert(kPer * kThreads == kBlockExperts * kChunk, "a tile is whole thread rows");
  constexpr size_t kTile = size_t(kBlockExperts) * kChunk;
#pragma unroll
  for (int e = 0; e < kPer; ++e) sum[e] = 0.0f;
  for (int t0 = 0; t0 < count; t0 += 8) {
    float v[8][kPer];
#pragma unroll
    for (int u = 0; u < 8; ++u)
#pragma unroll
      for (int e = 0; e < kPer; ++e)
        v[u][e] =
            t0 + u < count ? __ldcg(tiles + (t0 + u) * kTile + threadIdx.x + e * kThreads) : 0.0f;
#pragma unroll
    for (int u = 0; u < 8; ++u)
#pragma unroll
      for (int e = 0; e < kPer; ++e) sum[e] += v[u][e];
  }
}

// Sums the warps' accumulators; then, with S > 1, publishes the CTA's partials and
// returns whether this CTA is the last of its (m-block, chunk) to arrive; the last one
// leaves the chunk's summed logits in logits_ws. Every thread gets the same answer.
// With many splits the arrival is two-level (p.split_group): one CTA summing hundreds of
// partials is a serial tail of L2 round trips and of one SM's bandwidth; the last of each
// group sums the group's, the last group reducer sums the groups'.
template <int kChunk>
__device__ bool ReduceSplits(const KernelParams& p, SharedStorage& smem, int m_block, int split,
                             int z) {
  constexpr int kPer = kBlockExperts * kChunk / kThreads;
  constexpr size_t kTile = size_t(kBlockExperts) * kChunk;
  const int tid = threadIdx.x;
  const int epad = p.m_blocks * kBlockExperts;
  const size_t zm = size_t(z) * p.m_blocks + m_block;  // this CTA's (chunk, m-block)
  float* my_partials = p.partials + (zm * p.k_splits + split) * kTile;
  __syncthreads();
  for (int i = tid; i < kBlockExperts * kChunk; i += kThreads) {
    const float s = SumWarps<kChunk>(smem.reduce, i);
    if (p.k_splits == 1) {
      const int el = i / kChunk, n = i % kChunk;
      p.logits_ws[(size_t(z) * kChunk + n) * epad + m_block * kBlockExperts + el] = s;
    } else {
      my_partials[i] = s;
    }
  }
  if (p.k_splits == 1) {
    __syncthreads();
    return true;
  }
  float sum[kPer];
  if (p.split_group > 0) {
    const int groups = (p.k_splits + p.split_group - 1) / p.split_group;
    const int group = split / p.split_group, first = group * p.split_group;
    const int members = min(p.split_group, p.k_splits - first);
    if (!ArriveLast(p.group_counters + zm * groups + group, unsigned(members))) return false;
    SumTiles<kChunk>(p.partials + (zm * p.k_splits + first) * kTile, members, sum);
    float* group_sum = p.group_partials + (zm * groups + group) * kTile;
#pragma unroll
    for (int e = 0; e < kPer; ++e) group_sum[tid + e * kThreads] = sum[e];
    if (!ArriveLast(p.counters + zm, unsigned(groups))) return false;
    SumTiles<kChunk>(p.group_partials + zm * groups * kTile, groups, sum);
  } else {
    if (!ArriveLast(p.counters + zm, unsigned(p.k_splits))) return false;
    SumTiles<kChunk>(p.partials + zm * p.k_splits * kTile, p.k_splits, sum);
  }
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int i = tid + e * kThreads, el = i / kChunk, n = i % kChunk;
    p.logits_ws[(size_t(z) * kChunk + n) * epad + m_block * kBlockExperts + el] = sum[e];
  }
  __syncthreads();
  return true;
}

// After the split reduction: bias, then the last m-block of the chunk routes its tokens.
template <int kChunk>
__device__ void FinishChunk(const KernelParams& p, SharedStorage& smem, int m_block, int z) {
  AddBiasAndPublish<kChunk>(p, m_block, z);
  if (p.gemm_mode) return;
  if (p.m_blocks > 1) {
    if (!ArriveLast(p.counters + size_t(gridDim.y) * p.m_blocks + z, unsigned(p.m_blocks))) return;
  } else {
    __syncthreads();
  }
  Stamp(p, kStampArrived);
  RouteChunk<kChunk>(p, smem, z);
  __syncthreads();
  Stamp(p, kStampRouted);
}

// kRoute = false: the general GEMM's instance, without the routing epilogue's code and
// registers. Two CTAs per SM (<= 128 registers a thread): the routing epilogue runs once a
// launch and may spill a little; the mainloop runs everywhere and wants the occupancy.
template <typename T, int NT, bool kRoute>
__global__ void __launch_bounds__(kThreads, 2) DecomposeKTensorCoreKernel(const KernelParams p) {
  __shared__ SharedStorage smem;
  constexpr int kChunk = 8 * NT;
  const int m_block = blockIdx.x % p.m_blocks, split = blockIdx.x / p.m_blocks, z = blockIdx.y;
  AllowDependentLaunch();
  Stamp(p, kStampStart);
  PrefetchEpilogueInputs(p);
  float acc[2][NT][4] = {};
  TensorCoreMainloop<T, NT>(p, m_block, split, z * kChunk, acc);
  StoreAccumulators<NT>(smem.reduce, acc);
  __syncthreads();
  Stamp(p, kStampMainloop);
  if (!ReduceSplits<kChunk>(p, smem, m_block, split, z)) return;
  Stamp(p, kStampReduced);
  if constexpr (kRoute) {
    FinishChunk<kChunk>(p, smem, m_block, z);
  } else {
    AddBiasAndPublish<kChunk>(p, m_block, z);
  }
}

template <typename TX, typename TW>
__global__ void __launch_bounds__(kThreads, 2) DecomposeKFmaKernel(const KernelParams p) {
  __shared__ SharedStorage smem;
  const int m_block = blockIdx.x % p.m_blocks, split = blockIdx.x / p.m_blocks, z = blockIdx.y;
  AllowDependentLaunch();
  PrefetchEpilogueInputs(p);
  FmaMainloop<TX, TW>(p, m_block, split, z * 8, smem);
  if (!ReduceSplits<8>(p, smem, m_block, split, z)) return;
  FinishChunk<8>(p, smem, m_block, z);
}

// ---------------------------------------------------------------------------------------
// Host side.

struct Shape {
  int tokens, experts, K;
  DType x_dtype, w_dtype;
};

// 32-expert blocks (m-blocks) covering the experts.
int ExpertBlocks(const Shape& s) { return (s.experts + kBlockExperts - 1) / kBlockExperts; }

int ChunkTokens(const DecomposeKConfig& c) {
  if (c.staged) return kStagedTileTokens;
  return c.mainloop == Mainloop::kFma ? 8 : 8 * c.token_tiles;
}

int StagedTotalStages(const Shape& s) { return (s.K + kStagedStageK - 1) / kStagedStageK; }
int StagedStagesPerSplit(const Shape& s, int splits) {
  return (StagedTotalStages(s) + splits - 1) / splits;
}
int StagedExpertTiles(const Shape& s) {
  return (s.experts + kStagedTileExperts - 1) / kStagedTileExperts;
}

// Two-level split arrival (see ReduceSplits) past 24 splits, in groups of about sqrt(S) so
// that both levels sum about as many partials.
int SplitGroupSize(const DecomposeKConfig& c) {
  if (c.polled || c.cluster != 0 || c.k_splits <= 24) return 0;
  int g = 1;
  while (g * g < c.k_splits) ++g;
  return g;
}

struct Layout {
  int m_blocks, z_chunks, chunk, total_steps, steps_per_warp;
  int split_group, groups;  // two-level arrival; groups = 1 without
  size_t group_counters_offset, group_partials_offset, group_partials_bytes;
  size_t counters_bytes, partials_offset, partials_bytes, logits_offset, logits_bytes, total;
  size_t zeroed_bytes;  // the prefix that must be zero before the first launch
};

Layout MakeLayout(const Shape& s, const DecomposeKConfig& c) {
  Layout l;
  l.m_blocks = ExpertBlocks(s);
  l.chunk = ChunkTokens(c);
  l.z_chunks = (s.tokens + l.chunk - 1) / l.chunk;
  l.total_steps = (s.K + kStepK - 1) / kStepK;
  const int warps = c.k_splits * kWarps;
  l.steps_per_warp = (l.total_steps + warps - 1) / warps;
  l.split_group = SplitGroupSize(c);
  l.groups = l.split_group > 0 ? (c.k_splits + l.split_group - 1) / l.split_group : 1;
  auto align = [](size_t n) { return (n + 255) / 256 * 256; };
  const size_t zm = size_t(l.z_chunks) * l.m_blocks;
  l.group_counters_offset = sizeof(unsigned) * (zm + l.z_chunks);
  const size_t group_counters = l.split_group > 0 ? zm * l.groups : 0;
  l.counters_bytes = align(l.group_counters_offset + sizeof(unsigned) * group_counters);
  l.partials_offset = l.counters_bytes;
  // Partials: [z][m][s][32][chunk] (arrival counters) or [z][s][chunk][m * 32] (polled);
  // the same size.
  l.partials_bytes = (c.k_splits > 1 && c.cluster == 0) || c.polled
                         ? align(sizeof(float) * size_t(l.z_chunks) * l.m_blocks * c.k_splits *
                                 kBlockExperts * l.chunk)
                         : 0;
  l.group_partials_offset = l.partials_offset + l.partials_bytes;
  l.group_partials_bytes =
      l.split_group > 0 ? align(sizeof(float) * zm * l.groups * kBlockExperts * l.chunk) : 0;
  l.logits_offset = l.group_partials_offset + l.group_partials_bytes;
  l.logits_bytes = align(sizeof(float) * size_t(l.z_chunks) * l.chunk * l.m_blocks * kBlockExperts);
  l.total = l.logits_offset + l.logits_bytes;
  l.zeroed_bytes = c.polled ? l.logits_offset : l.counters_bytes;
  return l;
}

// The polled reduction's split count: about one CTA per SM, at least four K steps (half the
// warps busy) per CTA, and at most 32768 partials for each router CTA (counted for 8
// tokens, as if the grid row had fewer blocks than tokens) to read.
int PolledSplits(const Shape& s, int m_blocks, int z_chunks, int chunk, int sm_count) {
  const int total_steps = (s.K + kStepK - 1) / kStepK;
  const int tokens = std::min({s.tokens, chunk, kWarps});
  int splits = std::max(1, sm_count / (m_blocks * z_chunks));
  splits = std::min(splits, std::max(1, total_steps / 4));
  splits = std::min(splits, std::max(1, 32768 / (m_blocks * kBlockExperts * tokens)));
  return splits;
}

// Dedicated router CTAs of a polled launch, per chunk: one for each of a chunk's tokens.
int DedicatedRouterCtas(const Shape& s, const DecomposeKConfig& c, const Layout& l) {
  return c.polled && c.dedicated_routers ? std::min(l.chunk, s.tokens) : 0;
}

// CTAs in a grid row: the mainloop CTAs and any dedicated routers.
int GridRowCtas(const Shape& s, const DecomposeKConfig& c, const Layout& l) {
  if (c.staged) return StagedExpertTiles(s) * c.k_splits;
  return l.m_blocks * c.k_splits + DedicatedRouterCtas(s, c, l);
}
int GridCtas(const Shape& s, const DecomposeKConfig& c, const Layout& l) {
  return GridRowCtas(s, c, l) * l.z_chunks;
}

// `c` (polled) with dedicated routers, a split fewer at a time until the grid fits
// `sm_count` SMs; at one split it may still not fit (CheckConfigOn says).
DecomposeKConfig FitDedicatedRouters(const Shape& s, DecomposeKConfig c, int sm_count) {
  c.dedicated_routers = true;
  const Layout l = MakeLayout(s, c);  // rows and chunks do not depend on the splits
  while (c.k_splits > 1 && GridCtas(s, c, l) > sm_count) --c.k_splits;
  return c;
}

DecomposeKConfig PolledConfig(const Shape& s, int sm_count, int token_tiles) {
  DecomposeKConfig c;
  c.polled = true;
  c.token_tiles = token_tiles;
  const int chunk = ChunkTokens(c);
  const int m_blocks = ExpertBlocks(s);
  const int z_chunks = (s.tokens + chunk - 1) / chunk;
  c.k_splits = PolledSplits(s, m_blocks, z_chunks, chunk, sm_count);
  return c;
}

// About one CTA per SM; then as few stages a split as that allows, so no split is empty.
DecomposeKConfig StagedConfig(const Shape& s, int sm_count, int splits) {
  DecomposeKConfig c;
  c.polled = c.staged = true;
  c.token_tiles = 4;
  const int chunks = (s.tokens + kStagedTileTokens - 1) / kStagedTileTokens;
  const int total = StagedTotalStages(s);
  if (splits <= 0) splits = std::max(1, sm_count / (StagedExpertTiles(s) * chunks));
  splits = std::clamp(splits, 1, total);
  c.k_splits = (total + StagedStagesPerSplit(s, splits) - 1) / StagedStagesPerSplit(s, splits);
  return c;
}

// The config rules (CanRouteDecomposeK's) for `device`, so that the heuristic asks them for
// the device it was given.
absl::Status CheckConfigOn(const Shape& s, const DecomposeKConfig& c,
                           const DecomposeKDevice& device);

// The fewest splits with which each warp's K range is one unrolled mainloop pass
// (PolledOnePassSplits).
int OnePassSplits(int K, int token_tiles) {
  const int total_steps = (K + kStepK - 1) / kStepK;
  const int per_split = kWarps * TensorCoreUnrollSteps(token_tiles);
  return std::max(1, (total_steps + per_split - 1) / per_split);
}

// Whether a routing launch of this cluster config runs the kernel whose rank 0 routes
// (DecomposeKClusterRouterKernel): 8-token chunks, at most kClusterRouterMaxBlocks expert
// blocks. Its clusters then span every expert block: m_blocks * k_splits CTAs.
bool RankZeroRoutes(const Shape& s, const DecomposeKConfig& c) {
  return c.cluster > 0 && c.token_tiles == 1 && ExpertBlocks(s) <= kClusterRouterMaxBlocks;
}

// The heuristic's cluster config whose rank 0 routes, or none (cluster 0): splits per
// expert block the one-pass count rounded up to a power of two (all weights loaded
// before the PDL wait), at least 8 CTAs a cluster past 8 tokens, where the cluster fits
// and the grid does not outnumber the SMs. Several expert blocks only past 8 tokens.
// H200, router_bench --candidates and same-run A/Bs under PDL (bench/NOTES.md, session
// 27): one expert block is fastest this way at every token count (Mixtral t=1 4 splits
// 2.28 us, 8 splits 2.44, the best polled config 2.57; from 16 tokens 8 splits); with
// 2-4 blocks the polled decode configs stay ahead at 1-4 tokens (Qwen3-30B t=1 3.30
// against 3.40, gpt-oss-120b 3.18 against 3.52) and fall behind from 16 (Qwen3-30B t=16
// 3.90 against 4.26, t=64 -1.2 us); grids of more CTAs than SMs (Qwen3-235B, gpt-oss-120b
// at 128 tokens) gained nothing.
DecomposeKConfig RankZeroRoutesConfig(const Shape& s, int sm_count) {
  DecomposeKConfig c;
  c.mainloop = Mainloop::kTensorCore;
  c.token_tiles = 1;
  const int m_blocks = ExpertBlocks(s);
  const int z_chunks = (s.tokens + kClusterRouterChunk - 1) / kClusterRouterChunk;
  int splits = 1;
  while (splits < OnePassSplits(s.K, 1)) splits *= 2;
  while (s.tokens > kClusterRouterChunk && m_blocks * splits < 8) splits *= 2;
  if (m_blocks > kClusterRouterMaxBlocks || m_blocks * splits > kClusterRouterMaxCtas) return {};
  if (m_blocks > 1 && s.tokens <= kClusterRouterChunk) return {};
  if (sm_count > 0 && z_chunks * m_blocks * splits > sm_count) return {};
  c.cluster = c.k_splits = splits;
  return c;
}

}  // namespace

bool PdlLaunchStartsAtWaitRelease(int grid_ctas, int router_ctas, int cta_slots) {
  if (grid_ctas < 1 || cta_slots < 1) return false;
  const int resident = cta_slots / grid_ctas;  // launches resident at once
  return resident >= 2 && cta_slots - resident * grid_ctas < router_ctas;
}

namespace {

// AwayFromWaitReleaseStarts acts on grids of which at most this many launches are resident
// at once. H200, session 37, per call under PDL, a split more where the rule says so: two
// resident (DeepSeek-V3 t=7-10, 63-66 CTAs) -0.50..-0.61 us; three (GLM-4.5 t=14, Llama 4
// Maverick t=12) -0.21, -0.08; four (GLM-4.5 t=3, Qwen3-235B and Maverick t=1) -0.11..-0.01;
// six (gpt-oss-120b t=2 and 6, 22 and 26 CTAs) +0.04, +0.05. Launches of grids that small
// overlap so deeply that the one whose start coincides with a wait release matters little.
constexpr int kMaxResidentLaunchesSteered = 4;

// A dedicated-router config launched one CTA per SM under PDL, with splits added (each adds
// a CTA per expert block) until its launches no longer start at their predecessors' wait
// release (PdlLaunchStartsAtWaitRelease), while the grid fits; unchanged where none does.
// More splits rather than fewer: below the one-pass count a warp's second pass of weights
// would load after the wait. H200, session 37: DeepSeek-V3 t=8, 7 splits (64 CTAs) 4.15
// us a call, 8 splits (72) 3.54; t=5 and t=6 (61, 62 CTAs: not in that state) 3.54-3.55 at
// either count.
DecomposeKConfig AwayFromWaitReleaseStarts(const Shape& s, const DecomposeKConfig& c,
                                           const Layout& l, const DecomposeKDevice& device) {
  const int sm_count = device.sm_count;
  auto trapped = [&](const DecomposeKConfig& k) {
    const int ctas = GridCtas(s, k, l);
    return sm_count / ctas <= kMaxResidentLaunchesSteered &&
           PdlLaunchStartsAtWaitRelease(ctas, DedicatedRouterCtas(s, k, l) * l.z_chunks, sm_count);
  };
  DecomposeKConfig out = c;
  while (trapped(out)) {
    DecomposeKConfig more = out;
    ++more.k_splits;
    if (GridCtas(s, more, l) > sm_count || !CheckConfigOn(s, more, device).ok()) return c;
    out = more;
  }
  return out;
}

// The heuristic's staged tiles from 128 x 160 (tokens x experts): at most this many splits. At
// 19-20 (the SM-filling count for Kimi K2 at 64 tokens, GLM-4.5 at 128) the routers' gather took
// 4-6 us under PDL: per call 14.2 / 13.7 us, against 8.8 / 12.3 at 16 (H200, bench/NOTES.md session
// 34). Most of that was two CTAs a SM (decompose_k_staged.cu: launches under PDL now keep to one);
// with one, Kimi K2 t=64 still ran 9.13 us at 19 splits against 8.81 at 16 (session 35).
constexpr int kStagedMaxHeuristicSplits = 16;

DecomposeKConfig ChooseConfig(const Shape& s, const DecomposeKDevice& device, bool allow_cluster,
                              bool allow_polled, bool cut_decode_splits,
                              bool allow_rank_zero_routes) {
  const int sm_count = device.sm_count;
  DecomposeKConfig c;
  const bool tensor = s.x_dtype == s.w_dtype && s.x_dtype != DType::kFP32;
  c.mainloop = tensor ? Mainloop::kTensorCore : Mainloop::kFma;
  c.token_tiles = s.tokens <= 8 ? 1 : s.tokens <= 16 ? 2 : 4;
  const int chunk = ChunkTokens(c);
  const int m_blocks = ExpertBlocks(s);
  const int z_chunks = (s.tokens + chunk - 1) / chunk;
  const int total_steps = (s.K + kStepK - 1) / kStepK;
  // Routers of up to 128 experts whose weights one cluster holds in registers in one pass:
  // the cluster kernel whose rank 0 routes, up to 128 tokens (RankZeroRoutesConfig says
  // where).
  if (tensor && allow_cluster && allow_polled && allow_rank_zero_routes && s.tokens <= 128 &&
      device.clusters) {
    const DecomposeKConfig cluster = RankZeroRoutesConfig(s, sm_count);
    if (cluster.cluster > 0) return cluster;
  }
  // The staged tiles from 128 x 160 (tokens x experts): where router_bench's autotuner took
  // them on the H100 (DeepSeek-V3, Kimi K2 and GLM-4.5 at 128 tokens, Kimi K2 at 64; the
  // other families kept the polled 32 x 32 CTAs there), where the grid fits. Also from 64
  // tokens of routers of 256+ experts over 4096+ hidden (DeepSeek-V3 at 64-79 tokens), at
  // the SM-filling split count: the autotuner's own timings under PDL (H200, bench/NOTES.md
  // session 41), DeepSeek-V3 t=64 6.83 us staged at 28 splits (its pick, as in session 37
  // with cp.async stages) against 8.34 for the polled config taken here before; at 14 and
  // 19 splits 9.33 and 7.14. Not for 128 experts: Qwen3-235B t=128 5.94 staged at 16
  // against 5.87, gpt-oss-120b t=128 (2880 hidden) 5.81 against 5.29.
  const bool large_batch = s.tokens * s.experts >= 128 * 160;
  const bool one_chunk_of_a_large_router = s.tokens >= 64 && s.experts >= 256 && s.K >= 4096;
  if (tensor && allow_polled && (large_batch || one_chunk_of_a_large_router)) {
    DecomposeKConfig staged = StagedConfig(s, sm_count, 0);
    if (large_batch && staged.k_splits > kStagedMaxHeuristicSplits)
      staged = StagedConfig(s, sm_count, kStagedMaxHeuristicSplits);
    if (CheckConfigOn(s, staged, device).ok()) return staged;
  }
  // Polled up to 128 tokens: where router_bench's autotuner picked it for 9 of 11 families
  // at 64 and 128 tokens (with these token tilings and split counts, mostly).
  if (tensor && allow_polled && s.tokens <= 128 && m_blocks * z_chunks <= sm_count) {
    DecomposeKConfig polled = PolledConfig(s, sm_count, c.token_tiles);
    const int per_router =
        PolledTokensPerRouter(std::min(chunk, s.tokens), m_blocks * polled.k_splits);
    if (per_router * s.experts <= kPolledMaxChunkLogits) {
      // Up to 16 tokens with dedicated routers, a split fewer where they would not fit:
      // the autotuner took them on most such rows, with and without PDL (bench/RESULTS.md).
      if (s.tokens <= 16) {
        // Also fewer splits: the larger of the one-pass count and a quarter of the rule's.
        // In the autotuner's timings on the H200 (bench/NOTES.md, session 23) that was
        // within 0.21 us of the fastest split count (dedicated routers, as here) on every
        // 1- and 4-token row timed, with or without PDL, where the rule's own count was up
        // to 1.8 us slower (Llama 4 Scout under PDL). At 9-16 tokens, where the rule's count
        // is over four one-pass counts (routers of few expert blocks) it was ~1 us slower
        // than the tuner's picks (session 35), and once the launch keeps to one CTA per SM
        // (below) the one-pass count beats the rule's elsewhere too: DeepSeek-V3 t=16 4.29
        // us at 7 splits against 5.21 at 14, Kimi K2 t=16 4.59 at 7 against 4.78 at 9
        // (session 36).
        DecomposeKConfig fewer = polled;
        if (cut_decode_splits) {
          const int quarter = polled.k_splits / 4;
          const int one_pass = OnePassSplits(s.K, c.token_tiles);
          fewer.k_splits = std::min(polled.k_splits, std::max(one_pass, quarter));
        }
        DecomposeKConfig dedicated = FitDedicatedRouters(s, fewer, sm_count);
        // Launched cooperatively under PDL (without PDL it always is), and kept to one CTA
        // per SM. Cooperative: the autotuner took that on 14 of 16 rows up to 8 tokens
        // (H200, session 33's table), and session 34 found why: under a plain PDL launch,
        // CTAs of later launches start on a router's SM while it routes in ~50% of launches
        // and slow its epilogue by ~550 cycles (~18%); under a cooperative one they never
        // did. One CTA per SM (session 36, per call under PDL, the rule's config before and
        // after): DeepSeek-V3 t=1/2/4 3.65/3.64/3.69 -> 3.48/3.44/3.49 us, Kimi K2 t=1/2/4/8
        // 3.98/3.93/5.05/4.28 -> 3.86/3.73/3.80/3.87, GLM-4.5 t=16 4.57 -> 3.97, Llama 4
        // Maverick t=16 3.84 -> 3.51; DeepSeek-V3 t=8 lost, 3.69 -> 4.14 (its tuner keeps the
        // other launch).
        dedicated.pdl_cooperative = true;
        dedicated.pdl_one_cta_per_sm = true;
        const Layout l = MakeLayout(s, dedicated);
        if (GridCtas(s, dedicated, l) <= sm_count)
          return AwayFromWaitReleaseStarts(s, dedicated, l, device);
      }
      // Past 16 tokens (routers in the mainloop CTAs) cooperative under PDL as well: the
      // autotuner's pick on 5 of the 6 such rows of the H200 table (DeepSeek-V3, GLM-4.5
      // and Llama 4 Maverick at 64 tokens, Qwen3-235B and gpt-oss-120b at 128; not
      // Maverick at 128, +0.04 us). Through the C ABI, same run: -0.19..-0.35 us on four
      // of them, -0.05 on Qwen3-235B (bench/NOTES.md, session 35).
      polled.pdl_cooperative = s.tokens > 16;
      return polled;
    }
  }
  const int target_ctas = 2 * std::max(sm_count, 1);
  const int per_split = m_blocks * z_chunks;
  const int max_splits = std::max(1, total_steps / kWarps);
  c.k_splits = std::clamp((target_ctas + per_split - 1) / per_split, 1, max_splits);
  if (tensor && allow_cluster && device.clusters) {
    // Portable cluster size; the autotuner also tries 4 and 16.
    c.cluster = std::min(8, c.k_splits);
    while (c.cluster & (c.cluster - 1)) --c.cluster;  // a power of two
    // With one token tile and at most 4 expert blocks the launch runs the kernel whose
    // rank 0 routes, whose clusters span every expert block: at most kClusterRouterMaxCtas
    // CTAs (routers of 65-128 experts at up to 8 tokens took 8 splits, 32 or more CTAs,
    // and failed the rules: decompose_k_config_test's sweep).
    if (RankZeroRoutes(s, c)) {
      while (c.cluster > 1 && m_blocks * c.cluster > kClusterRouterMaxCtas) c.cluster /= 2;
    }
    c.k_splits = c.cluster;
  }
  return c;
}

absl::Status CheckConfigOn(const Shape& s, const DecomposeKConfig& c,
                           const DecomposeKDevice& device) {
  // A config may come from the autotuner's cache file: any other value would have launched
  // the FMA kernel with the tensor-core layout.
  if (c.mainloop != Mainloop::kTensorCore && c.mainloop != Mainloop::kFma)
    return absl::InvalidArgumentError(
        absl::StrCat("config: mainloop ", int(c.mainloop), " is not 0 (tensor core) or 1 (FMA)"));
  if (c.mainloop == Mainloop::kTensorCore) {
    if (s.x_dtype != s.w_dtype || s.x_dtype == DType::kFP32)
      return absl::InvalidArgumentError(
          "config: the tensor-core mainloop needs bf16 or fp16 hidden states and weights of the "
          "same dtype");
    if (c.token_tiles != 1 && c.token_tiles != 2 && c.token_tiles != 4)
      return absl::InvalidArgumentError("config: token_tiles must be 1, 2 or 4");
  }
  if (c.cluster != 0) {
    if (c.cluster != 1 && c.cluster != 2 && c.cluster != 4 && c.cluster != 8 && c.cluster != 16)
      return absl::InvalidArgumentError(
          absl::StrCat("config: cluster ", c.cluster, " is not 0, 1, 2, 4, 8 or 16"));
    if (c.mainloop != Mainloop::kTensorCore || c.k_splits != c.cluster)
      return absl::InvalidArgumentError(
          "config: clusters need the tensor-core mainloop and k_splits == cluster");
    const int m_blocks = ExpertBlocks(s);
    if (RankZeroRoutes(s, c) && m_blocks * c.cluster > kClusterRouterMaxCtas)
      return absl::InvalidArgumentError(absl::StrCat(
          "config: with 8-token chunks a cluster spans all ", m_blocks, " expert blocks; ",
          m_blocks, " x ", c.cluster, " splits is more than ", kClusterRouterMaxCtas, " CTAs"));
    if (!device.clusters)
      return absl::InvalidArgumentError("config: thread-block clusters need an sm_90+ GPU");
  }
  if (c.k_splits < 1 || c.k_splits > 4096)
    return absl::InvalidArgumentError(
        absl::StrCat("config: k_splits ", c.k_splits, " outside [1, 4096]"));
  if (c.pdl_cooperative && !c.polled)
    return absl::InvalidArgumentError(
        "config: pdl_cooperative applies to the polled reduction only");
  if (c.pdl_one_cta_per_sm && (!c.polled || c.staged))
    return absl::InvalidArgumentError(
        "config: pdl_one_cta_per_sm applies to the polled reduction's 32-expert CTAs only (staged "
        "launches keep to one CTA per SM under PDL anyway)");
  if (c.dedicated_routers && !c.polled)
    return absl::InvalidArgumentError(
        "config: dedicated_routers applies to the polled reduction only");
  if (c.staged) {
    if (!c.polled || c.dedicated_routers)
      return absl::InvalidArgumentError(
          "config: staged needs the polled reduction, without dedicated_routers");
    const int total = StagedTotalStages(s), per = StagedStagesPerSplit(s, c.k_splits);
    if (c.k_splits > total)
      return absl::InvalidArgumentError(absl::StrCat("config: staged with ", c.k_splits,
                                                     " splits of ", total,
                                                     " 64-element K stages leaves some empty"));
    if (per > kStagedMaxStages)
      return absl::InvalidArgumentError(absl::StrCat(
          "config: staged with ", c.k_splits, " splits stages ", per,
          " 64-element K stages a CTA, more than the ", kStagedMaxStages, " that fit"));
  }
  if (c.polled) {
    if (c.mainloop != Mainloop::kTensorCore || c.cluster != 0)
      return absl::InvalidArgumentError(
          "config: the polled reduction needs the tensor-core mainloop and no cluster");
    const Layout l = MakeLayout(s, c);
    const int per_router = c.dedicated_routers ? 1
                                               : PolledTokensPerRouter(std::min(l.chunk, s.tokens),
                                                                       GridRowCtas(s, c, l));
    if (per_router * s.experts > kPolledMaxChunkLogits)
      return absl::InvalidArgumentError(absl::StrCat(
          "config: a polled router CTA holds at most ", kPolledMaxChunkLogits, " logits; ",
          per_router, " tokens a router x ", s.experts, " experts is more"));
    // The router CTA waits on every other CTA: all must be resident at once.
    const int ctas = GridCtas(s, c, l);
    if (ctas > device.sm_count)
      return absl::InvalidArgumentError(absl::StrCat("config: the polled reduction launches ", ctas,
                                                     " CTAs, more than the ", device.sm_count,
                                                     " SMs of this device"));
  }
  return absl::OkStatus();
}

template <bool kRoute>
cudaError_t LaunchTensorCore(bool bf16, int token_tiles, dim3 grid, const KernelParams& params,
                             cudaStream_t stream, bool pdl) {
  using B = __nv_bfloat16;
  using H = __half;
  switch (token_tiles) {
    case 1:
      return bf16 ? Launch(DecomposeKTensorCoreKernel<B, 1, kRoute>, grid, params, stream, pdl)
                  : Launch(DecomposeKTensorCoreKernel<H, 1, kRoute>, grid, params, stream, pdl);
    case 2:
      return bf16 ? Launch(DecomposeKTensorCoreKernel<B, 2, kRoute>, grid, params, stream, pdl)
                  : Launch(DecomposeKTensorCoreKernel<H, 2, kRoute>, grid, params, stream, pdl);
    default:
      return bf16 ? Launch(DecomposeKTensorCoreKernel<B, 4, kRoute>, grid, params, stream, pdl)
                  : Launch(DecomposeKTensorCoreKernel<H, 4, kRoute>, grid, params, stream, pdl);
  }
}

cudaError_t LaunchForShape(const Shape& s, const DecomposeKConfig& c, KernelParams params,
                           void* workspace, cudaStream_t stream, bool pdl) {
  const Layout l = MakeLayout(s, c);
  char* ws = static_cast<char*>(workspace);
  params.counters = reinterpret_cast<unsigned*>(ws);
  params.partials = reinterpret_cast<float*>(ws + l.partials_offset);
  params.logits_ws = reinterpret_cast<float*>(ws + l.logits_offset);
  params.split_group = l.split_group;
  params.group_counters = reinterpret_cast<unsigned*>(ws + l.group_counters_offset);
  params.group_partials = reinterpret_cast<float*>(ws + l.group_partials_offset);
  params.m_blocks = l.m_blocks;
  params.k_splits = c.k_splits;
  params.total_steps = l.total_steps;
  params.steps_per_warp = l.steps_per_warp;
  if (c.polled) {
    if (params.gemm_mode) return cudaErrorInvalidValue;  // routing only
    params.router_ctas = DedicatedRouterCtas(s, c, l);
    params.warm_routers = pdl;  // without PDL a dry run would delay the gather
    const dim3 grid(GridRowCtas(s, c, l), l.z_chunks);
    const bool cooperative = LaunchesCooperatively(c, pdl, stream);
    if (c.staged) {
      params.stages_per_split = StagedStagesPerSplit(s, c.k_splits);
      const int per_router = PolledTokensPerRouter(std::min(l.chunk, s.tokens), int(grid.x));
      return LaunchStagedKernel(
          s.w_dtype == DType::kBF16, grid, params,
          StagedDynamicSmemBytes(params.stages_per_split, per_router * s.experts), stream, pdl,
          cooperative, /*tma=*/!c.staged_cp_async);
    }
    return LaunchPolledKernel(s.w_dtype == DType::kBF16, c.token_tiles, grid, params, stream, pdl,
                              cooperative, c.pdl_one_cta_per_sm);
  }
  const dim3 grid(l.m_blocks * c.k_splits, l.z_chunks);
  if (c.cluster > 0 && !params.gemm_mode && RankZeroRoutes(s, c))
    return LaunchClusterRouterKernel(s.w_dtype == DType::kBF16, grid, params,
                                     l.m_blocks * c.cluster, stream, pdl);
  if (c.cluster > 0)
    return LaunchClusterKernel(s.w_dtype == DType::kBF16, c.token_tiles, grid, params, c.cluster,
                               stream, pdl);
  if (c.mainloop == Mainloop::kTensorCore) {
    const bool bf16 = s.w_dtype == DType::kBF16;
    return params.gemm_mode
               ? LaunchTensorCore<false>(bf16, c.token_tiles, grid, params, stream, pdl)
               : LaunchTensorCore<true>(bf16, c.token_tiles, grid, params, stream, pdl);
  }
  // FMA mainloop: dispatch on the (hidden, weight) dtype pair.
  const int pair = int(s.x_dtype) * 3 + int(s.w_dtype);
  using B = __nv_bfloat16;
  using H = __half;
  using F = float;
  switch (pair) {
    case 0:
      return Launch(DecomposeKFmaKernel<B, B>, grid, params, stream, pdl);
    case 1:
      return Launch(DecomposeKFmaKernel<B, H>, grid, params, stream, pdl);
    case 2:
      return Launch(DecomposeKFmaKernel<B, F>, grid, params, stream, pdl);
    case 3:
      return Launch(DecomposeKFmaKernel<H, B>, grid, params, stream, pdl);
    case 4:
      return Launch(DecomposeKFmaKernel<H, H>, grid, params, stream, pdl);
    case 5:
      return Launch(DecomposeKFmaKernel<H, F>, grid, params, stream, pdl);
    case 6:
      return Launch(DecomposeKFmaKernel<F, B>, grid, params, stream, pdl);
    case 7:
      return Launch(DecomposeKFmaKernel<F, H>, grid, params, stream, pdl);
    default:
      return Launch(DecomposeKFmaKernel<F, F>, grid, params, stream, pdl);
  }
}

Shape RouteShape(const RouteProblem& p) {
  return {p.tokens, p.spec.experts, p.spec.hidden, p.hidden_dtype, p.weight_dtype};
}
Shape GemmShape(const GemmProblem& p) { return {p.m, p.n, p.k, p.dtype, p.dtype}; }

}  // namespace

DecomposeKDevice CurrentDecomposeKDevice() { return {PolledMaxCtas(), ClustersSupported()}; }

DecomposeKConfig ChooseDecomposeKConfig(const RouteProblem& problem, int sm_count,
                                        bool allow_polled, bool cut_decode_splits,
                                        bool allow_rank_zero_routes) {
  return ChooseDecomposeKConfigFor(problem, {sm_count, ClustersSupported()}, allow_polled,
                                   cut_decode_splits, allow_rank_zero_routes);
}

DecomposeKConfig ChooseDecomposeKConfigFor(const RouteProblem& problem,
                                           const DecomposeKDevice& device, bool allow_polled,
                                           bool cut_decode_splits, bool allow_rank_zero_routes) {
  return ChooseConfig(RouteShape(problem), device, /*allow_cluster=*/true, allow_polled,
                      cut_decode_splits, allow_rank_zero_routes);
}

int PolledOnePassSplits(const RouteProblem& problem, int token_tiles) {
  return OnePassSplits(problem.spec.hidden, token_tiles);
}

DecomposeKConfig ChoosePolledConfig(const RouteProblem& problem, int sm_count, int token_tiles) {
  return PolledConfig(RouteShape(problem), sm_count, token_tiles);
}

DecomposeKConfig ChooseStagedConfig(const RouteProblem& problem, int sm_count, int splits) {
  return StagedConfig(RouteShape(problem), sm_count, splits);
}

DecomposeKConfig WithDedicatedRouters(const RouteProblem& problem, const DecomposeKConfig& config,
                                      int sm_count) {
  return FitDedicatedRouters(RouteShape(problem), config, sm_count);
}

absl::Status CanRouteDecomposeK(const RouteProblem& problem, const DecomposeKConfig& config) {
  return CanRouteDecomposeKOn(problem, config, CurrentDecomposeKDevice());
}

absl::Status CanRouteDecomposeKOn(const RouteProblem& problem, const DecomposeKConfig& config,
                                  const DecomposeKDevice& device) {
  auto status = CheckRouteProblem(problem);
  if (!status.ok()) return status;
  return CheckConfigOn(RouteShape(problem), config, device);
}

size_t DecomposeKWorkspaceBytes(const RouteProblem& problem, const DecomposeKConfig& config) {
  return MakeLayout(RouteShape(problem), config).total;
}

size_t DecomposeKZeroedBytes(const RouteProblem& problem, const DecomposeKConfig& config) {
  return MakeLayout(RouteShape(problem), config).zeroed_bytes;
}

cudaError_t ResetDecomposeKWorkspace(void* workspace, const RouteProblem& problem,
                                     const DecomposeKConfig& config, cudaStream_t stream) {
  return cudaMemsetAsync(workspace, 0, DecomposeKZeroedBytes(problem, config), stream);
}

bool LaunchesCooperatively(const DecomposeKConfig& config, bool pdl, cudaStream_t stream) {
  if (!pdl || config.pdl_cooperative) return true;
  // Streams are created with the least priority by default; read once (every launch of a
  // plain config asks).
  static const int least = [] {
    int lowest = 0, greatest = 0;
    if (cudaDeviceGetStreamPriorityRange(&lowest, &greatest) != cudaSuccess) cudaGetLastError();
    return lowest;
  }();
  int priority = 0;
  if (cudaStreamGetPriority(stream, &priority) != cudaSuccess) {
    cudaGetLastError();
    return true;  // cannot tell: the launch that needs no ordering
  }
  return priority != least;
}

cudaError_t LaunchDecomposeKRouter(const RouteProblem& problem, const RouteArgs& args,
                                   const DecomposeKConfig& config, void* workspace,
                                   cudaStream_t stream, bool pdl) {
  return LaunchDecomposeKRouterWithTimeline(problem, args, config, workspace, stream, pdl, nullptr);
}

size_t TimelineEntries(const RouteProblem& problem, const DecomposeKConfig& config) {
  const Shape s = RouteShape(problem);
  const Layout l = MakeLayout(s, config);
  return size_t(GridCtas(s, config, l)) * kTimelineSlots * 2;
}

cudaError_t LaunchDecomposeKRouterWithTimeline(const RouteProblem& problem, const RouteArgs& args,
                                               const DecomposeKConfig& config, void* workspace,
                                               cudaStream_t stream, bool pdl,
                                               unsigned long long* timeline) {
  const RouterSpec& s = problem.spec;
  KernelParams params = {};
  params.w = args.weight;
  params.x = args.hidden;
  params.tokens = problem.tokens;
  params.K = s.hidden;
  params.experts = s.experts;
  params.router_bias = s.has_router_bias ? args.router_bias : nullptr;
  params.correction_bias = s.has_correction_bias ? args.correction_bias : nullptr;
  params.ids = args.expert_ids;
  params.weights = args.expert_weights;
  params.logits_out = args.logits;
  params.gemm_mode = 0;
  params.ep = MakeEpilogueParams(s);
  params.timeline = timeline;
  return LaunchForShape(RouteShape(problem), config, params, workspace, stream, pdl);
}

absl::Status CanGemmDecomposeK(const GemmProblem& p) {
  if (p.m < 1 || p.m > 1024)
    return absl::InvalidArgumentError(absl::StrCat("m: ", p.m, " outside [1, 1024]"));
  if (p.n < 1 || p.n > 4096)
    return absl::InvalidArgumentError(absl::StrCat("n: ", p.n, " outside [1, 4096]"));
  if (p.k < 8 || p.k > 131072 || p.k % 8 != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("k: ", p.k, " is not a multiple of 8 in [8, 131072]"));
  return absl::OkStatus();
}

// The staged-tile kernel past 16 rows of A (bf16/fp16): there the router kernels' 32 x 32
// CTA tile reads an operand several times or sums hundreds of partials. H100, 32 x 32 x K:
// 5.5 / 7.0 / 9.0 / 13.0 us against 8.3 / 10.0 / 12.4 / 15.6 at K = 8k / 32k / 64k / 128k.
DecomposeKConfig ChooseGemmConfig(const GemmProblem& problem, int sm_count) {
  if (problem.dtype != DType::kFP32 && problem.m > 16) {
    DecomposeKConfig c;
    c.gemm_tile = ChooseGemmTile(problem.m, problem.n, problem.k);
    c.k_splits = TileGemmSplits(problem.m, problem.n, problem.k, c.gemm_tile, sm_count);
    c.gemm_tma = TileGemmTmaSupported();
    return c;
  }
  return ChooseConfig(GemmShape(problem), {sm_count, false}, /*allow_cluster=*/false,
                      /*allow_polled=*/false, /*cut_decode_splits=*/false,
                      /*allow_rank_zero_routes=*/false);
}

namespace {
TileGemmShape TileShape(const GemmProblem& p, const DecomposeKConfig& c) {
  return {p.m, p.n, p.k, c.gemm_tile, c.k_splits, c.gemm_tma};
}
}  // namespace

size_t GemmWorkspaceBytes(const GemmProblem& problem, const DecomposeKConfig& config) {
  if (config.gemm_tile != 0) return TileGemmWorkspaceBytes(TileShape(problem, config));
  return MakeLayout(GemmShape(problem), config).total;
}

cudaError_t ResetGemmWorkspace(void* workspace, const GemmProblem& problem,
                               const DecomposeKConfig& config, cudaStream_t stream) {
  const size_t bytes = config.gemm_tile != 0
                           ? TileGemmZeroedBytes(TileShape(problem, config))
                           : MakeLayout(GemmShape(problem), config).counters_bytes;
  return cudaMemsetAsync(workspace, 0, bytes, stream);
}

cudaError_t LaunchDecomposeKGemm(const GemmProblem& problem, const void* a, const void* b,
                                 const float* bias, float* c, const DecomposeKConfig& config,
                                 void* workspace, cudaStream_t stream, bool pdl) {
  if (config.gemm_tile != 0) {
    if (problem.dtype == DType::kFP32) return cudaErrorInvalidValue;  // tensor cores only
    TileGemmShape shape = TileShape(problem, config);
    shape.pdl = pdl;
    // A grid whose split CTAs cannot all be resident is refused by its cooperative launch.
    return LaunchTileGemm(problem.dtype == DType::kBF16, shape, a, b, bias, c, workspace, stream);
  }
  KernelParams params = {};
  params.w = b;
  params.x = a;
  params.tokens = problem.m;
  params.K = problem.k;
  params.experts = problem.n;
  params.router_bias = bias;
  params.logits_out = c;
  params.gemm_mode = 1;
  // Under PDL the router kernels read B as their weights, before the wait, and A as their
  // hidden states after it.
  return LaunchForShape(GemmShape(problem), config, params, workspace, stream, pdl);
}

}  // namespace moe::cuda
