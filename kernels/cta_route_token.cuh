// One token routed by a whole CTA of `warps` warps (the polled kernel's router CTA when it
// has a single token): the per-expert work, scores and the top two keys of each column,
// is spread over the warps, a column each; warp 0 then ranks the groups and runs the
// top-k: by counting where it can (RouteFewCandidates from 8 experts a lane, and routers
// of at most kRankedMaxExperts), else the serial rounds. For specs without score-first
// softmax (whose max and sum span the warps) and with no groups or column groups (experts
// per group a multiple of 32, group scores of one or two): CtaRouteTokenApplies.
// Stateless device functions; router_epilogue.cuh is the header to include.
#pragma once

#include <cstdint>

#include "kernels/column_ranked_route_token.cuh"
#include "kernels/epilogue_keys.cuh"
#include "kernels/ranked_route_token.cuh"
#include "kernels/warp_route_token.cuh"

namespace moe::cuda {

// All threads of the CTA call (with kHalfCta all threads of one half, `warps` 4: TeamWarp;
// not for more than 256 experts); logits and correction_bias as WarpRouteTokenP's.
// `marks`: null, or where thread 0 stamps the sub-phases (EpiloguePhase) for
// router_bench's timelines. kSmallestThreshold: RouteFewCandidates' shortcut for grouped
// routers (off where it costs a kernel registers; see RouteChunkTokensP). kCountWinsOnce:
// WarpTopK's.
template <int P, bool kSmallestThreshold = true, bool kCountWinsOnce = true, bool kHalfCta = false>
__device__ void CtaRouteToken(const EpilogueParams& p, const float* logits,
                              const float* correction_bias, CtaRouteScratch& scratch, int warps,
                              int32_t* __restrict__ ids_out, float* __restrict__ weights_out,
                              unsigned long long* marks = nullptr) {
  static_assert(!kHalfCta || P <= 8, "half-CTA teams route at most 256 experts");
  const int warp = TeamWarp<kHalfCta>(), lane = threadIdx.x & 31;
  if (P == 1 && p.experts <= kRankedMaxExperts) {
    // One column (so no groups: CtaRouteTokenApplies): warp 0 alone, no CTA barrier.
    if (warp == 0)
      RankedWarpRouteToken(p, logits, correction_bias, scratch.ranked, ids_out, weights_out, marks);
    return;
  }
  if (ColumnRankedApplies<P>(p)) {
    ColumnRankedRouteToken<P, kHalfCta>(p, logits, correction_bias, scratch, warps, ids_out,
                                        weights_out, marks);
    return;
  }
  if (GroupColumnRankedApplies<P>(p)) {
    GroupColumnRankedRouteToken<P, kHalfCta>(p, logits, correction_bias, scratch, warps, ids_out,
                                             weights_out, marks);
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
  TeamBarrier<kHalfCta>();
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

}  // namespace moe::cuda
