// The routing epilogue on the GPU: one warp turns one token's logits into expert ids and
// weights, with the semantics of RouterSpec (router_spec.h). Shared by the fused
// Decompose-K kernels and the cuBLAS baseline's epilogue kernel.
//
// Lane `lane` holds experts lane + 32 j (j < P, P = experts per lane) in registers; no
// shared memory. Four phases: SelectionKeys, DropUnkeptGroups, WarpTopK, WriteChoices. Every
// comparison is on 32-bit order-preserving keys, so warp-wide
// __reduce_max_sync / __reduce_min_sync (sm_80+) find in one instruction each the highest
// score and, among the lanes holding it, the lowest expert id: the tie rule, exactly.
// One warp runs this alone while the rest of the GPU waits, so it is written for a short
// dependency chain: no shuffle trees where a reduction instruction will do, groups scored
// in parallel, top-k rounds of one reduction each (ties re-done exactly off the common
// path), fast exp/reciprocal intrinsics (relative error ~1e-6, the same function in
// selection and in the returned weights). CtaRouteToken (at the end) spreads one token's
// per-expert work over a whole CTA, for a router CTA with a single token.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/pdl_device.cuh"
#include "kernels/router_spec.h"

namespace moe::cuda {

struct EpilogueParams {
  int experts;
  int top_k;
  int scoring;  // Scoring enum value
  int score_first;
  int has_correction_bias;
  int n_group;
  int topk_group;
  int group_score_topk;
  int renormalize;
  float scaling_factor;
  // Derived on the host, so the device never divides at run time (an integer division is
  // a ~40-instruction dependent chain on the one warp that routes): experts per group, and
  // lane-layout columns (32 experts) per group where groups are whole columns, else 0.
  int per_group;
  int group_columns;
};

// The device copy of a RouterSpec's routing parameters, for its cheapest equivalent form.
inline EpilogueParams MakeEpilogueParams(const RouterSpec& spec) {
  const RouterSpec s = CheapestEquivalentSpec(spec);
  const int per_group = s.experts / s.n_group;
  return {s.experts,
          s.top_k,
          int(s.scoring),
          s.order == RoutingOrder::kScoreThenTopK,
          s.has_correction_bias,
          s.n_group,
          s.topk_group,
          s.group_score_topk,
          s.renormalize,
          s.scaling_factor,
          per_group,
          per_group % 32 == 0 ? per_group / 32 : 0};
}

constexpr int kScoringSoftmax = 0;
constexpr int kScoringSigmoid = 1;
constexpr unsigned kFullMask = 0xffffffffu;

// Order-preserving float -> uint32 map. Key 0 is the image of the NaN with every bit set,
// never produced by the scores here; it means "no candidate".
__device__ __forceinline__ uint32_t OrderedKey(float f) {
  const uint32_t u = __float_as_uint(f + 0.0f);  // -0 becomes +0: equal floats, equal keys
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float KeyToFloat(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
// The float whose key is the largest of the warp's `key`s (one REDUX.MAX; key 0: none).
__device__ __forceinline__ float WarpMaxOfKeys(uint32_t key) {
  return KeyToFloat(__reduce_max_sync(kFullMask, key));
}

// The scoring function of one logit (softmax needs the max and 1/sum over all experts).
__device__ __forceinline__ float ScoreOf(int scoring, float v, float softmax_max,
                                         float softmax_inv) {
  if (scoring == kScoringSoftmax) return __expf(v - softmax_max) * softmax_inv;
  if (scoring == kScoringSigmoid) return __fdividef(1.0f, 1.0f + __expf(-v));
  return v;
}

// Inserts key k into the descending pair (k1, k2).
__device__ __forceinline__ void InsertTop2(uint32_t k, uint32_t& k1, uint32_t& k2) {
  k2 = max(k2, min(k1, k));
  k1 = max(k1, k);
}

// Sum of the two largest keys of a set spread over the warp (as floats), given each lane's
// two largest (k1 >= k2; 0: none); the largest alone when `two` is false.
__device__ __forceinline__ float WarpTop2Sum(uint32_t k1, uint32_t k2, bool two) {
  const uint32_t m1 = __reduce_max_sync(kFullMask, k1);
  const unsigned holders = __ballot_sync(kFullMask, k1 == m1);
  const uint32_t others = __reduce_max_sync(kFullMask, k1 == m1 ? k2 : k1);
  const uint32_t m2 = __popc(holders) > 1 ? m1 : others;
  return two ? KeyToFloat(m1) + KeyToFloat(m2) : KeyToFloat(m1);
}

// The kept groups as kept lane-layout columns, groups being `cols` whole columns each: one
// division a lane, in parallel, not one per column in the lane's serial chain.
__device__ __forceinline__ uint32_t KeptColumns(uint32_t kept_groups, int cols, int columns) {
  if (cols == 1) return kept_groups;  // DeepSeek-V3: group g is column g
  const int lane = threadIdx.x & 31;
  return __ballot_sync(kFullMask, lane < columns && ((kept_groups >> (lane / cols)) & 1u));
}

// Does group (score a, id ia) come before (b, ib): higher score, then lower id?
__device__ __forceinline__ bool Beats(float a, int ia, float b, int ib) {
  return a > b || (a == b && ia < ib);
}

// The sum of v[0..N) (N a power of two) as a balanced tree of independent adds, so a count
// of N comparisons waits on log2(N) dependent adds, not on N. (Written as `count += a > b`
// in a loop, ptxas emits a predicated move after each compare, one waiting for the last:
// ~12 cycles a term in the ncu source counters of a warm CtaRouteToken, H200. The tree
// did not pay everywhere: in RouteFewCandidates' threshold counts and RankAmong the
// warm epilogue got 80-130 cycles slower; RankAmong now sums MinusOneIfAbove, no compares.)
template <int N>
__device__ __forceinline__ int TreeSum(int (&v)[N]) {
  static_assert((N & (N - 1)) == 0, "TreeSum: N must be a power of two");
#pragma unroll
  for (int w = 1; w < N; w *= 2)
#pragma unroll
    for (int i = 0; i + w < N; i += 2 * w) v[i] += v[i + w];
  return v[0];
}

// The kept-groups mask from every group's score, the same in every lane (score[q] for
// group q; entries from n_group on are ignored): lane g ranks group g by counting the
// groups that beat it (a higher score, or an equal one and a lower id) and keeps it when
// fewer than topk_group do.
template <int P>
__device__ __forceinline__ uint32_t KeptGroupsOfScores(const EpilogueParams& p, float (&score)[P]) {
  const int lane = threadIdx.x & 31;
  float mine = -INFINITY;
#pragma unroll
  for (int q = 0; q < P; ++q) {
    if (q >= p.n_group) score[q] = -INFINITY;
    mine = q == lane ? score[q] : mine;
  }
  int rank = 0;
#pragma unroll
  for (int q = 0; q < P; ++q) rank += Beats(score[q], q, mine, lane);
  return __ballot_sync(kFullMask, lane < p.n_group && rank < p.topk_group);
}

// Grouped selection when every group is whole columns of the lane layout (experts per
// group a multiple of 32, as DeepSeek-V3's 8 x 32) and the group score sums at most two:
// every group is scored at once from column maxima; the scores are warp-uniform, so each
// lane ranks its own group without further communication. Returns the kept-groups mask.
template <int P>
__device__ __forceinline__ uint32_t KeptGroupsByColumns(const EpilogueParams& p,
                                                        const uint32_t (&key)[P]) {
  const int cols = p.group_columns;
  const bool two = p.group_score_topk == 2;
  float score[P];
  if (cols == 1) {  // DeepSeek-V3: group q is column q
#pragma unroll
    for (int q = 0; q < P; ++q) score[q] = WarpTop2Sum(key[q], 0u, two);
  } else {
#pragma unroll
    for (int q = 0; q < P; ++q) {
      uint32_t k1 = 0, k2 = 0;
#pragma unroll
      for (int j = 0; j < P; ++j) InsertTop2(j / cols == q ? key[j] : 0u, k1, k2);
      score[q] = WarpTop2Sum(k1, k2, two);
    }
  }
  return KeptGroupsOfScores<P>(p, score);
}

// The kept-groups mask when lane g (< n_group) holds group g's score: a group is kept when
// fewer than topk_group groups beat it (a higher score, or an equal one and a lower id).
__device__ __forceinline__ uint32_t KeptGroupsOfLaneScores(const EpilogueParams& p, float mine) {
  const int lane = threadIdx.x & 31;
  int rank = 0;
  for (int g = 0; g < p.n_group; ++g) rank += Beats(__shfl_sync(kFullMask, mine, g), g, mine, lane);
  return __ballot_sync(kFullMask, lane < p.n_group && rank < p.topk_group);
}

// Grouped selection for any group size and group_score_topk: groups are scored one after
// another, each by repeatedly taking (and removing) the best remaining member. Slower; no
// released family needs it.
template <int P>
__device__ uint32_t KeptGroupsGeneric(const EpilogueParams& p, const uint32_t (&key)[P]) {
  const int lane = threadIdx.x & 31;
  const int per_group = p.per_group;
  float mine = -INFINITY;  // lane g: the score of group g
  for (int g = 0; g < p.n_group; ++g) {
    uint32_t rest[P];
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const int e = lane + 32 * j;
      rest[j] = e < p.experts && e / per_group == g ? key[j] : 0u;
    }
    float score = 0.0f;
    for (int t = 0; t < p.group_score_topk; ++t) {
      uint32_t best = 0;
      int best_j = 0;
#pragma unroll
      for (int j = 0; j < P; ++j)
        if (rest[j] > best) {
          best = rest[j];
          best_j = j;
        }
      const uint32_t top = __reduce_max_sync(kFullMask, best);
      const uint32_t id = uint32_t(lane + 32 * best_j);
      const uint32_t taken = __reduce_min_sync(kFullMask, best == top ? id : 0xffffffffu);
#pragma unroll
      for (int j = 0; j < P; ++j)
        if (id == taken && j == best_j) rest[j] = 0u;
      score += KeyToFloat(top);
    }
    if (lane == g) mine = score;
  }
  return KeptGroupsOfLaneScores(p, mine);
}

// What scoring the selection used, to score the chosen experts the same way.
struct TokenScoring {
  float softmax_max = 0.0f;  // softmax over all experts (score-first softmax only)
  float softmax_inv = 1.0f;
};

// Phase 1: selection keys (score-first scoring, plus the correction bias); key 0 for
// lanes past the experts. The scoring switch is outside the loops: one straight line each.
template <int P>
__device__ __forceinline__ TokenScoring SelectionKeys(const EpilogueParams& p, const float (&l)[P],
                                                      const float (&cb)[P], uint32_t (&key)[P]) {
  const int lane = threadIdx.x & 31;
  TokenScoring sc;
  const int scoring = p.score_first ? p.scoring : -1;  // -1: select on the logits
  if (scoring == kScoringSoftmax) {
    uint32_t mk = 0;
#pragma unroll
    for (int j = 0; j < P; ++j) mk = max(mk, lane + 32 * j < p.experts ? OrderedKey(l[j]) : 0u);
    sc.softmax_max = WarpMaxOfKeys(mk);
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < P; ++j)
      s += lane + 32 * j < p.experts ? __expf(l[j] - sc.softmax_max) : 0.0f;
    sc.softmax_inv = __fdividef(1.0f, WarpSum(s));
#pragma unroll
    for (int j = 0; j < P; ++j)
      key[j] = OrderedKey(__expf(l[j] - sc.softmax_max) * sc.softmax_inv + cb[j]);
  } else if (scoring == kScoringSigmoid) {
#pragma unroll
    for (int j = 0; j < P; ++j)
      key[j] = OrderedKey(ScoreOf(kScoringSigmoid, l[j], 0.0f, 1.0f) + cb[j]);
  } else {
#pragma unroll
    for (int j = 0; j < P; ++j) key[j] = OrderedKey(l[j] + cb[j]);
  }
#pragma unroll
  for (int j = 0; j < P; ++j) key[j] = lane + 32 * j < p.experts ? key[j] : 0u;
  return sc;
}

// Phase 2 (n_group > 1): experts outside the topk_group best groups become unselectable.
template <int P>
__device__ __forceinline__ void DropUnkeptGroups(const EpilogueParams& p, uint32_t (&key)[P]) {
  const int lane = threadIdx.x & 31;
  const int per_group = p.per_group;
  if (p.group_columns > 0 && p.group_score_topk <= 2) {
    const uint32_t kept_columns =
        KeptColumns(KeptGroupsByColumns<P>(p, key), p.group_columns, (p.experts + 31) / 32);
#pragma unroll
    for (int j = 0; j < P; ++j)
      if (!((kept_columns >> j) & 1u)) key[j] = 0u;
    return;
  }
  const uint32_t kept = KeptGroupsGeneric<P>(p, key);
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int e = lane + 32 * j;
    if (e < p.experts && !((kept >> (e / per_group)) & 1u)) key[j] = 0u;
  }
}

