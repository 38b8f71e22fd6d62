// The routing epilogue on the GPU: one warp turns one token's logits into expert ids and
// weights, with the semantics of RouterSpec (router_spec.h). Shared by the fused
// Decompose-K kernel and the cuBLAS baseline's epilogue kernel.
//
// Selection uses 32-bit order-preserving keys and warp-wide __reduce_max_sync /
// __reduce_min_sync (sm_80+): one round finds the highest score and, among lanes holding
// that score, the lowest expert id — the tie rule, exactly.
#pragma once

#include <cstdint>

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
};

// The device copy of a RouterSpec's routing parameters.
inline EpilogueParams MakeEpilogueParams(const RouterSpec& s) {
  return {s.experts,
          s.top_k,
          int(s.scoring),
          s.order == RoutingOrder::kScoreThenTopK,
          s.has_correction_bias,
          s.n_group,
          s.topk_group,
          s.group_score_topk,
          s.renormalize,
          s.scaling_factor};
}

constexpr int kScoringSoftmax = 0;
constexpr int kScoringSigmoid = 1;

__device__ __forceinline__ uint32_t OrderedKey(float f) {
  const uint32_t u = __float_as_uint(f + 0.0f);  // -0 becomes +0: equal floats, equal keys
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Picks, across the warp, the best (key, id) among the lanes' candidates: highest key,
// then lowest id. Lanes without a candidate pass key 0 (below every real key).
__device__ __forceinline__ uint32_t WarpArgBest(uint32_t key, uint32_t id) {
  const uint32_t best_key = __reduce_max_sync(0xffffffffu, key);
  return __reduce_min_sync(0xffffffffu, key == best_key && key != 0 ? id : 0xffffffffu);
}

// Is (a, ia) after (b, ib) in selection order (descending value, ascending id)?
__device__ __forceinline__ bool After(float a, int ia, float b, int ib) {
  return a < b || (a == b && ia > ib);
}

// Group scores when group_score_topk <= 2 (every real family): each group is scanned by
// a power-of-two set of lanes keeping their top two, merged with shuffles. Returns, in
// lanes g < n_group, the score of group g (others: anything).
__device__ __forceinline__ float GroupScoresTop2(const EpilogueParams& p, const float* sel) {
  const int lane = threadIdx.x & 31;
  const int per_group = p.experts / p.n_group;
  int lanes = 1;
  while (lanes * 2 * p.n_group <= 32) lanes *= 2;
  const int group = lane / lanes, part = lane % lanes;
  float b1 = -INFINITY, b2 = -INFINITY;  // ordered pair, b1 first in selection order
  int i1 = 0x7fffffff, i2 = 0x7fffffff;
  if (group < p.n_group) {
    for (int e = group * per_group + part; e < (group + 1) * per_group; e += lanes) {
      const float v = sel[e];
      if (After(b1, i1, v, e)) {
        b2 = b1;
        i2 = i1;
        b1 = v;
        i1 = e;
      } else if (After(b2, i2, v, e)) {
        b2 = v;
        i2 = e;
      }
    }
  }
  for (int o = 1; o < lanes; o <<= 1) {  // merge two top-2 lists
    const float c1 = __shfl_xor_sync(0xffffffffu, b1, o), c2 = __shfl_xor_sync(0xffffffffu, b2, o);
    const int j1 = __shfl_xor_sync(0xffffffffu, i1, o), j2 = __shfl_xor_sync(0xffffffffu, i2, o);
    if (After(b1, i1, c1, j1)) {  // theirs first: new b1 = c1, b2 = best of (b1, c2)
      if (After(b1, i1, c2, j2)) {
        b2 = c2;
        i2 = j2;
      } else {
        b2 = b1;
        i2 = i1;
      }
      b1 = c1;
      i1 = j1;
    } else if (After(b2, i2, c1, j1)) {
      b2 = c1;
      i2 = j1;
    }
  }
  const float score = p.group_score_topk == 1 ? b1 : b1 + b2;
  return __shfl_sync(0xffffffffu, score, lane * lanes);  // lane g <- group g's leader
}

// Any group_score_topk: lane g scans group g repeatedly (slower; no family needs it).
__device__ __forceinline__ float GroupScoresGeneric(const EpilogueParams& p, const float* sel) {
  const int lane = threadIdx.x & 31;
  const int per_group = p.experts / p.n_group;
  float score = 0.0f;
  if (lane < p.n_group) {
    float prev = INFINITY;
    int prev_id = -1;
    for (int j = 0; j < p.group_score_topk; ++j) {
      float best = -INFINITY;
      int best_id = -1;
      for (int e = lane * per_group; e < (lane + 1) * per_group; ++e) {
        const float v = sel[e];
        if (!After(v, e, prev, prev_id)) continue;  // already counted
        if (best_id < 0 || After(best, best_id, v, e)) {
          best = v;
          best_id = e;
        }
      }
      score += best;
      prev = best;
      prev_id = best_id;
    }
  }
  return score;
}

// One warp routes one token; lane holds experts lane + 32 j, j < P, in registers.
// logits: [experts] (router bias included), global or shared. scratch: [experts] shared
// floats (used for grouped selection). All 32 lanes must call.
template <int P>
__device__ void WarpRouteTokenP(const EpilogueParams& p, const float* logits, float* scratch,
                                const float* __restrict__ correction_bias,
                                int32_t* __restrict__ ids_out, float* __restrict__ weights_out) {
  const int lane = threadIdx.x & 31;
  const int E = p.experts;
  float l[P], sel[P];
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int e = lane + 32 * j;
    l[j] = e < E ? logits[e] : 0.0f;
  }
  // 1. Scores (score-first) and selection scores; -inf marks "not selectable".
  float softmax_max = 0.0f, softmax_inv = 1.0f;
  if (p.score_first && p.scoring == kScoringSoftmax) {
    float m = -INFINITY;
#pragma unroll
    for (int j = 0; j < P; ++j)
      if (lane + 32 * j < E) m = fmaxf(m, l[j]);
    m = WarpMax(m);
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < P; ++j)
      if (lane + 32 * j < E) s += expf(l[j] - m);
    softmax_max = m;
    softmax_inv = 1.0f / WarpSum(s);
  }
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int e = lane + 32 * j;
    float v = l[j];
    if (p.score_first) {
      if (p.scoring == kScoringSoftmax)
        v = expf(v - softmax_max) * softmax_inv;
      else if (p.scoring == kScoringSigmoid)
        v = 1.0f / (1.0f + expf(-v));
    }
    sel[j] = e < E ? v + (p.has_correction_bias ? correction_bias[e] : 0.0f) : -INFINITY;
  }

  // 2. Groups: keep the topk_group best; experts of other groups become unselectable.
  if (p.n_group > 1) {
#pragma unroll
    for (int j = 0; j < P; ++j)
      if (lane + 32 * j < E) scratch[lane + 32 * j] = sel[j];
    __syncwarp();
    const float group_score =
        p.group_score_topk <= 2 ? GroupScoresTop2(p, scratch) : GroupScoresGeneric(p, scratch);
    __syncwarp();
    uint32_t kept = 0;
    for (int j = 0; j < p.topk_group; ++j) {
      const bool candidate = lane < p.n_group && !(kept >> lane & 1u);
      kept |= 1u << WarpArgBest(candidate ? OrderedKey(group_score) : 0u, lane);
    }
    const int per_group = E / p.n_group;
#pragma unroll
    for (int j = 0; j < P; ++j)
      if (!(kept >> ((lane + 32 * j) / per_group) & 1u)) sel[j] = -INFINITY;
  }

  // 3. Top-k: each round the warp takes the best (score, lowest id) of the lanes' bests.
  int my_id = 0;
  float my_logit = 0.0f;
  for (int i = 0; i < p.top_k; ++i) {
    float best = sel[0];
    int best_j = 0;
#pragma unroll
    for (int j = 1; j < P; ++j)
      if (sel[j] > best) {
        best = sel[j];
        best_j = j;
      }
    const uint32_t key = best == -INFINITY ? 0u : OrderedKey(best);
    const uint32_t mine = uint32_t(lane + 32 * best_j);
    const uint32_t chosen = WarpArgBest(key, mine);
    float chosen_logit = 0.0f;
#pragma unroll
    for (int j = 0; j < P; ++j)
      if (j == best_j) chosen_logit = l[j];
    chosen_logit = __shfl_sync(0xffffffffu, chosen_logit, chosen & 31);
    if (chosen == mine) {
#pragma unroll
      for (int j = 0; j < P; ++j)
        if (j == best_j) sel[j] = -INFINITY;
    }
    if (lane == i) {
      my_id = int(chosen);
      my_logit = chosen_logit;
    }
  }

  // 4. Weights of the chosen experts (lane i holds choice i).
  const bool active = lane < p.top_k;
  const float lc = my_logit;
  float w;
  if (p.score_first) {
    if (p.scoring == kScoringSoftmax)
      w = expf(lc - softmax_max) * softmax_inv;
    else if (p.scoring == kScoringSigmoid)
      w = 1.0f / (1.0f + expf(-lc));
    else
      w = lc;
  } else if (p.scoring == kScoringSoftmax) {
    const float m = WarpMax(active ? lc : -INFINITY);
    const float e = active ? expf(lc - m) : 0.0f;
    w = e / WarpSum(e);
  } else if (p.scoring == kScoringSigmoid) {
    w = 1.0f / (1.0f + expf(-lc));
  } else {
    w = lc;
  }
  if (p.renormalize) {
    const float sum = WarpSum(active ? w : 0.0f);
    if (sum > 0.0f) w /= sum;
  }
  w *= p.scaling_factor;
  if (active) {
    ids_out[lane] = my_id;
    weights_out[lane] = w;
  }
}

// Dispatches on the experts per lane.
__device__ inline void WarpRouteToken(const EpilogueParams& p, const float* logits, float* scratch,
                                      const float* __restrict__ correction_bias,
                                      int32_t* __restrict__ ids_out,
                                      float* __restrict__ weights_out) {
  if (p.experts <= 32)
    WarpRouteTokenP<1>(p, logits, scratch, correction_bias, ids_out, weights_out);
  else if (p.experts <= 64)
    WarpRouteTokenP<2>(p, logits, scratch, correction_bias, ids_out, weights_out);
  else if (p.experts <= 128)
    WarpRouteTokenP<4>(p, logits, scratch, correction_bias, ids_out, weights_out);
  else if (p.experts <= 256)
    WarpRouteTokenP<8>(p, logits, scratch, correction_bias, ids_out, weights_out);
  else
    WarpRouteTokenP<16>(p, logits, scratch, correction_bias, ids_out, weights_out);
}

}  // namespace moe::cuda
