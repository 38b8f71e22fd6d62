#include "kernels/routing_epilogue.h"

#include <cmath>

namespace moe {
namespace {

// The tie rule: a higher score wins; equal scores go to the lower index.
inline bool Beats(float score_a, int a, float score_b, int b) {
  return score_a > score_b || (score_a == score_b && a < b);
}

void ComputeScores(Scoring scoring, const float* logits, int n, float* scores) {
  switch (scoring) {
    case Scoring::kSoftmax: {
      float max_logit = logits[0];
      for (int e = 1; e < n; ++e) max_logit = std::fmax(max_logit, logits[e]);
      float sum = 0.0f;
      for (int e = 0; e < n; ++e) {
        scores[e] = std::exp(logits[e] - max_logit);
        sum += scores[e];
      }
      const float inv = 1.0f / sum;
      for (int e = 0; e < n; ++e) scores[e] *= inv;
      break;
    }
    case Scoring::kSigmoid:
      for (int e = 0; e < n; ++e) scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
      break;
    case Scoring::kNone:
      for (int e = 0; e < n; ++e) scores[e] = logits[e];
      break;
  }
}

// Marks the experts of the topk_group best groups as eligible (1.0f) in `eligible`.
void SelectGroups(const RouterSpec& spec, const float* selection, float* eligible,
                  float* group_scores) {
  const int per_group = spec.experts / spec.n_group;
  for (int g = 0; g < spec.n_group; ++g) {
    // Sum of the group's top group_score_topk selection scores (tie rule inside).
    float sum = 0.0f;
    uint64_t taken[kMaxExperts / 64] = {};
    for (int j = 0; j < spec.group_score_topk; ++j) {
      int best = -1;
      for (int e = g * per_group; e < (g + 1) * per_group; ++e) {
        if (taken[e / 64] >> (e % 64) & 1) continue;
        if (best < 0 || Beats(selection[e], e, selection[best], best)) best = e;
      }
      taken[best / 64] |= uint64_t{1} << (best % 64);
      sum += selection[best];
    }
    group_scores[g] = sum;
  }
  for (int e = 0; e < spec.experts; ++e) eligible[e] = 0.0f;
  uint32_t kept = 0;
  for (int j = 0; j < spec.topk_group; ++j) {
    int best = -1;
    for (int g = 0; g < spec.n_group; ++g) {
      if (kept >> g & 1) continue;
      if (best < 0 || Beats(group_scores[g], g, group_scores[best], best)) best = g;
    }
    kept |= 1u << best;
    for (int e = best * per_group; e < (best + 1) * per_group; ++e) eligible[e] = 1.0f;
  }
}

}  // namespace

void RouteOneToken(const RouterSpec& spec, const float* logits, const float* correction_bias,
                   int32_t* ids, float* weights, float* scratch) {
  const int n = spec.experts;
  float* scores = scratch;                // [experts]: score(logits), when score_first
  float* selection = scratch + n;         // [experts]: what top-k compares
  float* group_scores = scratch + 2 * n;  // [n_group <= 32]
  const bool score_first = spec.order == RoutingOrder::kScoreThenTopK;

  if (score_first) ComputeScores(spec.scoring, logits, n, scores);
  for (int e = 0; e < n; ++e) {
    const float base = score_first ? scores[e] : logits[e];
    selection[e] = base + (spec.has_correction_bias ? correction_bias[e] : 0.0f);
  }
  float eligibility[kMaxExperts];
  if (spec.n_group > 1) {
    SelectGroups(spec, selection, eligibility, group_scores);
  } else {
    for (int e = 0; e < n; ++e) eligibility[e] = 1.0f;
  }

  uint64_t taken[kMaxExperts / 64] = {};
  for (int i = 0; i < spec.top_k; ++i) {
    int best = -1;
    for (int e = 0; e < n; ++e) {
      if (eligibility[e] == 0.0f || (taken[e / 64] >> (e % 64) & 1)) continue;
      if (best < 0 || Beats(selection[e], e, selection[best], best)) best = e;
    }
    taken[best / 64] |= uint64_t{1} << (best % 64);
    ids[i] = best;
  }

  if (score_first) {
    for (int i = 0; i < spec.top_k; ++i) weights[i] = scores[ids[i]];
  } else {
    float chosen[kMaxTopK];
    for (int i = 0; i < spec.top_k; ++i) chosen[i] = logits[ids[i]];
    ComputeScores(spec.scoring, chosen, spec.top_k, weights);
  }
  if (spec.renormalize) {
    float sum = 0.0f;
    for (int i = 0; i < spec.top_k; ++i) sum += weights[i];
    if (sum > 0.0f)
      for (int i = 0; i < spec.top_k; ++i) weights[i] /= sum;
  }
  if (spec.scaling_factor != 1.0f)
    for (int i = 0; i < spec.top_k; ++i) weights[i] *= spec.scaling_factor;
}

}  // namespace moe