// The lane's best key and its index (lowest index among equals), by a tree: log2(P)
// dependent steps instead of P - 1.
template <int P>
__device__ __forceinline__ void LaneBest(const uint32_t (&key)[P], uint32_t& best, int& best_j) {
  uint32_t k[P];
  int idx[P];
#pragma unroll
  for (int j = 0; j < P; ++j) {
    k[j] = key[j];
    idx[j] = j;
  }
#pragma unroll
  for (int w = 1; w < P; w *= 2)
#pragma unroll
    for (int j = 0; j + w < P; j += 2 * w) {
      const bool right = k[j + w] > k[j];  // ties keep the lower index
      k[j] = right ? k[j + w] : k[j];
      idx[j] = right ? idx[j + w] : idx[j];
    }
  best = k[0];
  best_j = idx[0];
}

// A lane's chosen experts: slot m holds the round it was chosen in (-1: empty), its id
// and its logit.
template <int P>
struct LaneChoices {
  int round[P];
  int id[P];
  float logit[P];
};

// Sorts the lane's (key, index) pairs by descending key: a bitonic network, all indices
// compile-time. Equal keys may come out in either order (WarpTopK checks).
template <int P>
__device__ __forceinline__ void SortDescending(uint32_t (&k)[P], int (&j)[P]) {
#pragma unroll
  for (int size = 2; size <= P; size *= 2)
#pragma unroll
    for (int stride = size / 2; stride > 0; stride /= 2)
#pragma unroll
      for (int i = 0; i < P; ++i) {
        const int o = i ^ stride;
        if (o <= i) continue;
        const bool swap = (i & size) == 0 ? k[i] < k[o] : k[i] > k[o];
        const uint32_t ki = k[i];
        const int ji = j[i];
        k[i] = swap ? k[o] : ki;
        j[i] = swap ? j[o] : ji;
        k[o] = swap ? ki : k[o];
        j[o] = swap ? ji : j[o];
      }
}

