// Top-k by counting: a candidate's rank is how many candidates beat it (a higher key, or an
// equal one with a lower id), counted from broadcast shared-memory loads, all lanes at once
// (RankAmong); the ranks below top_k are the choice, and WriteRankedChoice writes their
// weights. No serial rounds of warp reductions. Here: the shared-memory scratch of
// CtaRouteToken (cta_route_token.cuh) and its sub-phase stamps, the counting primitives,
// RouteFewCandidates (a threshold narrows many experts to at most 32 candidates) and
// RankedWarpRouteToken (routers of at most 32 experts). Stateless device functions;
// router_epilogue.cuh is the header to include.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/epilogue_keys.cuh"
#include "kernels/pdl_device.cuh"
#include "kernels/router_spec.h"

namespace moe::cuda {

// CtaRouteToken's sub-phases, stamped (%globaltimer ns, clock64) by thread 0 into
// marks[2 * phase], marks[2 * phase + 1] when a timeline is asked for: the column warps
// are done (CTA barrier passed), the kept groups are known, the choices are ranked.
enum EpiloguePhase : int { kEpiColumnsDone, kEpiGroupsDone, kEpiRanked, kEpiPhases };
__device__ __forceinline__ void MarkEpiloguePhase(unsigned long long* marks, int phase) {
  if (marks == nullptr || threadIdx.x != 0) return;
  marks[2 * phase] = GlobalTimerNs();
  marks[2 * phase + 1] = clock64();
}

// The warps that route one token together (CtaRouteToken and the column-ranked forms): the
// whole CTA (kHalfCta false), or one half of a CTA of 256 threads, four warps, each half
// routing a token of its own (the staged kernel's router pairs: decompose_k_staged.cu). A
// half synchronises on a named barrier of its own 128 threads (ids 2 and 3: barrier 0 is
// __syncthreads, 1 SyncRankers'), so that neither half waits for the other's token.
constexpr int kHalfCtaThreads = 128;
constexpr int kHalfCtaFirstBarrier = 2;
template <bool kHalfCta>
__device__ __forceinline__ int TeamWarp() {
  return kHalfCta ? (threadIdx.x % kHalfCtaThreads) / 32 : threadIdx.x / 32;
}
// Barrier ids as immediates (a warp-uniform branch): with the id in a register ptxas
// reserves all 16 of the CTA's barriers.
template <bool kHalfCta>
__device__ __forceinline__ void TeamBarrier() {
  if constexpr (kHalfCta) {
    if (threadIdx.x < kHalfCtaThreads)
      asm volatile("bar.sync %0, %1;" ::"n"(kHalfCtaFirstBarrier), "n"(kHalfCtaThreads) : "memory");
    else
      asm volatile("bar.sync %0, %1;" ::"n"(kHalfCtaFirstBarrier + 1), "n"(kHalfCtaThreads)
                   : "memory");
  } else {
    __syncthreads();
  }
}

// What one warp ranking one token by counting needs in shared memory (RankedWarpRouteToken):
// the token's keys, one a lane, and WriteRankedChoice's value per rank.
struct RankedWarpScratch {
  alignas(16) uint32_t keys[32];
  alignas(16) float chosen_value[kMaxTopK];
};

// WideColumnRankedRouteToken ranks at most this many column candidates (a warp per 32).
constexpr int kMaxRankedCandidates = 128;

struct CtaRouteScratch {     // shared memory
  RankedWarpScratch ranked;  // warp 0's: the weights, or the whole top-k of one column
  alignas(16) uint32_t keys[kMaxExperts];
  alignas(16) uint32_t column_top2[2 * (kMaxExperts / 32)];  // per column: best, second key
  alignas(16) float group_score[kMaxExperts / 32];           // group g = column g (group_columns 1)
  // The few experts that can still be chosen, in id order; key 0 past the last. 128 slots:
  // WideColumnRankedRouteToken's top_k of each of up to 16 columns (at most 128 in all);
  // GroupColumnRankedRouteToken uses 64, the others 32.
  alignas(16) uint32_t candidate_key[kMaxRankedCandidates];
  int candidate_id[kMaxRankedCandidates];
  float candidate_logit[kMaxRankedCandidates];  // ColumnRankedRouteToken: stored beside the
                                                // id so warp 0's weights do not wait on a
                                                // dependent load of logits[id]
};

__host__ __device__ inline bool CtaRouteTokenApplies(const EpilogueParams& p) {
  if (p.score_first && p.scoring == kScoringSoftmax) return false;
  if (p.n_group == 1) return true;
  return p.group_columns > 0 && p.group_score_topk <= 2;
}

// The two largest keys across the warp (m1 >= m2; equal when two lanes hold the largest).
__device__ __forceinline__ void WarpTop2Keys(uint32_t k, uint32_t& m1, uint32_t& m2) {
  m1 = __reduce_max_sync(kFullMask, k);
  const unsigned holders = __ballot_sync(kFullMask, k == m1);
  const uint32_t others = __reduce_max_sync(kFullMask, k == m1 ? 0u : k);
  m2 = __popc(holders) > 1 ? m1 : others;
}

// 0xffffffff when key > mine, else 0: the high word of the 64-bit difference, which ptxas
// makes a subtract with a carry out and an add of the carry, no predicate. (Written as
// `rank += key > mine || ...`, each term became a compare, a VIADD and a move predicated
// on the compare, every term waiting on the one before through the count: SASS of the
// H200 build, session 29, ~10-13 cycles a term.)
__device__ __forceinline__ uint32_t MinusOneIfAbove(uint32_t key, uint32_t mine) {
  return uint32_t((uint64_t(mine) - uint64_t(key)) >> 32);
}

// The rank of the candidate held by this lane (key `mine`; lane i holds the key of slot i)
// among the `count` candidates whose keys are in `keys` (shared memory, 16-byte aligned,
// slots in expert-id order; all 32 slots written, key 0 past `count`): how many beat it, a
// higher key or an equal one in a lower slot (a lower id: the tie rule). The rank is the
// round the warp top-k would choose it in. The higher keys are counted from broadcast
// 16-byte loads into four independent sums. The loads of the first 16 slots are issued at
// once, those of the other 16 together after one warp-uniform test of `count`: a test
// before each load kept one load in flight at a time (~35 cycles each, SASS of session
// 30). Equal keys are rare: when the lanes below `count` have distinct counts (one
// REDUX.OR of their bits), no two of them are equal and the count is the rank; otherwise
// one match.any adds the equal keys in lower lanes (match.any on every call cost ~300
// cycles a count of 32 distinct keys, session 30). All 32 lanes must call; count <= 32.
__device__ __forceinline__ int RankAmong(const uint32_t* keys, int count, uint32_t mine) {
  const uint4* k4 = reinterpret_cast<const uint4*>(keys);
  const int lane = threadIdx.x & 31;
  uint32_t minus_above[4] = {0u, 0u, 0u, 0u};
  auto count_above = [&](const uint4& v) {
    minus_above[0] += MinusOneIfAbove(v.x, mine);
    minus_above[1] += MinusOneIfAbove(v.y, mine);
    minus_above[2] += MinusOneIfAbove(v.z, mine);
    minus_above[3] += MinusOneIfAbove(v.w, mine);
  };
  uint4 low[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) low[q] = k4[q];
  if (count > 16) {
    uint4 high[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) high[q] = k4[4 + q];
#pragma unroll
    for (int q = 0; q < 4; ++q) count_above(high[q]);
  }
#pragma unroll
  for (int q = 0; q < 4; ++q) count_above(low[q]);
  const int above = -int((minus_above[0] + minus_above[1]) + (minus_above[2] + minus_above[3]));
  const unsigned counts = __reduce_or_sync(kFullMask, lane < count ? 1u << above : 0u);
  if (__popc(counts) == count) return above;  // warp-uniform
  const unsigned same = __match_any_sync(kFullMask, mine);
  return above + __popc(same & ((1u << lane) - 1u));
}

// Folds f over the values of ranks 0 .. top_k - 1 (shared memory, 16-byte aligned), in rank
// order: 16-byte broadcast loads, so a top-8 sum waits on two loads, not eight behind
// their loop's exit tests. H200 sub-phase stamps: the weights phase 688 -> 595 cycles
// (DeepSeek-V3), 677 -> 605 (Kimi K2), 732 -> 707 (Mixtral). Reading all 16 values into
// registers at once instead raised the dedicated-router kernels' spills from 12-32 to
// 52-84 bytes (ptxas) and was not measured.
template <typename F>
__device__ __forceinline__ float FoldChosen(const float* values, int top_k, float init, F f) {
  const float4* v4 = reinterpret_cast<const float4*>(values);
  float acc = init;
#pragma unroll
  for (int q = 0; q < kMaxTopK / 4; ++q) {
    if (4 * q >= top_k) break;
    const float4 x = v4[q];
    const float xs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (int u = 0; u < 4; ++u) acc = 4 * q + u < top_k ? f(acc, xs[u]) : acc;
  }
  return acc;
}

// WriteChoices for choices ranked by counting, one a lane at most (`valid` lanes with rank
// < top_k): the chosen lanes put a value in shared memory at their rank, and every lane
// reads the top_k values and computes the normaliser itself, in rank order. No shuffle
// tree and no warp reduction in the chain (WriteChoices<1> has a reduction for its slots,
// one for the softmax max and one or two five-step shuffle sums), and one order of
// summation for every lane. For the specs CtaRouteToken routes (no score-first softmax).
// `scored`: for sigmoid scoring, `logit` is already the expert's score (computed off the
// critical path by a column warp), not its logit.
// `sync`: what makes the chosen values visible to every lane that folds them: the warp's
// __syncwarp (SyncWarp), or a named barrier over several ranking warps (SyncRankers).
struct SyncWarp {
  __device__ __forceinline__ void operator()() const { __syncwarp(); }
};
template <typename Sync = SyncWarp>
__device__ __forceinline__ void WriteRankedChoice(const EpilogueParams& p,
                                                  RankedWarpScratch& scratch, bool valid, int rank,
                                                  int id, float logit,
                                                  int32_t* __restrict__ ids_out,
                                                  float* __restrict__ weights_out,
                                                  bool scored = false, Sync sync = Sync{}) {
  const bool chosen = valid && rank < p.top_k;
  float w, total = 0.0f;  // the weight, and the sum of the chosen weights
  if (p.scoring == kScoringSoftmax && std::is_same_v<Sync, SyncWarp>) {
    // Softmax over the chosen logits, the choices in one warp: the largest by one REDUX.MAX
    // of their keys (as WriteChoices), each chosen lane's exponential computed once, in
    // parallel, and only plain sums folded in rank order: the same values in the same
    // order as the form below, which folds a max and then an exponential per chosen value
    // in rank order. H200, the weights phase of the one-token epilogue: Qwen3-30B (top 8)
    // 994 -> 559 cycles, gpt-oss-120b (top 4) 772 -> 509; per call under PDL (same
    // session, two rounds): Qwen3-30B t=1 2.85 -> 2.62 us, t=16 3.65 -> 3.45, Qwen3-235B
    // t=1 2.96 -> 2.74, gpt-oss-120b t=1 2.67 -> 2.58, gpt-oss-20b t=1 2.41 -> 2.34.
    const float top = WarpMaxOfKeys(chosen ? OrderedKey(logit) : 0u);
    const float e = __expf(logit - top);
    if (chosen) scratch.chosen_value[rank] = e;
    sync();
    const float sum =
        FoldChosen(scratch.chosen_value, p.top_k, 0.0f, [](float acc, float v) { return acc + v; });
    const float inv = __fdividef(1.0f, sum);
    w = e * inv;
    if (p.renormalize)
      total = FoldChosen(scratch.chosen_value, p.top_k, 0.0f,
                         [&](float acc, float v) { return acc + v * inv; });
  } else if (p.scoring == kScoringSoftmax) {  // softmax over the chosen logits
    if (chosen) scratch.chosen_value[rank] = logit;
    sync();
    const float top = FoldChosen(scratch.chosen_value, p.top_k, -INFINITY,
                                 [](float acc, float v) { return fmaxf(acc, v); });
    const float sum = FoldChosen(scratch.chosen_value, p.top_k, 0.0f,
                                 [&](float acc, float v) { return acc + __expf(v - top); });
    const float inv = __fdividef(1.0f, sum);
    w = __expf(logit - top) * inv;
    if (p.renormalize)
      total = FoldChosen(scratch.chosen_value, p.top_k, 0.0f,
                         [&](float acc, float v) { return acc + __expf(v - top) * inv; });
  } else {
    w = p.scoring == kScoringSigmoid && !scored ? ScoreOf(kScoringSigmoid, logit, 0.0f, 1.0f)
                                                : logit;
    if (chosen) scratch.chosen_value[rank] = w;
    sync();
    if (p.renormalize)
      total = FoldChosen(scratch.chosen_value, p.top_k, 0.0f,
                         [](float acc, float v) { return acc + v; });
  }
  float scale = p.scaling_factor;
  if (p.renormalize && total > 0.0f) scale = __fdividef(scale, total);
  if (chosen) {
    ids_out[rank] = id;
    weights_out[rank] = w * scale;
  }
  sync();  // chosen_value may be written again (a dedicated router's dry run first)
}

// RouteFewCandidates from 8 experts a lane (more than 128 experts). Measured on the H100
// (same-run A/B, PDL): at 8 and 16 a lane it cut the epilogue (Kimi K2 6.7k -> 4.2k
// cycles; per call Kimi K2 t=1 7.43 -> 6.15 us, DeepSeek-V3 4.55 -> 4.32, GLM-4.5 4.12 ->
// 3.77); at 4 a lane (128 experts: Qwen3, gpt-oss-120b, Llama 4 Maverick) the sort it
// replaces is short and the threshold and compaction cost more: +0.3-0.4 us per call.
constexpr int kFewCandidatesMinP = 8;

// The warp-0 top-k of CtaRouteToken on few candidates, when it can: T is the top_k-th
// largest of the kept columns' best-two keys. Those are keys of distinct experts, so at
// least top_k experts have a key >= T and none below T can be chosen. When at most 32
// experts reach T (the usual case: about top_k), they are compacted into shared memory
// in id order, one a lane, and each lane ranks its candidate by counting the candidates
// that beat it (a higher key, or an equal one at a lower lane, i.e. a lower id: the tie
// rule). The rank is the round it would be chosen in; ranks below top_k are the choice.
// All 32 counts run at once from broadcast loads: no serial rounds of collectives (the
// k rounds, ~75 cycles each, were the bulk of the chain). Returns false (nothing
// written) when T does not exist or more than 32 reach it; the caller then runs the
// P-wide top-k. The threshold count reads only the 2 * P entries a width can have, the
// rank count only the candidates there are, and the weights are WriteRankedChoice's:
// H200, same-run A/B (two rounds, per call under PDL) against the full 32-entry counts
// and WriteChoices<1>: DeepSeek-V3 t=1 4.33 -> 4.08 us, t=16 5.46 -> 5.31, Kimi K2 t=1
// 5.95 -> 5.60, GLM-4.5 t=1 3.79 -> 3.56.
// kSmallestThreshold: with groups, T is the smallest kept best-two key when top_k needs
// every one of them (DeepSeek-V3 and its kin: 4 groups x 2 keys = top 8), one REDUX.MIN
// instead of the 16-entry count. H200: the ranking phase 1131 -> 957 cycles in the kernel
// (1261 -> 782 in epilogue_probe's CTA alone); per call, same run, three rounds under PDL,
// DeepSeek-V3 t=1 3.93 -> 3.79 us. Off at the ungrouped call site: with the check there,
// Kimi K2 and GLM-4.5 (no groups) got 0.08-0.21 us slower.
template <int P, bool kSmallestThreshold>
__device__ __forceinline__ bool RouteFewCandidates(const EpilogueParams& p, const float* logits,
                                                   CtaRouteScratch& scratch,
                                                   const uint32_t (&key)[P], uint32_t kept_columns,
                                                   int32_t* __restrict__ ids_out,
                                                   float* __restrict__ weights_out,
                                                   unsigned long long* marks) {
  const int lane = threadIdx.x & 31;
  const int columns = (p.experts + 31) / 32;
  const bool kept = lane < 2 * columns && ((kept_columns >> (lane / 2)) & 1u);
  const uint32_t mine = kept ? scratch.column_top2[lane] : 0u;
  uint32_t threshold = 0u;
  if constexpr (kSmallestThreshold) {
    // Every kept best-two key needed (DeepSeek-V3: 4 groups x 2 = top 8): T is the
    // smallest of them; 0 (a kept column with one expert) falls back to counting.
    if (p.top_k == 2 * __popc(kept_columns))
      threshold = __reduce_min_sync(kFullMask, kept ? mine : ~0u);
  }
  if (threshold == 0u) {
    int greater = 0, at_least = 0;  // kept best-two keys above / at least mine
    const uint4* all = reinterpret_cast<const uint4*>(scratch.column_top2);
#pragma unroll
    for (int q = 0; q < (2 * P + 3) / 4; ++q) {  // 2 * columns <= 2 * P entries
      const uint4 v = all[q];
      const uint32_t vs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int i = 4 * q + u;
        const uint32_t o = i < 2 * columns && ((kept_columns >> (i / 2)) & 1u) ? vs[u] : 0u;
        greater += o > mine;
        at_least += o >= mine;
      }
    }
    const bool is_threshold = mine != 0u && greater < p.top_k && at_least >= p.top_k;
    threshold = __reduce_max_sync(kFullMask, is_threshold ? mine : 0u);
  }
  if (threshold == 0u) return false;
  unsigned reach[P];
  int total = 0;
#pragma unroll
  for (int j = 0; j < P; ++j) {
    reach[j] = __ballot_sync(kFullMask, key[j] >= threshold);
    total += __popc(reach[j]);
  }
  if (total > 32) return false;
  const unsigned below_me = (1u << lane) - 1u;
  int base = 0;
#pragma unroll
  for (int j = 0; j < P; ++j) {
    if ((reach[j] >> lane) & 1u) {
      const int slot = base + __popc(reach[j] & below_me);
      scratch.candidate_key[slot] = key[j];
      scratch.candidate_id[slot] = lane + 32 * j;
    }
    base += __popc(reach[j]);
  }
  if (lane >= total) scratch.candidate_key[lane] = 0u;  // never beats a candidate
  __syncwarp();
  const uint32_t candidate = scratch.candidate_key[lane];
  const int id = scratch.candidate_id[lane];
  const int rank = RankAmong(scratch.candidate_key, total, candidate);
  const bool valid = lane < total;
  MarkEpiloguePhase(marks, kEpiRanked);
  WriteRankedChoice(p, scratch.ranked, valid, rank, id, valid ? logits[id] : 0.0f, ids_out,
                    weights_out);
  return true;
}

