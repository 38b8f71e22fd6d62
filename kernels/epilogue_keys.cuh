// The routing epilogue's common ground: EpilogueParams (the device copy of a RouterSpec's
// routing parameters), the order-preserving 32-bit keys every comparison in the epilogue is
// made on, and the warp-wide primitives over them. Every comparison is on keys, so warp-wide
// __reduce_max_sync / __reduce_min_sync (sm_80+) find in one instruction each the highest
// score and, among the lanes holding it, the lowest expert id: the tie rule, exactly.
// Stateless device functions; router_epilogue.cuh is the header to include.
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
  // Derived on the host, so the device never divides at run time (an integer division is
  // a ~40-instruction dependent chain on the one warp that routes): experts per group, and
  // lane-layout columns (32 experts) per group where groups are whole columns, else 0.
  int per_group;
  int group_columns;
  // ceil(2^16 / top_k): lane / top_k as DivideLaneBy(lane, it). The one run-time division
  // left on the routing warp's chain (GroupColumnRankedRouteToken) was ~20 dependent
  // instructions (ncu, session 62). H100, same run, two rounds under PDL: DeepSeek-V3 t=1
  // 3.37 -> 3.29 us, t=16 3.99 -> 3.90; its warm one-token CTA epilogue 2046 -> 1963 cycles.
  int top_k_reciprocal;
};

// ceil(2^16 / d), and n / d from it for the lanes of a warp: exact for every n < 32 and d
// up to kMaxTopK (checked below for all of them).
constexpr int SmallReciprocal(int d) { return (65536 + d - 1) / d; }
constexpr int DivideLaneBy(int n, int reciprocal) { return (n * reciprocal) >> 16; }
constexpr bool LaneDivisionIsExact() {
  for (int d = 1; d <= kMaxTopK; ++d)
    for (int n = 0; n < 32; ++n)
      if (DivideLaneBy(n, SmallReciprocal(d)) != n / d) return false;
  return true;
}
static_assert(LaneDivisionIsExact(), "lane / top_k by a reciprocal must be exact");

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
          per_group % 32 == 0 ? per_group / 32 : 0,
          SmallReciprocal(s.top_k)};
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

}  // namespace moe::cuda
