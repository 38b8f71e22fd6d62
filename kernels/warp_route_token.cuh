// One warp routes one token: lane `lane` holds experts lane + 32 j (j < P, P = experts per
// lane) in registers; no shared memory. Four phases: SelectionKeys, DropUnkeptGroups,
// WarpTopK, WriteChoices. The general path, for every RouterSpec: the dedicated routers of
// the fused kernels run it a warp a token, and CtaRouteToken (cta_route_token.cuh) falls
// back to its top-k and weights. One warp runs this alone while the rest of the GPU waits,
// so it is written for a short dependency chain: no shuffle trees where a reduction
// instruction will do, groups scored in parallel, top-k rounds of one reduction each (ties
// re-done exactly off the common path), fast exp/reciprocal intrinsics (relative error
// ~1e-6, the same function in selection and in the returned weights). Stateless device
// functions; router_epilogue.cuh is the header to include.
#pragma once

#include <cstdint>

#include "kernels/epilogue_keys.cuh"

namespace moe::cuda {

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

}  // namespace moe::cuda
