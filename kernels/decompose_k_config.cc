// The Decompose-K router's config heuristic and config rules (decompose_k_router.h):
// which reduction, token tiling, split count and launch options a shape gets on a device,
// and which configs a device can run. Host code; the CUDA runtime is asked only for the
// current device (CurrentDecomposeKDevice, which also loads cuBLASLt, and the cluster support
// of the functions that take an SM count). The timings behind each choice: bench/NOTES.md, by
// session.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cublaslt_api.h"
#include "kernels/decompose_k_cluster.h"
#include "kernels/decompose_k_gemm_tile.h"
#include "kernels/decompose_k_layout.h"
#include "kernels/decompose_k_polled.h"
#include "kernels/decompose_k_router.h"
#include "kernels/decompose_k_staged.h"

namespace moe::cuda {
namespace {

using Shape = DecomposeKShape;
using Layout = DecomposeKLayout;

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

// The fewest splits with which each warp's K range is one mainloop pass of `pass_steps`
// K steps (PolledOnePassSplits, PolledShortPassSplits).
int SplitsForPassesOf(int K, int pass_steps) {
  const int total_steps = (K + kStepK - 1) / kStepK;
  const int per_split = kWarps * pass_steps;
  return std::max(1, (total_steps + per_split - 1) / per_split);
}
int OnePassSplits(int K, int token_tiles) {
  return SplitsForPassesOf(K, TensorCoreUnrollSteps(token_tiles));
}

// The heuristic's cluster config whose rank 0 routes, or none (cluster 0): splits per
// expert block the one-pass count rounded up to a power of two (all weights loaded
// before the PDL wait), where the cluster fits and the grid does not outnumber the SMs.
// Several expert blocks only past 8 tokens, more than two only past 16.
// Until session 70 the splits were also raised to at least 8 CTAs a cluster past 8 tokens
// (session 27, H200: Mixtral from 16 tokens at 8 splits). On the H100 the one-pass count is
// as fast or faster at every count measured, the autotuner's own timings under PDL
// (bench/NOTES.md session 70; one-pass / raised, us a call): Mixtral t=16 2.56 / 2.67, t=24
// 2.60 / 2.70, t=32 2.57 / 2.78, t=48 2.66 / 2.77, t=64 2.77 / 2.75, t=96 2.91 / 3.01, t=128
// 2.86 / 3.13; gpt-oss-20b 2.57 / 2.67, 2.61 / 2.70, 2.65 / 2.76, 2.72 / 2.76, 2.80 / 2.83,
// 2.98 / 2.99, 2.85 / 3.11; DeepSeek-V2-Lite (two blocks) t=32 3.14 / 3.23, t=64 3.30 /
// 3.23, t=128 3.51 / 3.68. Only those three routers were raised at all (Scout's one-pass
// count is 8 already, larger routers' blocks make 8 CTAs).
// H200, router_bench --candidates and same-run A/Bs under PDL (bench/NOTES.md, session
// 27): one expert block is fastest this way at every token count (Mixtral t=1 4 splits
// 2.28 us, 8 splits 2.44, the best polled config 2.57; from 16 tokens 8 splits); with
// 2-4 blocks the polled decode configs stay ahead at 1-4 tokens (Qwen3-30B t=1 3.30
// against 3.40, gpt-oss-120b 3.18 against 3.52) and fall behind from 16 (Qwen3-30B t=16
// 3.90 against 4.26, t=64 -1.2 us); grids of more CTAs than SMs (Qwen3-235B, gpt-oss-120b
// at 128 tokens) gained nothing. Since the two-tile polled kernel's fixes (sessions 49 and 51:
// its hidden states staged by cp.async, the pass of 2 K steps) it is the other way at 9-16
// tokens from 3 blocks up: the heuristic's config before and after, one graph under PDL
// (H100, session 51), per call: Qwen3-30B t=16 3.61 -> 3.17 us, Qwen3-235B 3.87 -> 3.23,
// gpt-oss-120b 3.65 -> 3.15 (the two-tile polled config of WithShortPassOnUpToHalfTheSms,
// which the tuner now takes for all three). With 2 blocks the cluster still wins (the tuner's
// timings: DeepSeek-V2-Lite t=16 3.04 against 3.20 for the best polled config). At 17-64 tokens
// likewise where the two-tile config fits (ChooseConfig: TwoTileDecodeConfig, Qwen3-30B /
// Qwen3-235B / gpt-oss-120b t=32 3.65 / 4.06 / 3.75 us for the cluster, 3.19 / 3.35 / 3.19 for
// the two-tile config; H100, session 52).
// With `halve_to_fit` the split count is halved (down to 1) until the grid takes at most
// half again as many CTAs as there are SMs, for batches past ChooseConfig's polled 128 tokens
// (ChooseConfig says which routers). Up to session 70 it had to fit the SMs: Llama 4 Scout
// (one block, 8 splits) then took 4 splits from 129 tokens, where 8 measured faster with
// the grid past the SMs (H100, the autotuner's timings under PDL, 8 splits against 4: t=144,
// 144 CTAs, 2.96 us against 3.87; t=160 3.17 against 3.93; t=176 3.31 (the tuner's best)
// against 4.11; t=192, 192 CTAs, 3.50 against 3.99; t=200 3.58 against 3.97; at
// 224 tokens 4 splits are faster, 4.16 against more than 4.48, and at 256). gpu_router_test's
// families run 192 tokens (192 CTAs on an H100).
constexpr int kClusterRouterMaxBlocksAtTwoTiles = 2;
DecomposeKConfig RankZeroRoutesConfig(const Shape& s, int sm_count, bool halve_to_fit) {
  DecomposeKConfig c;
  c.mainloop = Mainloop::kTensorCore;
  c.token_tiles = 1;
  const int m_blocks = ExpertBlocks(s);
  const int z_chunks = (s.tokens + kClusterRouterChunk - 1) / kClusterRouterChunk;
  int splits = 1;
  while (splits < OnePassSplits(s.K, 1)) splits *= 2;
  if (m_blocks > kClusterRouterMaxBlocks || m_blocks * splits > kClusterRouterMaxCtas) return {};
  if (m_blocks > 1 && s.tokens <= kClusterRouterChunk) return {};
  if (m_blocks > kClusterRouterMaxBlocksAtTwoTiles && s.tokens <= 16) return {};
  const int max_grid = halve_to_fit ? sm_count + sm_count / 2 : sm_count;
  if (halve_to_fit)
    while (splits > 1 && sm_count > 0 && z_chunks * m_blocks * splits > max_grid) splits /= 2;
  if (sm_count > 0 && z_chunks * m_blocks * splits > max_grid) return {};
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

// `c` (two token tiles, dedicated routers) at no fewer splits than PolledShortPassSplits' count
// (each warp's K range at most two steps: the polled kernel's pass of 2), where that grid takes at
// most half the SMs; `c` elsewhere. The autotuner took such counts on every 16-token row of
// routers of 128 and 160 experts, and the heuristic's configs changed so, timed in one graph
// under PDL (H100, bench/NOTES.md session 51), per call: Qwen3-235B 8 splits 3.23 us where 4
// took 3.57 in the tuner's graph, Llama 4 Maverick 10 splits 3.11 against 8 splits 3.30,
// GLM-4.5 11 (10, then a split more: AwayFromWaitReleaseStarts) 3.62 against 6 splits 3.75.
// Not DeepSeek-V3 and Kimi K2 (14 splits of 8 and 12 expert blocks: 128 and 184 CTAs at 16
// tokens), which session 49 measured 0.27 and 1.38 us slower at those counts.
DecomposeKConfig WithShortPassOnUpToHalfTheSms(const Shape& s, const DecomposeKConfig& c,
                                               int sm_count) {
  if (c.token_tiles != 2) return c;
  DecomposeKConfig shorter = c;
  shorter.k_splits = std::max(c.k_splits, SplitsForPassesOf(s.K, kShortPassSteps));
  return 2 * GridCtas(s, shorter, MakeLayout(s, shorter)) <= sm_count ? shorter : c;
}

// The heuristic's config at 17-64 tokens (two to four 16-token chunks): two token tiles with
// dedicated routers at the short-pass split count (each warp's K range at most two steps), a
// split fewer at a time until the grid fits the SMs, launched one CTA per SM, steered away from
// wait-release starts, and cooperatively where the whole grid fits beside the previous launch's
// routers (one a token: they still route after its mainloop CTAs have left), plainly elsewhere;
// none (not polled) where even one split does not fit. Per call under PDL against the four-tile
// polled config (or the rank-0 cluster) taken there before, H100, session 52 (bench/NOTES.md):
// Qwen3-30B t=24/32/48/64 3.68/3.65/3.73/3.77 -> ~3.20/3.19/3.32/3.57 us,
// Qwen3-235B 4.04/4.06/4.57/4.72 -> 3.36/3.35/3.82/3.99, gpt-oss-120b 3.71/3.75/4.30/4.33
// -> 3.16/3.19/3.46/3.69, Llama 4 Maverick 5.83/5.78/5.39/5.19 -> 3.26/-/3.79/4.75,
// GLM-4.5 6.75/6.85/5.89/5.91 -> 3.75/4.02/4.26/5.44, DeepSeek-V3 t=24/32 6.32/6.41 -> 5.09/5.35,
// Kimi K2 7.06/8.41 -> 6.26/6.54. Each within 0.12 us of the fastest split count swept (2-8) with
// this launch. One CTA per SM: the plain and the cooperative launch without it were 0.1-1.6 us
// slower on every row. Cooperative with it: on the sweep's 116 rows up to 0.35 us faster where grid
// + tokens <= 132 (two chunks up to 96 CTAs, three up to 84) and 0.2-1.6 us slower past that, but
// for one row of Kimi K2 (+0.06, t=24 at 104 CTAs); the heuristic's configs so launched, same run
// against the plain launch (session 52, call 3): Qwen3-235B t=24/32 -0.13/-0.10, gpt-oss-120b
// -0.07/-0.06, Qwen3-30B t=24/32/33 -0.06/-0.05/-0.06, Llama 4 Maverick t=17 -0.17, Qwen3-30B t=17
// +0.05. The two-tile grid (16 routers a chunk) fits fewer splits as chunks are added: at three
// chunks DeepSeek-V3 and Kimi K2 get 3 and 2, half their one-pass counts or less, and run the
// staged tiles instead (ChooseConfig).
constexpr int kTwoTileMaxTokens = 64;
DecomposeKConfig TwoTileDecodeConfig(const Shape& s, const DecomposeKDevice& device) {
  DecomposeKConfig c;
  c.mainloop = Mainloop::kTensorCore;
  c.polled = true;
  c.token_tiles = 2;
  c.k_splits = SplitsForPassesOf(s.K, kShortPassSteps);
  c = FitDedicatedRouters(s, c, device.sm_count);
  c.pdl_one_cta_per_sm = true;
  const Layout l = MakeLayout(s, c);
  if (GridCtas(s, c, l) > device.sm_count || !CheckConfigOn(s, c, device).ok()) return {};
  c = AwayFromWaitReleaseStarts(s, c, l, device);
  c.pdl_cooperative = GridCtas(s, c, l) + s.tokens <= device.sm_count;
  return c;
}

// The heuristic's polled reduction (32-expert CTAs or staged tiles) serves up to this many
// tokens; past it the staged tiles where their grid fits, else the kernels below.
constexpr int kPolledMaxTokens = 128;

// Past kPolledMaxTokens the cluster kernel whose rank 0 routes serves routers of at most this
// many 32-expert blocks (ChooseConfig).
constexpr int kRankZeroRoutesMaxBlocksPastPolled = 2;

// Routers of this many experts or more route after a GEMM (cuBLASLt's, or the staged-tile
// GEMM's) past kPolledMaxTokens where no one-launch config fits (ChooseDecomposeKConfigFor).
constexpr int kRouteAfterGemmMinExperts = 256;

// The heuristic's staged tiles from 128 x 160 (tokens x experts): at most this many splits. At
// 19-20 (the SM-filling count for Kimi K2 at 64 tokens, GLM-4.5 at 128) the routers' gather took
// 4-6 us under PDL: per call 14.2 / 13.7 us, against 8.8 / 12.3 at 16 (H200, bench/NOTES.md session
// 34). Most of that was two CTAs a SM (decompose_k_staged.cu: launches under PDL now keep to one);
// with one, Kimi K2 t=64 still ran 9.13 us at 19 splits against 8.81 at 16 (session 35). Also
// for one chunk of a large router (below): at 40 tokens, plain launches, Kimi K2 8.44 us at 19
// splits against 7.74 at 16, DeepSeek-V3 6.81 at 28 against 6.69 at 16 (H100, session 52).
constexpr int kStagedMaxHeuristicSplits = 16;

// The heuristic's staged tiles launch cooperatively under PDL where their grid takes at most
// half the SMs. H100, per call under PDL, cooperative against plain (bench/NOTES.md sessions
// 52-53): 64-CTA grids (DeepSeek-V3 at 40-64 tokens, 16 splits) 6.37-6.52 us against
// 6.56-6.89, and the tuner took that launch there; larger grids lost: 96 CTAs (Kimi K2 t=40 /
// t=64, GLM-4.5 t=128) 8.85 / 9.16 / 8.46 against 7.74 / 7.99 / 7.55, 128 (DeepSeek-V3 t=128)
// 8.60 against 8.27. The one larger grid that gained (Kimi K2 t=40 at 14 splits, 84 CTAs: 7.41
// against 7.82) is left to the tuner.
bool StagedLaunchesCooperatively(const Shape& s, const DecomposeKConfig& staged, int sm_count) {
  return 2 * GridCtas(s, staged, MakeLayout(s, staged)) <= sm_count;
}

// Routers of two 64-expert tiles (65-128 experts) over 4096+ hidden at 97-128 tokens, where the
// rule below took the polled 32-expert CTAs: the staged tiles at four 64-element K stages a
// split, with router pairs (a router block gathers two tokens, half of it routes each), launched
// cooperatively where the grid takes at most half the SMs. The autotuner's own timings under PDL
// (H100, bench/NOTES.md session 66), against the polled config the heuristic took: Qwen3-235B
// t=128 5.00 us at 16 splits with pairs, cooperative (5.34 plain, 5.38 without pairs), against
// 5.55; Llama 4 Maverick t=128 5.60 at 20 splits (5.80 at 27, over 6.0 at 16), against 6.00.
// Without pairs (specs one block cannot route token by token) the staged tiles were within 0.2
// us of the polled CTAs (Qwen3-235B 5.38 against 5.55, one tuner run): those specs keep the rule.
// Not at 65-96 tokens (three 32-token chunks of the polled CTAs, not four): there the polled
// CTAs were as fast or faster (H100, session 68, per call under PDL in the timeline's graph):
// Maverick t=80 / 96 4.91 / 4.89 against the pairs' 5.70 / 5.69, Qwen3-235B 4.84 / 4.86 against
// 5.09 / 5.02.
constexpr int kFewTilesStagesPerSplit = 4;
constexpr int kFewTilesMinHidden = 4096;
constexpr int kFewTilesMinTokens = 3 * kMaxChunk + 1;
DecomposeKConfig StagedPairsOfTwoExpertTiles(const Shape& s, const DecomposeKDevice& device) {
  if (s.tokens < kFewTilesMinTokens || s.tokens > 2 * kStagedTileTokens ||
      StagedExpertTiles(s) != 2 || s.K < kFewTilesMinHidden)
    return {};
  DecomposeKConfig c = StagedConfig(s, device.sm_count, 0);  // about an SM's worth of CTAs
  const int splits = (StagedTotalStages(s) + kFewTilesStagesPerSplit - 1) / kFewTilesStagesPerSplit;
  if (splits < c.k_splits) c = StagedConfig(s, device.sm_count, splits);
  c.staged_router_pairs = true;
  c.pdl_cooperative = StagedLaunchesCooperatively(s, c, device.sm_count);
  if (!CheckConfigOn(s, c, device).ok()) return {};
  return c;
}

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
  // 17-64 tokens: two token tiles with dedicated routers (TwoTileDecodeConfig), where that grid
  // fits (not polled where it does not).
  DecomposeKConfig two_tile;
  if (tensor && allow_polled && cut_decode_splits && s.tokens > 16 && s.tokens <= kTwoTileMaxTokens)
    two_tile = TwoTileDecodeConfig(s, device);
  // Routers of up to 128 experts whose weights one cluster holds in registers in one pass:
  // the cluster kernel whose rank 0 routes, up to 128 tokens (RankZeroRoutesConfig says
  // where), and at 17-64 tokens for routers of more than two expert blocks only where the
  // two-tile config does not fit (RankZeroRoutesConfig's timings).
  // Past 128 tokens the same kernel for routers of up to two expert blocks (64 experts), at
  // the most splits whose grid takes at most half again as many CTAs as SMs (256 tokens: 32
  // chunks, 4 splits of one block or 2 of two). Before, they fell through to the arrival-counter
  // clusters of four token tiles at 8 splits. H100, per call under PDL at 256 tokens, the
  // autotuner's own timings (bench/NOTES.md session 69): Mixtral 3.17 us against 9.66,
  // gpt-oss-20b 3.12 against 9.69, Llama 4 Scout 4.25 against 9.84, DeepSeek-V2-Lite 3.81
  // against 13.12 (cuBLAS's GEMM alone 5.4-7.3); without PDL 5.10-6.91 against 10.8-14.8. The
  // tuner's fastest: these, but Scout 4.16 (polled, two token tiles).
  const bool rank_zero_past_polled =
      s.tokens > kPolledMaxTokens && m_blocks <= kRankZeroRoutesMaxBlocksPastPolled;
  if (tensor && allow_cluster && allow_polled && allow_rank_zero_routes &&
      (s.tokens <= kPolledMaxTokens || rank_zero_past_polled) && device.clusters) {
    const DecomposeKConfig cluster = RankZeroRoutesConfig(s, sm_count, rank_zero_past_polled);
    const bool two_tile_ahead = two_tile.polled && m_blocks > kClusterRouterMaxBlocksAtTwoTiles;
    if (cluster.cluster > 0 && !two_tile_ahead) return cluster;
  }
  // The staged tiles from 128 x 160 (tokens x experts): where router_bench's autotuner took
  // them on the H100 (DeepSeek-V3, Kimi K2 and GLM-4.5 at 128 tokens, Kimi K2 at 64; the
  // other families kept the polled 32 x 32 CTAs there), where the grid fits. Also from 33
  // tokens of routers of 256+ experts over 4096+ hidden (DeepSeek-V3 at 33-79 tokens, Kimi K2
  // at 33-53), at the SM-filling split count up to kStagedMaxHeuristicSplits. From 64 tokens
  // at first: the autotuner's own timings under PDL (H200, bench/NOTES.md session 41),
  // DeepSeek-V3 t=64 6.83 us staged at 28 splits (its pick then) against 8.34 for the polled
  // config taken here before. From 33 since the two-tile configs serve up to 64 tokens
  // (TwoTileDecodeConfig): at 48 tokens staged 6.67 us (DeepSeek-V3) and 7.42 (Kimi K2)
  // against 7.12 and 9.26 for the two-tile config at the 3 and 2 splits that fit (H100,
  // session 52). Not for 128 experts: Qwen3-235B t=128 5.94 staged at 16 against 5.87,
  // gpt-oss-120b t=128 (2880 hidden) 5.81 against 5.29.
  // Also routers of 65-159 experts past the polled reduction's 128 tokens, below 128 x 160
  // (129-159 tokens at 128 experts), which took the arrival-counter and cluster kernels.
  // H100, per call under PDL at 144 tokens (bench/NOTES.md session 68), the staged tiles
  // against the config taken here before (cluster, 8 splits): Qwen3-235B 5.48 us (pairs)
  // against 14.27, gpt-oss-120b 5.84 against 13.31, Qwen3-30B 4.70 against 13.95; the tuner's
  // fastest 5.48, 5.14 and 4.63.
  const bool large_batch = s.tokens * s.experts >= 128 * 160 ||
                           (s.tokens > kPolledMaxTokens && s.experts > 2 * kBlockExperts);
  const bool one_chunk_of_a_large_router = s.tokens > 32 && s.experts >= 256 && s.K >= 4096;
  if (tensor && allow_polled && (large_batch || one_chunk_of_a_large_router)) {
    DecomposeKConfig staged = StagedConfig(s, sm_count, 0);
    if (staged.k_splits > kStagedMaxHeuristicSplits)
      staged = StagedConfig(s, sm_count, kStagedMaxHeuristicSplits);
    staged.pdl_cooperative = StagedLaunchesCooperatively(s, staged, sm_count);
    if (CheckConfigOn(s, staged, device).ok()) return staged;
  }
  if (two_tile.polled) return two_tile;
  // Polled up to 128 tokens: where router_bench's autotuner picked it for 9 of 11 families
  // at 64 and 128 tokens (with these token tilings and split counts, mostly).
  if (tensor && allow_polled && s.tokens <= kPolledMaxTokens && m_blocks * z_chunks <= sm_count) {
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
        if (cut_decode_splits) dedicated = WithShortPassOnUpToHalfTheSms(s, dedicated, sm_count);
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
      // Past 16 tokens (routers in the mainloop CTAs) one CTA per SM, launched plainly. Session
      // 35 (H200, before pdl_one_cta_per_sm existed) took the cooperative launch here, the
      // tuner's pick then on 5 of 6 such rows; since, the tuner takes the plain one-CTA-a-SM
      // launch on most of them, and the heuristic's config so launched, against cooperative
      // with two CTAs a SM allowed (H100, bench/NOTES.md session 52, two rounds): gpt-oss-120b
      // t=128 5.31 -> 4.93 us, Qwen3-235B t=128 5.90 -> 5.51, GLM-4.5 t=80 7.30 -> 6.37, Llama 4
      // Maverick t=96 4.90 -> 5.04 (its grid 132 CTAs; cooperative with one CTA a SM lost
      // everywhere, 5.45 / 5.76 / 6.97 / 5.79).
      polled.pdl_cooperative = false;
      polled.pdl_one_cta_per_sm = s.tokens > 16;
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
  if (c.staged_router_pairs) {
    if (!c.staged)
      return absl::InvalidArgumentError(
          "config: staged_router_pairs applies to the staged tiles only");
    if (s.experts > kThreads)
      return absl::InvalidArgumentError(absl::StrCat("config: staged_router_pairs route at most ",
                                                     kThreads, " experts, not ", s.experts));
    const Layout l = MakeLayout(s, c);
    const int row = GridRowCtas(s, c, l), valid = std::min(l.chunk, s.tokens);
    if (2 * row < valid)
      return absl::InvalidArgumentError(
          absl::StrCat("config: staged_router_pairs in a grid row of ", row, " CTAs route ",
                       2 * row, " tokens, fewer than the chunk's ", valid));
  }
  if (c.polled) {
    if (c.mainloop != Mainloop::kTensorCore || c.cluster != 0)
      return absl::InvalidArgumentError(
          "config: the polled reduction needs the tensor-core mainloop and no cluster");
    const Layout l = MakeLayout(s, c);
    const int per_router = c.dedicated_routers ? 1 : RouterCtaTokens(s, c, l);
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

// A route_after_gemm config (read from a cache file, perhaps): cuBLASLt's GEMM where it loads,
// or a staged-tile GEMM config the device can run; the one-launch kernels' fields at their
// defaults.
absl::Status CheckRouteAfterGemm(const RouteProblem& p, const DecomposeKConfig& c,
                                 const DecomposeKDevice& device) {
  if (p.hidden_dtype != p.weight_dtype || p.hidden_dtype == DType::kFP32)
    return absl::InvalidArgumentError(
        "config: route_after_gemm needs bf16 or fp16 hidden states and weights of the same dtype "
        "(the staged-tile GEMM runs on the tensor cores)");
  const DecomposeKConfig defaults;
  if (c.mainloop != defaults.mainloop || c.token_tiles != defaults.token_tiles || c.cluster != 0 ||
      c.polled || c.pdl_cooperative || c.pdl_one_cta_per_sm || c.dedicated_routers || c.staged ||
      c.staged_cp_async || c.staged_router_pairs)
    return absl::InvalidArgumentError(
        "config: route_after_gemm takes the GEMM's fields only (gemm_cublas, or gemm_tile, "
        "gemm_tile_m, k_splits and gemm_tma); the one-launch kernels' must stay at their "
        "defaults");
  if (c.gemm_cublas) {
    if (c.gemm_tile != 0 || c.gemm_tile_m != 0 || c.k_splits != 1 || c.gemm_tma)
      return absl::InvalidArgumentError(
          "config: route_after_gemm by cuBLASLt (gemm_cublas) takes no tile, split or TMA "
          "fields (gemm_tile 0, gemm_tile_m 0, k_splits 1, gemm_tma 0)");
    if (!device.cublaslt)
      return absl::InvalidArgumentError(
          "config: route_after_gemm by cuBLASLt (gemm_cublas), but libcublasLt cannot be loaded");
    return absl::OkStatus();
  }
  if ((c.gemm_tile != 64 && c.gemm_tile != 128) ||
      (c.gemm_tile_m != 0 && !(c.gemm_tile == 128 && c.gemm_tile_m == 64)))
    return absl::InvalidArgumentError(
        absl::StrCat("config: route_after_gemm's tile is ", c.gemm_tile, " x ", c.gemm_tile_m,
                     "; it must be 64, 128, or 128 with gemm_tile_m 64"));
  const int total_stages = (p.spec.hidden + kTileGemmStageK - 1) / kTileGemmStageK;
  const int per_split = c.k_splits > 0 ? (total_stages + c.k_splits - 1) / c.k_splits : 0;
  if (c.k_splits < 1 || (c.k_splits - 1) * per_split >= total_stages)
    return absl::InvalidArgumentError(absl::StrCat("config: route_after_gemm with ", c.k_splits,
                                                   " splits of ", total_stages,
                                                   " 64-element K stages leaves a split empty"));
  // The tile GEMM's split CTAs meet at a barrier: all must be resident at once.
  const int ctas = TileGemmCtas(TileShape(RouterGemmProblem(p), c));
  if (ctas > device.sm_count)
    return absl::InvalidArgumentError(absl::StrCat("config: route_after_gemm's GEMM launches ",
                                                   ctas, " CTAs, more than the ", device.sm_count,
                                                   " SMs of this device"));
  return absl::OkStatus();
}

}  // namespace

DecomposeKDevice CurrentDecomposeKDevice(int sm_count) {
  return {sm_count > 0 ? sm_count : PolledMaxCtas(), ClustersSupported(),
          LoadCublasLt() != nullptr};
}

DecomposeKConfig ChooseDecomposeKConfig(const RouteProblem& problem, int sm_count,
                                        bool allow_polled, bool cut_decode_splits,
                                        bool allow_rank_zero_routes) {
  return ChooseDecomposeKConfigFor(problem, CurrentDecomposeKDevice(sm_count), allow_polled,
                                   cut_decode_splits, allow_rank_zero_routes);
}

DecomposeKConfig ChooseDecomposeKConfigFor(const RouteProblem& problem,
                                           const DecomposeKDevice& device, bool allow_polled,
                                           bool cut_decode_splits, bool allow_rank_zero_routes) {
  // The heuristic's arithmetic takes tokens, experts and hidden in range (0 tokens divided
  // by zero: a C ABI caller's process died of SIGFPE). A problem out of range gets the
  // default config, which CanRouteDecomposeK then refuses, naming the problem's field.
  if (!CheckRouteProblem(problem).ok()) return DecomposeKConfig{};
  const Shape s = RouteShape(problem);
  DecomposeKConfig c = ChooseConfig(s, device, /*allow_cluster=*/true, allow_polled,
                                    cut_decode_splits, allow_rank_zero_routes);
  // Past 128 tokens, routers of 256+ experts whose staged tiles cannot all be resident
  // (DeepSeek-V3 from 193 tokens, Kimi K2 from 129) fell through to the arrival-counter and
  // cluster kernels, which read the weights once per 8-32 tokens: they route after cuBLASLt's
  // GEMM instead, or after the staged-tile GEMM's 64-tile where cuBLASLt cannot be loaded.
  // H100, per call under PDL in the tuner's graph (bench/NOTES.md session 68), at 256 tokens:
  // DeepSeek-V3 10.48 us by cuBLASLt, 13.17 by the 64-tile, against 33.46 for the config taken
  // here before (cluster, 4 splits) and 15.85 for the fastest one-launch config; Kimi K2 12.59
  // and 19.06 against 45.53 (cluster, 2 splits) and 25.23.
  if (allow_polled && !c.polled && s.tokens > kPolledMaxTokens &&
      s.experts >= kRouteAfterGemmMinExperts && s.x_dtype == s.w_dtype &&
      s.x_dtype != DType::kFP32) {
    const DecomposeKConfig after = device.cublaslt
                                       ? ChooseRouteAfterCublasLtConfig()
                                       : ChooseRouteAfterGemmConfig(problem, device, 64);
    if (CheckRouteAfterGemm(problem, after, device).ok()) return after;
  }
  if (c.polled && !c.staged && !c.dedicated_routers && RouterPairsRoute(problem.spec)) {
    const DecomposeKConfig pairs = StagedPairsOfTwoExpertTiles(s, device);
    if (pairs.staged) return pairs;
  }
  // Staged tiles whose grid rows have fewer CTAs than a chunk has tokens would route several
  // tokens a router CTA, a warp each: router pairs route two, half a CTA each, wherever the
  // spec allows. H100, per call under PDL (bench/NOTES.md session 66), GLM-4.5 t=128 at the
  // heuristic's 16 splits (48 CTAs a row): 7.45 -> 7.02 us in the timeline's graph, 7.36 ->
  // 7.04 in the autotuner's. Rows of a CTA a token keep one: DeepSeek-V3 t=128 (64 CTAs a
  // row) lost with pairs at every split count the tuner timed (8.19 against 8.51-9.56).
  if (c.staged && RouterPairsRoute(problem.spec)) {
    const Layout l = MakeLayout(s, c);
    DecomposeKConfig pairs = c;
    pairs.staged_router_pairs = true;
    if (GridRowCtas(s, c, l) < std::min(l.chunk, s.tokens) && CheckConfigOn(s, pairs, device).ok())
      return pairs;
  }
  return c;
}

int PolledOnePassSplits(const RouteProblem& problem, int token_tiles) {
  return OnePassSplits(problem.spec.hidden, token_tiles);
}

int PolledShortPassSplits(const RouteProblem& problem) {
  return SplitsForPassesOf(problem.spec.hidden, kShortPassSteps);
}

DecomposeKConfig ChoosePolledConfig(const RouteProblem& problem, int sm_count, int token_tiles) {
  return PolledConfig(RouteShape(problem), sm_count, token_tiles);
}

DecomposeKConfig ChooseStagedConfig(const RouteProblem& problem, int sm_count, int splits) {
  return StagedConfig(RouteShape(problem), sm_count, splits);
}

DecomposeKConfig ChooseRouteAfterGemmConfig(const RouteProblem& problem,
                                            const DecomposeKDevice& device, int tile, int tile_m) {
  DecomposeKConfig c;
  c.route_after_gemm = true;
  c.gemm_tile = tile;
  c.gemm_tile_m = tile_m;
  c.k_splits = TileGemmSplits(problem.tokens, problem.spec.experts, problem.spec.hidden, tile,
                              device.sm_count, tile_m);
  c.gemm_tma = device.clusters;  // sm_90+, as the TMA
  return c;
}

DecomposeKConfig ChooseRouteAfterCublasLtConfig() {
  DecomposeKConfig c;
  c.route_after_gemm = true;
  c.gemm_cublas = true;
  return c;
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
  if (config.route_after_gemm) return CheckRouteAfterGemm(problem, config, device);
  status = CheckConfigOn(RouteShape(problem), config, device);
  if (!status.ok()) return status;
  if (config.staged_router_pairs && !RouterPairsRoute(problem.spec))
    return absl::InvalidArgumentError(
        "config: staged_router_pairs need a spec whose tokens one CTA routes alone (no softmax "
        "over all experts before the top-k; groups, if any, of whole 32-expert columns scored "
        "by their top one or two)");
  return absl::OkStatus();
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

namespace {

// Whether a bf16/fp16 GEMM takes the staged-tile kernel rather than the router kernels.
// Past 16 rows of A: there the router kernels' 32 x 32 CTA tile reads an operand several
// times or sums hundreds of partials. H100, 32 x 32 x K: 5.5 / 7.0 / 9.0 / 13.0 us against
// 8.3 / 10.0 / 12.4 / 15.6 at K = 8k / 32k / 64k / 128k. At 9-16 rows up to K = 65536
// (the router kernels' two-token-tile path; H100, per call under PDL, two rounds,
// bench/RESULTS.md session 55): 16 x 16 x 8192 / 32768 / 65536 3.78-3.81 / 4.82-4.85 /
// 6.48-6.56 us against 5.65-5.71 / 6.74-6.81 / 7.25-7.27, 16 x 128 x 65536 11.61 against
// 12.47, 16 x 1024 x 32768 34.38 against 37.35. Not past that (16 x 16 x 131072 9.28-9.31
// against 8.75-8.84: the tiles' at most one CTA an SM against the router kernels' 264
// splits), nor at 8 rows or fewer (8 x 8 x 65536 6.27 against 5.40, 1 x 16 x 131072 8.98
// against 6.33, 1 x 4096 x 8192 37.90 against 31.86; 4 x 256 x 16384 a tie).
bool GemmTakesStagedTiles(const GemmProblem& p) {
  if (p.dtype == DType::kFP32) return false;  // tensor cores only
  return p.m > 16 || (p.m > 8 && p.k <= 65536);
}

}  // namespace

// Where cuBLAS's own tiling wins. H100, bench/RESULTS.md session 56: Decompose-K (its best
// config, under PDL) against cublasGemmEx, us per call, weights from HBM. Decompose-K reads
// each operand once per output tile of the other and pays a split-K partial per tile; past
// a few hundred rows of either operand that costs more than cuBLAS's wgmma tiles save:
// - one operand at 512 rows or more, the other at 16 or more: 16 x 512 x 32768 18.8
//   against 16.5, x131072 64.7 / 50.0, 16 x 1024 x 8192 13.2 / 10.4, 1024 x 16 x 8192 12.8
//   / 10.3, 64 x 1024 x 8192 13.6 / 10.8, 17 x 4096 x 8192 40.3 / 27.8, 512 x 64 x 32768
//   20.0 / 18.3, 1024 x 128 x 8192 19.3 / 11.4 (cuBLASLt here 11.35);
// - both at 128 or more, one at 256 or more: 128 x 256 x 7168 7.64 / 7.42, 256 x 128 x 8192
//   7.88 / 7.71, 256 x 256 x 65536 41.2 / 30.0 (session 55);
// - fewer than 16 rows against 2048 or more, or 1024 or more with 32 MiB of that operand
//   or more (a GEMV-like stream): 1 x 4096 x 2048 9.75 / 8.43, 4 x 2048 x 8192 17.5 / 15.6,
//   1 x 1024 x 32768 31.5 / 26.6, 8 x 1024 x 65536 66.0 / 48.4; but 1 x 1024 x 8192 9.96
//   against 10.3.
// Decompose-K keeps the skinny rest: 16 x 256 x 65536 18.4 / 18.0-18.5, 64 x 256 x 16384
// 7.70 / 8.62, 16 x 128 x 65536 11.6 / 12.6, 128 x 128 x 8192 5.4 / 7.2 (at 128 x 128 x
// 65536 / 131072 17.2-18.1 / 29.5-30.4 against 17.1 / 28.8, within runs' spread of each
// other; session 54 had Decompose-K ahead). 96 x 256 x 16384 (10.5 / 9.6) stays too: its
// neighbour 64 x 256 went the other way.
bool GemmTakesCublas(const GemmProblem& p) {
  const int lo = std::min(p.m, p.n), hi = std::max(p.m, p.n);
  if (lo >= 16 && hi >= 512) return true;
  if (lo >= 128 && hi >= 256) return true;
  if (hi >= 2048) return true;
  return hi >= 1024 && size_t(hi) * p.k * DTypeSize(p.dtype) >= (size_t(32) << 20);
}

DecomposeKConfig ChooseGemmConfig(const GemmProblem& problem, const GemmDevice& device,
                                  bool allow_cublas) {
  if (allow_cublas && GemmTakesCublas(problem)) {
    DecomposeKConfig c;
    c.gemm_cublas = true;
    return c;
  }
  const int few_rows_tile = problem.dtype != DType::kFP32 && device.tma
                                ? ChooseFewRowGemmTile(problem.m, problem.n, problem.k)
                                : 0;
  if (few_rows_tile != 0 || GemmTakesStagedTiles(problem)) {
    DecomposeKConfig c;
    c.gemm_tile =
        few_rows_tile != 0 ? few_rows_tile : ChooseGemmTile(problem.m, problem.n, problem.k);
    c.gemm_tile_m = few_rows_tile != 0 ? 0 : ChooseGemmTileM(problem.m, problem.n, problem.k);
    c.k_splits = TileGemmSplits(problem.m, problem.n, problem.k, c.gemm_tile, device.sm_count,
                                c.gemm_tile_m);
    c.gemm_tma = device.tma;
    return c;
  }
  return ChooseConfig(GemmShape(problem), {device.sm_count, false}, /*allow_cluster=*/false,
                      /*allow_polled=*/false, /*cut_decode_splits=*/false,
                      /*allow_rank_zero_routes=*/false);
}

DecomposeKConfig ChooseGemmConfig(const GemmProblem& problem, int sm_count, bool allow_cublas) {
  return ChooseGemmConfig(problem, GemmDevice{sm_count, TileGemmTmaSupported()}, allow_cublas);
}

}  // namespace moe::cuda