// Exact top-k for the rare case of equal keys: each round the warp takes the best head
// (highest key, then lowest expert id) and only that lane rescans. round[j]: the round
// expert lane + 32 j was chosen in, or -1.
template <int P>
__device__ void WarpTopKExact(int top_k, uint32_t (&key)[P], int (&round)[P]) {
  const int lane = threadIdx.x & 31;
  uint32_t head;
  int head_j;
  LaneBest<P>(key, head, head_j);
#pragma unroll
  for (int j = 0; j < P; ++j) round[j] = -1;
  for (int i = 0; i < top_k; ++i) {
    const uint32_t best = __reduce_max_sync(kFullMask, head);
    const uint32_t mine = uint32_t(lane + 32 * head_j);
    const bool won = mine == __reduce_min_sync(kFullMask, head == best ? mine : 0xffffffffu);
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const bool taken = won && j == head_j;
      round[j] = taken ? i : round[j];
      key[j] = taken ? 0u : key[j];
    }
    LaneBest<P>(key, head, head_j);
  }
}

// Phase 3: top-k. Each lane sorts its keys once; then each round is one reduction (the
// best lane head) and a one-step shift of the winner's queue: no rescan, no id exchange.
// Exact ties (two equal keys, in one lane or two) are only recorded on the way, off the
// critical path; when one occurred the selection is redone exactly (WarpTopKExact), so
// the tie rule holds. kCountWinsOnce: a tie is found from the total of the lanes' wins
// after the rounds (one REDUX.ADD), not from a ballot in each round. H200, session 31:
// the top-k phase of a warp alone, warm, Qwen3-30B 1123 -> 1019 cycles, gpt-oss-120b 830
// -> 784; per call under PDL, against a rebuild of the same source (a rebuild alone moved
// other rows by up to 0.1 us, bench/NOTES.md), Qwen3-30B t=16 3.85 -> 3.79 us, t=64 4.01
// -> 3.97 (a warp a token in the cluster router). Off in the dedicated routers (see
// RouteChunkTokensP).
template <int P, bool kCountWinsOnce = true>
__device__ __forceinline__ void WarpTopK(int top_k, const uint32_t (&key)[P], const float (&l)[P],
                                         LaneChoices<P>& out) {
  const int lane = threadIdx.x & 31;
  uint32_t q[P];
  int qj[P];
#pragma unroll
  for (int j = 0; j < P; ++j) {
    q[j] = key[j];
    qj[j] = j;
  }
  SortDescending<P>(q, qj);
  bool tie = false;
#pragma unroll
  for (int m = 0; m + 1 < P; ++m) tie |= q[m] != 0u && q[m] == q[m + 1];
#pragma unroll
  for (int m = 0; m < P; ++m) out.id[m] = qj[m];  // the expert's j for now; id below
  unsigned won_rounds = 0, shared_round = 0;
  for (int i = 0; i < top_k; ++i) {
    const uint32_t best = __reduce_max_sync(kFullMask, q[0]);
    const bool won = q[0] == best;
    if constexpr (!kCountWinsOnce) {
      const unsigned winners = __ballot_sync(kFullMask, won);
      shared_round |= winners & (winners - 1);  // more than one lane: a tie (or none left)
    }
    won_rounds |= unsigned(won) << i;
#pragma unroll
    for (int m = 0; m + 1 < P; ++m) q[m] = won ? q[m + 1] : q[m];
    q[P - 1] = won ? 0u : q[P - 1];
  }
  // The lane's wins are its first sorted slots, in round order; each slot's logit is
  // picked from l by its j (only the filled slots, usually one or two). Every round has a
  // winner, so more wins than rounds across the warp means two lanes shared a round.
  const int filled = __popc(won_rounds);
  const int slots = int(__reduce_max_sync(kFullMask, uint32_t(filled)));
  const bool shared_wins = kCountWinsOnce
                               ? __reduce_add_sync(kFullMask, uint32_t(filled)) != uint32_t(top_k)
                               : shared_round != 0;
#pragma unroll
  for (int m = 0; m < P; ++m) {
    out.round[m] = won_rounds ? __ffs(won_rounds) - 1 : -1;
    won_rounds &= won_rounds - 1;
    out.logit[m] = 0.0f;
    if (m >= slots) continue;
#pragma unroll
    for (int j = 0; j < P; ++j) out.logit[m] = out.id[m] == j ? l[j] : out.logit[m];
  }
#pragma unroll
  for (int m = 0; m < P; ++m) out.id[m] = lane + 32 * out.id[m];
  // (Without kCountWinsOnce, one vote as before: the short-circuit form changed ptxas'
  // register allocation of the dedicated routers' two-tile kernel, 28/36 -> 32/84 bytes.)
  if (kCountWinsOnce ? shared_wins || __any_sync(kFullMask, tie)
                     : __any_sync(kFullMask, tie || shared_wins)) {
    uint32_t k[P];
    int round[P];
#pragma unroll
    for (int j = 0; j < P; ++j) k[j] = key[j];
    WarpTopKExact<P>(top_k, k, round);
#pragma unroll
    for (int j = 0; j < P; ++j) {
      out.round[j] = round[j];
      out.id[j] = lane + 32 * j;
      out.logit[j] = l[j];
    }
  }
}