// Expert e's selection key in CtaRouteToken (no score-first softmax there): its score,
// or its logit when scoring follows the choice, plus the correction bias.
__device__ __forceinline__ uint32_t CtaSelectionKey(const EpilogueParams& p, float logit,
                                                    const float* correction_bias, int e) {
  const float v = p.score_first ? ScoreOf(p.scoring, logit, 0.0f, 1.0f) : logit;
  return OrderedKey(v + (p.has_correction_bias ? correction_bias[e] : 0.0f));
}

// Routers of at most this many experts take the top-k by counting (RankedWarpRouteToken):
// a lone token in CtaRouteToken, several a warp each in the routers' per-token loop.
// H200 A/Bs against the top_k rounds (same run, two rounds, per call under PDL). A lone
// token: Mixtral (8 experts, top 2) 3.18 -> 2.95 us, Llama 4 Scout (16, top 1) 3.67 ->
// 3.57. A warp a token (session 28): Mixtral t=4 2.58 -> 2.34, t=16 2.62 -> 2.44, t=128
// 2.98 -> 2.80; Scout t=4 2.39 -> 2.32. gpt-oss-20b (32 experts, top 4) lost twice while
// RankAmong's terms were a predicated chain (+0.00..+0.08); with today's RankAmong
// (session 30, one round against the build before) t=1 2.60 -> 2.40, t=4 2.58 -> 2.42,
// t=16 2.69 -> 2.54, Scout -0.11..-0.16.
constexpr int kRankedMaxExperts = 32;