// Phase 4: weights of the chosen experts, computed and written by the lanes that own them.
// Only the slots some lane filled are scored (usually one or two): a uniform early exit,
// one loop per scoring mode.
template <int P>
__device__ __forceinline__ void WriteChoices(const EpilogueParams& p, const LaneChoices<P>& c,
                                             TokenScoring sc, int32_t* __restrict__ ids_out,
                                             float* __restrict__ weights_out) {
  int used = 0;  // slots up to the last filled one (a prefix except after WarpTopKExact)
#pragma unroll
  for (int m = 0; m < P; ++m) used = c.round[m] >= 0 ? m + 1 : used;
  const int slots = int(__reduce_max_sync(kFullMask, uint32_t(used)));
  float w[P];
#pragma unroll
  for (int m = 0; m < P; ++m) w[m] = 0.0f;
  if (!p.score_first && p.scoring == kScoringSoftmax) {  // softmax over the chosen logits
    uint32_t mk = 0;
#pragma unroll
    for (int m = 0; m < P; ++m) mk = max(mk, c.round[m] >= 0 ? OrderedKey(c.logit[m]) : 0u);
    const float top = WarpMaxOfKeys(mk);
#pragma unroll
    for (int m = 0; m < P; ++m) {
      if (m >= slots) break;
      w[m] = c.round[m] >= 0 ? __expf(c.logit[m] - top) : 0.0f;
    }
    float sum = 0.0f;
#pragma unroll
    for (int m = 0; m < P; ++m) sum += w[m];
    const float inv = __fdividef(1.0f, WarpSum(sum));
#pragma unroll
    for (int m = 0; m < P; ++m) w[m] *= inv;
  } else if (p.scoring == kScoringSigmoid) {
#pragma unroll
    for (int m = 0; m < P; ++m) {
      if (m >= slots) break;
      w[m] = ScoreOf(kScoringSigmoid, c.logit[m], 0.0f, 1.0f);
    }
  } else if (p.scoring == kScoringSoftmax) {  // score-first softmax over all experts
#pragma unroll
    for (int m = 0; m < P; ++m) {
      if (m >= slots) break;
      w[m] = __expf(c.logit[m] - sc.softmax_max) * sc.softmax_inv;
    }
  } else {
#pragma unroll
    for (int m = 0; m < P; ++m) w[m] = c.logit[m];
  }
  float scale = p.scaling_factor;
  if (p.renormalize) {
    float sum = 0.0f;
#pragma unroll
    for (int m = 0; m < P; ++m) sum += c.round[m] >= 0 ? w[m] : 0.0f;
    sum = WarpSum(sum);
    if (sum > 0.0f) scale = __fdividef(scale, sum);
  }
#pragma unroll
  for (int m = 0; m < P; ++m) {
    if (m >= slots) break;
    if (c.round[m] >= 0) {
      ids_out[c.round[m]] = c.id[m];
      weights_out[c.round[m]] = w[m] * scale;
    }
  }
}

// One warp routes one token. l: the token's logits (router bias included) and cb: the
// correction bias (zeros when the spec has none), expert lane + 32 j in element j. Writes
// top_k ids and weights. All 32 lanes must call.
template <int P, bool kCountWinsOnce = true>
__device__ __forceinline__ void WarpRouteTokenRegs(const EpilogueParams& p, const float (&l)[P],
                                                   const float (&cb)[P],
                                                   int32_t* __restrict__ ids_out,
                                                   float* __restrict__ weights_out) {
  uint32_t key[P];
  LaneChoices<P> chosen;
  const TokenScoring sc = SelectionKeys<P>(p, l, cb, key);
  if (p.n_group > 1) DropUnkeptGroups<P>(p, key);
  WarpTopK<P, kCountWinsOnce>(p.top_k, key, l, chosen);
  WriteChoices<P>(p, chosen, sc, ids_out, weights_out);
}

// One token's logits (global or shared memory) and the correction bias (global or shared;
// may be null when the spec has none) into the lane layout: expert lane + 32 j in element
// j, zeros past the experts.
template <int P>
__device__ __forceinline__ void LoadTokenInputs(const EpilogueParams& p, const float* logits,
                                                const float* correction_bias, float (&l)[P],
                                                float (&cb)[P]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int e = lane + 32 * j;
    l[j] = e < p.experts ? logits[e] : 0.0f;
    cb[j] = e < p.experts && p.has_correction_bias ? correction_bias[e] : 0.0f;
  }
}

// Loads one token's inputs (LoadTokenInputs) and routes it.
template <int P, bool kCountWinsOnce = true>
__device__ __forceinline__ void WarpRouteTokenP(const EpilogueParams& p, const float* logits,
                                                const float* correction_bias,
                                                int32_t* __restrict__ ids_out,
                                                float* __restrict__ weights_out) {
  float l[P], cb[P];
  LoadTokenInputs<P>(p, logits, correction_bias, l, cb);
  WarpRouteTokenRegs<P, kCountWinsOnce>(p, l, cb, ids_out, weights_out);
}

// ---------------------------------------------------------------------------------------
// One token routed by a whole CTA of `warps` warps (the polled kernel's router CTA when it
// has a single token): the per-expert work, scores and the top two keys of each column,
// is spread over the warps, a column each; warp 0 then ranks the groups and runs the
// top-k: by counting where it can (RouteFewCandidates from 8 experts a lane, and routers
// of at most kRankedMaxExperts), else the serial rounds. For specs without score-first
// softmax (whose max and sum span the warps) and with no groups or column groups (experts
// per group a multiple of 32, group scores of one or two): CtaRouteTokenApplies.