__host__ __device__ inline bool RankedWarpRouteTokenApplies(const EpilogueParams& p) {
  return p.experts <= kRankedMaxExperts && CtaRouteTokenApplies(p);
}

// One warp routes one token of at most kRankedMaxExperts experts (RankedWarpRouteTokenApplies)
// by counting: lane e holds expert e's key, ranks it against the others' from shared memory
// (RankAmong: the round the top-k rounds would choose it in) and WriteRankedChoice writes
// the choices. No serial rounds of warp reductions. `marks`: CtaRouteToken's sub-phase
// stamps, or null.
__device__ __forceinline__ void RankedWarpRouteToken(const EpilogueParams& p, const float* logits,
                                                     const float* correction_bias,
                                                     RankedWarpScratch& scratch,
                                                     int32_t* __restrict__ ids_out,
                                                     float* __restrict__ weights_out,
                                                     unsigned long long* marks = nullptr) {
  const int lane = threadIdx.x & 31;
  const bool real = lane < p.experts;
  const float logit = real ? logits[lane] : 0.0f;
  const uint32_t k = real ? CtaSelectionKey(p, logit, correction_bias, lane) : 0u;
  scratch.keys[lane] = k;  // 0 past the experts: RankAmong reads whole 16-byte groups
  __syncwarp();
  MarkEpiloguePhase(marks, kEpiColumnsDone);
  const int rank = RankAmong(scratch.keys, p.experts, k);
  MarkEpiloguePhase(marks, kEpiRanked);
  WriteRankedChoice(p, scratch, real, rank, lane, logit, ids_out, weights_out);
}

}  // namespace moe::cuda