// CtaRouteToken's sub-phases, stamped (%globaltimer ns, clock64) by thread 0 into
// marks[2 * phase], marks[2 * phase + 1] when a timeline is asked for: the column warps
// are done (CTA barrier passed), the kept groups are known, the choices are ranked.
enum EpiloguePhase : int { kEpiColumnsDone, kEpiGroupsDone, kEpiRanked, kEpiPhases };
__device__ __forceinline__ void MarkEpiloguePhase(unsigned long long* marks, int phase) {
  if (marks == nullptr || threadIdx.x != 0) return;
  marks[2 * phase] = GlobalTimerNs();
  marks[2 * phase + 1] = clock64();
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

// Column-ranked top-k (ColumnRankedRouteToken): routers of 33 to 128 experts without
// groups whose columns' top_k fit in one warp together (columns x top_k <= 32: Qwen3,
// gpt-oss-120b, Llama 4 Maverick). H200, against the top_k rounds (per call under PDL,
// one round, session 30, with today's RankAmong): gpt-oss-120b t=1 3.19 -> 2.87, t=4
// 3.27 -> 3.00, Maverick t=1 3.03 -> 2.80, Qwen3-30B t=1 3.26 -> 3.03, t=4 3.32 -> 3.08,
// Qwen3-235B t=1 3.44 -> 3.22. Lost while RankAmong was a predicated chain or called
// match.any every time (sessions 29, 30).
template <int P>
__host__ __device__ inline bool ColumnRankedApplies(const EpilogueParams& p) {
  const int columns = (p.experts + 31) / 32;
  return P >= 2 && P <= 4 && p.n_group == 1 && columns * p.top_k <= 32;
}

// A column warp's step of the column-ranked top-k (ColumnRankedRouteToken,
// GroupColumnRankedRouteToken): lane's expert of column j (key k) goes into keys[], is
// ranked within the column by counting (RankAmong; ties: lower lane, lower id), and the
// column's best top_k put key, id and `value` at slots j * top_k + local rank: in rank
// order, so that slot order is the tie rule's id order.
__device__ __forceinline__ void KeepColumnCandidates(const EpilogueParams& p,
                                                     CtaRouteScratch& scratch, int j, uint32_t k,
                                                     int id, float value) {
  const int lane = threadIdx.x & 31;
  scratch.keys[lane + 32 * j] = k;
  __syncwarp();
  const int local = RankAmong(scratch.keys + 32 * j, 32, k);
  if (local < p.top_k) {
    const int slot = j * p.top_k + local;
    scratch.candidate_key[slot] = k;
    scratch.candidate_id[slot] = id;
    scratch.candidate_logit[slot] = value;
  }
}

// One token by a CTA, ColumnRankedApplies: the warp of column j ranks the column's keys by
// counting within it (RankAmong; ties: lower lane, lower id) and puts its best top_k in
// shared memory at slots j * top_k + local rank. So a column's candidates are in rank order
// and columns in id order: slot order breaks equal keys as the tie rule does. Lanes past
// the experts have key 0 and rank last, so every slot of a column is written. After a CTA
// barrier warp 0 ranks the candidates by counting again: a candidate's rank among them is
// its rank among all experts when it is chosen (whatever beats it is a candidate too), and
// top_k or more otherwise (every chosen expert beats it). Two counts of a few keys and one
// CTA barrier in place of the sort, top_k rounds of warp reductions and WriteChoices.
template <int P>
__device__ __forceinline__ void ColumnRankedRouteToken(const EpilogueParams& p, const float* logits,
                                                       const float* correction_bias,
                                                       CtaRouteScratch& scratch, int warps,
                                                       int32_t* __restrict__ ids_out,
                                                       float* __restrict__ weights_out,
                                                       unsigned long long* marks) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int columns = (p.experts + 31) / 32;
  for (int j = warp; j < columns; j += warps) {
    const int e = lane + 32 * j;
    const bool real = e < p.experts;
    const float logit = real ? logits[e] : 0.0f;
    const uint32_t k = real ? CtaSelectionKey(p, logit, correction_bias, e) : 0u;
    KeepColumnCandidates(p, scratch, j, k, real ? e : -1, logit);
  }
  const int count = columns * p.top_k;
  if (warp == 0 && lane >= count) scratch.candidate_key[lane] = 0u;  // RankAmong reads by 4
  __syncthreads();
  if (warp != 0) return;
  MarkEpiloguePhase(marks, kEpiColumnsDone);
  const uint32_t key = scratch.candidate_key[lane];
  const bool valid = lane < count && scratch.candidate_id[lane] >= 0;
  const int rank = RankAmong(scratch.candidate_key, count, key);
  MarkEpiloguePhase(marks, kEpiRanked);
  WriteRankedChoice(p, scratch.ranked, valid, rank, valid ? scratch.candidate_id[lane] : 0,
                    valid ? scratch.candidate_logit[lane] : 0.0f, ids_out, weights_out);
}

// The kept groups when group g is column g (DeepSeek-V3's 8 groups of 32), from the group
// scores the column warps wrote (shared memory, 16-byte aligned; entries from n_group on
// are ignored): lane g reads its own, every lane reads all from broadcast 16-byte loads and
// lane g ranks group g by counting the groups that beat it (KeptGroupsOfScores' rule).
// Before, warp 0 decoded the columns' top two keys into scores and picked its own by a
// select chain: ~140 serial instructions, ~700 of DeepSeek-V3's ~3.3k warm cycles (ncu).
// H200: the groups phase of a warm CtaRouteToken alone 935 -> 444 cycles; per call (same
// run, two rounds, PDL) DeepSeek-V3 t=1 4.03 -> 3.94 us, t=16 5.31 -> 5.16.
template <int P>
__device__ __forceinline__ uint32_t KeptGroupsOfGroupScores(const EpilogueParams& p,
                                                            const float* group_score) {
  const int lane = threadIdx.x & 31;
  const float mine = lane < p.n_group ? group_score[lane] : -INFINITY;
  const float4* s4 = reinterpret_cast<const float4*>(group_score);
  int beats[4 * ((P + 3) / 4)];
#pragma unroll
  for (int q = 0; q < (P + 3) / 4; ++q) {  // n_group = columns <= P
    const float4 v = s4[q];
    const float vs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int g = 4 * q + u;
      beats[g] = g < p.n_group && Beats(vs[u], g, mine, lane);
    }
  }
  const int rank = TreeSum(beats);
  return __ballot_sync(kFullMask, lane < p.n_group && rank < p.topk_group);
}

// Grouped routers whose groups are whole columns (group g = column g: DeepSeek-V3's 8 x 32)
// and whose kept groups' top_k fit one warp (topk_group x top_k <= 32), at most 8 columns
// of top_k <= 8 candidates each.
template <int P>
__host__ __device__ inline bool GroupColumnRankedApplies(const EpilogueParams& p) {
  const int columns = (p.experts + 31) / 32;
  return P <= 8 && p.n_group > 1 && p.group_columns == 1 && p.n_group == columns &&
         p.top_k >= p.group_score_topk && p.top_k <= 8 && p.topk_group * p.top_k <= 32 &&
         CtaRouteTokenApplies(p);
}

// One token by a CTA, GroupColumnRankedApplies: ColumnRankedRouteToken with groups. The warp
// of column j ranks the column's keys by counting (RankAmong), puts its best top_k in
// shared memory at slots j * top_k + local rank (key, id, and for sigmoid scoring the score
// itself, so that warp 0 computes no exponential), and scores its group from its ranks 0
// and 1. After a CTA barrier warp 0 ranks the group scores (KeptGroupsOfGroupScores), lane
// i takes slot i % top_k of the (i / top_k)-th kept column, and ranks it among those
// topk_group x top_k candidates by counting. Candidates come in column order, each column's
// in rank order: slot order is the tie rule's id order. A candidate's rank among them is
// its rank among the kept experts when it is chosen (whatever beats it is in its column's
// top_k, so a candidate too), and top_k or more otherwise. In place of the smallest-key
// threshold, eight ballots, a compaction and its count (RouteFewCandidates): a count in
// every column warp, in parallel, and one of 32 keys in warp 0.
template <int P>
__device__ __forceinline__ void GroupColumnRankedRouteToken(
    const EpilogueParams& p, const float* logits, const float* correction_bias,
    CtaRouteScratch& scratch, int warps, int32_t* __restrict__ ids_out,
    float* __restrict__ weights_out, unsigned long long* marks) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int columns = (p.experts + 31) / 32;
  const bool sigmoid = p.scoring == kScoringSigmoid;
  for (int j = warp; j < columns; j += warps) {
    const int e = lane + 32 * j;  // every expert is real: groups are whole columns
    const float logit = logits[e];
    const float score = sigmoid ? ScoreOf(kScoringSigmoid, logit, 0.0f, 1.0f) : logit;
    const uint32_t k = OrderedKey((p.score_first ? score : logit) +
                                  (p.has_correction_bias ? correction_bias[e] : 0.0f));
    KeepColumnCandidates(p, scratch, j, k, e, sigmoid ? score : logit);
    __syncwarp();
    if (lane == 0) {
      const uint32_t first = scratch.candidate_key[j * p.top_k];
      const uint32_t second = scratch.candidate_key[j * p.top_k + 1];
      scratch.group_score[j] =
          p.group_score_topk == 2 ? KeyToFloat(first) + KeyToFloat(second) : KeyToFloat(first);
    }
  }
  __syncthreads();
  if (warp != 0) return;
  MarkEpiloguePhase(marks, kEpiColumnsDone);
  const uint32_t kept = KeptGroupsOfGroupScores<P>(p, scratch.group_score);
  MarkEpiloguePhase(marks, kEpiGroupsDone);
  // Lane i: the (i / top_k)-th kept column (q-th set bit of `kept`), its slot i % top_k.
  const int count = p.topk_group * p.top_k;
  const int q = lane / p.top_k, r = lane - q * p.top_k;
  int column = 0;
#pragma unroll
  for (int c = 0; c < P; ++c) column += c < columns && __popc(kept & ((2u << c) - 1u)) <= q ? 1 : 0;
  const bool valid = lane < count && column < columns;  // fewer kept: non-finite scores only
  const int slot = column * p.top_k + r;
  const uint32_t key = valid ? scratch.candidate_key[slot] : 0u;
  const int id = valid ? scratch.candidate_id[slot] : 0;
  const float value = valid ? scratch.candidate_logit[slot] : 0.0f;
  scratch.ranked.keys[lane] = key;  // 0 past count: RankAmong reads whole 16-byte groups
  __syncwarp();
  const int rank = RankAmong(scratch.ranked.keys, count, key);
  MarkEpiloguePhase(marks, kEpiRanked);
  WriteRankedChoice(p, scratch.ranked, valid, rank, id, value, ids_out, weights_out,
                    /*scored=*/sigmoid);
}

// Routers of more than 256 experts without groups (Kimi K2: 384 experts, 12 columns, top
// 8) whose columns' top_k are at most kMaxRankedCandidates together.
template <int P>
__host__ __device__ inline bool WideColumnRankedApplies(const EpilogueParams& p) {
  const int columns = (p.experts + 31) / 32;
  return P == 16 && p.n_group == 1 && columns * p.top_k <= kMaxRankedCandidates &&
         CtaRouteTokenApplies(p);
}

// The rank of the candidate in this thread's slot (slot 32 w + i for lane i of warp w;
// key `mine`, non-zero where it matters) among the `count` candidates in `keys` (shared
// memory, 16-byte aligned, zero from count to the next multiple of 32): how many beat it,
// a higher key or an equal one in a lower slot. Whole warps' slots below the thread's are
// beaten by keys >= mine, i.e. > mine - 1, those above by keys > mine, so only the warp's
// own 32 slots need a per-slot threshold. Broadcast 16-byte loads, 32 keys in flight at a
// time, into four independent sums (RankAmong's MinusOneIfAbove).
__device__ __forceinline__ int RankAmongSlots(const uint32_t* keys, int count, uint32_t mine) {
  const uint4* k4 = reinterpret_cast<const uint4*>(keys);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const uint32_t below = mine - 1u;
  uint32_t minus_above[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int g = 0; g < kMaxRankedCandidates / 32; ++g) {
    if (32 * g >= count) break;  // warp-uniform
    uint4 v[8];
#pragma unroll
    for (int q = 0; q < 8; ++q) v[q] = k4[8 * g + q];
    const uint32_t group_threshold = g < warp ? below : mine;
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      const uint32_t vs[4] = {v[q].x, v[q].y, v[q].z, v[q].w};
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const uint32_t threshold = g != warp ? group_threshold : 4 * q + u < lane ? below : mine;
        minus_above[u] += MinusOneIfAbove(vs[u], threshold);
      }
    }
  }
  return -int((minus_above[0] + minus_above[1]) + (minus_above[2] + minus_above[3]));
}

// RankAmong of two lanes' keys, each among its own whole column of 32 (count 32), for a
// warp that keeps two columns' candidates: both columns' eight 16-byte loads in flight
// together and both counts interleaved, where two RankAmong calls one after the other wait
// on two rounds of loads (their tie checks are branches the loads do not move across).
__device__ __forceinline__ void RankAmongTwoColumns(const uint32_t* keys_a, uint32_t mine_a,
                                                    const uint32_t* keys_b, uint32_t mine_b,
                                                    int& rank_a, int& rank_b) {
  const uint4* a4 = reinterpret_cast<const uint4*>(keys_a);
  const uint4* b4 = reinterpret_cast<const uint4*>(keys_b);
  const int lane = threadIdx.x & 31;
  uint4 va[8], vb[8];
#pragma unroll
  for (int q = 0; q < 8; ++q) {
    va[q] = a4[q];
    vb[q] = b4[q];
  }
  uint32_t ma[4] = {0u, 0u, 0u, 0u}, mb[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int q = 0; q < 8; ++q) {
    ma[0] += MinusOneIfAbove(va[q].x, mine_a);
    mb[0] += MinusOneIfAbove(vb[q].x, mine_b);
    ma[1] += MinusOneIfAbove(va[q].y, mine_a);
    mb[1] += MinusOneIfAbove(vb[q].y, mine_b);
    ma[2] += MinusOneIfAbove(va[q].z, mine_a);
    mb[2] += MinusOneIfAbove(vb[q].z, mine_b);
    ma[3] += MinusOneIfAbove(va[q].w, mine_a);
    mb[3] += MinusOneIfAbove(vb[q].w, mine_b);
  }
  rank_a = -int((ma[0] + ma[1]) + (ma[2] + ma[3]));
  rank_b = -int((mb[0] + mb[1]) + (mb[2] + mb[3]));
  // Equal keys (rare): RankAmong's check, for each column.
  const unsigned counts_a = __reduce_or_sync(kFullMask, 1u << rank_a);
  const unsigned counts_b = __reduce_or_sync(kFullMask, 1u << rank_b);
  if (counts_a != kFullMask)
    rank_a += __popc(__match_any_sync(kFullMask, mine_a) & ((1u << lane) - 1u));
  if (counts_b != kFullMask)
    rank_b += __popc(__match_any_sync(kFullMask, mine_b) & ((1u << lane) - 1u));
}

// Named barrier 1 over the CTA's first `threads` threads (the ranking warps).
struct SyncRankers {
  int threads;
  __device__ __forceinline__ void operator()() const {
    asm volatile("bar.sync 1, %0;" ::"r"(threads) : "memory");
  }
};

// One token by a CTA, WideColumnRankedApplies: ColumnRankedRouteToken for more candidates
// than one warp holds. Each column's warp keeps its best top_k in rank order
// (KeepColumnCandidates: key, id, and for sigmoid scoring the score itself); after a CTA
// barrier, warp w ranks candidate slots [32 w, 32 w + 32) against all of them by counting
// (RankAmongSlots: slot order is the tie rule's id order, as in ColumnRankedRouteToken),
// the warps in parallel, and the chosen fold their weights' normaliser after a barrier of
// the ranking warps only. In place of RouteFewCandidates' threshold count, 16 ballots and
// compaction in warp 0 (Kimi K2: ~2.5k cycles of ranking, bench/NOTES.md session 41).
// Requires warps x 32 >= columns x top_k.
template <int P>
__device__ __forceinline__ void WideColumnRankedRouteToken(
    const EpilogueParams& p, const float* logits, const float* correction_bias,
    CtaRouteScratch& scratch, int warps, int32_t* __restrict__ ids_out,
    float* __restrict__ weights_out, unsigned long long* marks) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int columns = (p.experts + 31) / 32;
  const bool sigmoid = p.scoring == kScoringSigmoid;
  // Lane's expert of column j: its selection key, id (-1 past the experts) and value.
  auto column_entry = [&](int j, uint32_t& k, int& id, float& value) {
    const int e = lane + 32 * j;
    const bool real = e < p.experts;
    const float logit = real ? logits[e] : 0.0f;
    const float score = sigmoid ? ScoreOf(kScoringSigmoid, logit, 0.0f, 1.0f) : logit;
    k = real ? OrderedKey((p.score_first ? score : logit) +
                          (p.has_correction_bias ? correction_bias[e] : 0.0f))
             : 0u;
    id = real ? e : -1;
    value = sigmoid ? score : logit;
  };
  auto keep = [&](int j, int local, uint32_t k, int id, float value) {
    if (local < p.top_k) {
      const int slot = j * p.top_k + local;
      scratch.candidate_key[slot] = k;
      scratch.candidate_id[slot] = id;
      scratch.candidate_logit[slot] = value;
    }
  };
  const int second = warp + warps;  // Kimi K2: warps 0-3 keep columns 8-11 as well
  if (warp < columns && second < columns && second + warps >= columns) {
    uint32_t k0, k1;
    int id0, id1;
    float v0, v1;
    column_entry(warp, k0, id0, v0);
    column_entry(second, k1, id1, v1);
    scratch.keys[lane + 32 * warp] = k0;
    scratch.keys[lane + 32 * second] = k1;
    __syncwarp();
    int local0, local1;
    RankAmongTwoColumns(scratch.keys + 32 * warp, k0, scratch.keys + 32 * second, k1, local0,
                        local1);
    keep(warp, local0, k0, id0, v0);
    keep(second, local1, k1, id1, v1);
  } else {
    for (int j = warp; j < columns; j += warps) {
      uint32_t k;
      int id;
      float value;
      column_entry(j, k, id, value);
      KeepColumnCandidates(p, scratch, j, k, id, value);
    }
  }
  const int count = columns * p.top_k, rankers = (count + 31) / 32;
  const int slot = int(threadIdx.x);
  if (slot >= count && slot < 32 * rankers) scratch.candidate_key[slot] = 0u;
  __syncthreads();
  if (warp >= rankers) return;
  MarkEpiloguePhase(marks, kEpiColumnsDone);
  const bool valid = slot < count && scratch.candidate_id[slot] >= 0;
  const uint32_t key = valid ? scratch.candidate_key[slot] : 0u;
  const int rank = RankAmongSlots(scratch.candidate_key, count, key);  // used where valid
  MarkEpiloguePhase(marks, kEpiRanked);
  WriteRankedChoice(p, scratch.ranked, valid, rank, valid ? scratch.candidate_id[slot] : 0,
                    valid ? scratch.candidate_logit[slot] : 0.0f, ids_out, weights_out,
                    /*scored=*/sigmoid, SyncRankers{32 * rankers});
}

// All threads of the CTA call; logits and correction_bias as WarpRouteTokenP's. `marks`:
// null, or where thread 0 stamps the sub-phases (EpiloguePhase) for router_bench's
// timelines. kSmallestThreshold: RouteFewCandidates' shortcut for grouped routers (off
// where it costs a kernel registers; see RouteChunkTokensP). kCountWinsOnce: WarpTopK's.
template <int P, bool kSmallestThreshold = true, bool kCountWinsOnce = true>
__device__ void CtaRouteToken(const EpilogueParams& p, const float* logits,
                              const float* correction_bias, CtaRouteScratch& scratch, int warps,
                              int32_t* __restrict__ ids_out, float* __restrict__ weights_out,
                              unsigned long long* marks = nullptr) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  if (P == 1 && p.experts <= kRankedMaxExperts) {
    // One column (so no groups: CtaRouteTokenApplies): warp 0 alone, no CTA barrier.
    if (warp == 0)
      RankedWarpRouteToken(p, logits, correction_bias, scratch.ranked, ids_out, weights_out, marks);
    return;
  }
  if (ColumnRankedApplies<P>(p)) {
    ColumnRankedRouteToken<P>(p, logits, correction_bias, scratch, warps, ids_out, weights_out,
                              marks);
    return;
  }
  if (GroupColumnRankedApplies<P>(p)) {
    GroupColumnRankedRouteToken<P>(p, logits, correction_bias, scratch, warps, ids_out, weights_out,
                                   marks);
    return;
  }
  if constexpr (P == 16) {
    if (WideColumnRankedApplies<P>(p) && 32 * warps >= (p.experts + 31) / 32 * p.top_k) {
      WideColumnRankedRouteToken<P>(p, logits, correction_bias, scratch, warps, ids_out,
                                    weights_out, marks);
      return;
    }
  }
  // Groups of one column (DeepSeek-V3): the column warps score them, in parallel, and warp
  // 0 only ranks the scores (KeptGroupsOfGroupScores). Widths up to 8 experts a lane only:
  // in the 16-wide instance (no family has groups there) the score store made Kimi K2's
  // column phase 130 cycles slower (897 -> 1029, +0.08 us a call); without it 908.
  constexpr bool kColumnWarpsScoreGroups = P <= 8;
  const int columns = (p.experts + 31) / 32;
  for (int j = warp; j < columns; j += warps) {
    const int e = lane + 32 * j;
    const uint32_t k = e < p.experts ? CtaSelectionKey(p, logits[e], correction_bias, e) : 0u;
    scratch.keys[e] = k;
    if (P >= kFewCandidatesMinP || p.n_group > 1) {  // group scores; the threshold
      uint32_t m1, m2;
      WarpTop2Keys(k, m1, m2);
      if (lane == 0) {
        scratch.column_top2[2 * j] = m1;
        scratch.column_top2[2 * j + 1] = m2;
        if (kColumnWarpsScoreGroups && p.group_columns == 1)  // group j is column j
          scratch.group_score[j] =
              p.group_score_topk == 2 ? KeyToFloat(m1) + KeyToFloat(m2) : KeyToFloat(m1);
      }
    }
  }
  __syncthreads();
  if (warp != 0) return;
  MarkEpiloguePhase(marks, kEpiColumnsDone);
  uint32_t key[P];
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int e = lane + 32 * j;
    key[j] = e < p.experts ? scratch.keys[e] : 0u;
  }
  if (p.n_group > 1) {
    // Group g = columns [g * cols, (g + 1) * cols): its top two from the columns' top twos;
    // lane g keeps its group's score and ranks it against the others.
    const int cols = p.group_columns;
    const bool two = p.group_score_topk == 2;
    auto group_score = [&](int g) {
      uint32_t k1 = 0, k2 = 0;
      for (int c = g * cols; c < (g + 1) * cols; ++c) {
        InsertTop2(scratch.column_top2[2 * c], k1, k2);
        InsertTop2(scratch.column_top2[2 * c + 1], k1, k2);
      }
      return two ? KeyToFloat(k1) + KeyToFloat(k2) : KeyToFloat(k1);
    };
    const uint32_t kept =
        kColumnWarpsScoreGroups && cols == 1
            ? KeptGroupsOfGroupScores<P>(p, scratch.group_score)
            : KeptGroupsOfLaneScores(p, lane < p.n_group ? group_score(lane) : -INFINITY);
    const uint32_t kept_columns = KeptColumns(kept, cols, columns);
#pragma unroll
    for (int j = 0; j < P; ++j)
      if (!((kept_columns >> j) & 1u)) key[j] = 0u;
    MarkEpiloguePhase(marks, kEpiGroupsDone);
    if constexpr (P >= kFewCandidatesMinP) {
      if (RouteFewCandidates<P, kSmallestThreshold>(p, logits, scratch, key, kept_columns, ids_out,
                                                    weights_out, marks))
        return;
    }
  } else if constexpr (P >= kFewCandidatesMinP) {
    const uint32_t all_columns = columns >= 32 ? ~0u : (1u << columns) - 1u;
    if (RouteFewCandidates<P, false>(p, logits, scratch, key, all_columns, ids_out, weights_out,
                                     marks))
      return;
  }
  float l[P];
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int e = lane + 32 * j;
    l[j] = e < p.experts ? logits[e] : 0.0f;
  }
  LaneChoices<P> chosen;
  WarpTopK<P, kCountWinsOnce>(p.top_k, key, l, chosen);
  MarkEpiloguePhase(marks, kEpiRanked);
  WriteChoices<P>(p, chosen, TokenScoring{}, ids_out, weights_out);
}

// The experts-per-lane width for a number of experts: 1, 2, 4, 8 or 16.
__host__ __device__ inline int ExpertsPerLane(int experts) {
  return experts <= 32 ? 1 : experts <= 64 ? 2 : experts <= 128 ? 4 : experts <= 256 ? 8 : 16;
}

// Whether `experts` takes the kWideExperts kernel instances (width 16: more than 256).
__host__ __device__ inline bool WideExperts(int experts) { return ExpertsPerLane(experts) == 16; }

// Calls f(std::integral_constant<int, P>{}) for the experts-per-lane width P of `experts`,
// among one group of widths: routers of more than 256 experts (width 16) when
// kWideExperts, else the widths 1-8. The polled and staged kernels have an instance for
// each group (the host picks by the expert count), so neither carries the other's routing
// code or registers.
template <bool kWideExperts, typename F>
__device__ __forceinline__ void WithExpertsPerLaneOf(int experts, F&& f) {
  if constexpr (kWideExperts) {
    return f(std::integral_constant<int, 16>{});
  } else {
    switch (ExpertsPerLane(experts)) {
      case 1:
        return f(std::integral_constant<int, 1>{});
      case 2:
        return f(std::integral_constant<int, 2>{});
      case 4:
        return f(std::integral_constant<int, 4>{});
      default:
        return f(std::integral_constant<int, 8>{});
    }
  }
}

// Any width, for the kernels with one instance for all (the one place a run-time expert
// count picks an epilogue instance).
template <typename F>
__device__ __forceinline__ void WithExpertsPerLane(int experts, F&& f) {
  if (WideExperts(experts)) return WithExpertsPerLaneOf<true>(experts, f);
  return WithExpertsPerLaneOf<false>(experts, f);
}

// WarpRouteTokenP for the spec's width.
__device__ inline void WarpRouteToken(const EpilogueParams& p, const float* logits,
                                      const float* correction_bias, int32_t* __restrict__ ids_out,
                                      float* __restrict__ weights_out) {
  WithExpertsPerLane(p.experts, [&](auto width) {
    WarpRouteTokenP<decltype(width)::value>(p, logits, correction_bias, ids_out, weights_out);
  });
}

}  // namespace moe::cuda
