#include "tests/reference_router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"

namespace moe::testing {
namespace {

// Rounding allowance of an fp32 dot product, as a multiple of sum |x_k * w_k|: generous
// against float accumulation in any order (a random walk of K roundings is far smaller).
constexpr double kDotRounding = 1.0 / (1 << 20);

std::vector<int> SortedByScore(const std::vector<double>& score, const std::vector<int>& ids) {
  std::vector<int> order = ids;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return score[a] > score[b] || (score[a] == score[b] && a < b);
  });
  return order;
}

}  // namespace

std::vector<ReferenceToken> ReferenceRoute(const RouterSpec& spec, int tokens,
                                           const std::vector<float>& hidden,
                                           const std::vector<float>& weight,
                                           const std::vector<float>& router_bias,
                                           const std::vector<float>& correction_bias) {
  const int E = spec.experts, H = spec.hidden;
  std::vector<ReferenceToken> out(tokens);
  for (int t = 0; t < tokens; ++t) {
    ReferenceToken& r = out[t];
    r.logits.resize(E);
    std::vector<double> logit_tol(E);
    for (int e = 0; e < E; ++e) {
      double sum = 0, abs_sum = 0;
      for (int k = 0; k < H; ++k) {
        const double p = double(hidden[size_t(t) * H + k]) * double(weight[size_t(e) * H + k]);
        sum += p;
        abs_sum += std::fabs(p);
      }
      if (spec.has_router_bias) sum += router_bias[e];
      r.logits[e] = sum;
      logit_tol[e] = kDotRounding * (abs_sum + std::fabs(sum)) + 1e-7;
    }
    // Scores over all experts and how rounding in the logits moves them.
    std::vector<double> scores(E);
    std::vector<double> score_tol(E);
    const bool score_first = spec.order == RoutingOrder::kScoreThenTopK;
    if (score_first && spec.scoring == Scoring::kSoftmax) {
      const double mx = *std::max_element(r.logits.begin(), r.logits.end());
      double z = 0;
      for (int e = 0; e < E; ++e) z += std::exp(r.logits[e] - mx);
      const double max_tol = *std::max_element(logit_tol.begin(), logit_tol.end());
      for (int e = 0; e < E; ++e) {
        scores[e] = std::exp(r.logits[e] - mx) / z;
        score_tol[e] = scores[e] * 2 * (logit_tol[e] + max_tol) + 1e-7 * scores[e];
      }
    } else if (score_first && spec.scoring == Scoring::kSigmoid) {
      for (int e = 0; e < E; ++e) {
        scores[e] = 1.0 / (1.0 + std::exp(-r.logits[e]));
        score_tol[e] = 0.25 * logit_tol[e] + 1e-7;
      }
    } else {
      scores = r.logits;
      score_tol = logit_tol;
    }
    r.selection.resize(E);
    for (int e = 0; e < E; ++e)
      r.selection[e] = scores[e] + (spec.has_correction_bias ? correction_bias[e] : 0.0);
    r.tolerance = score_tol;

    // Groups: sum of each group's top group_score_topk, keep the best topk_group.
    std::vector<int> eligible;
    const int per_group = E / spec.n_group;
    if (spec.n_group > 1) {
      std::vector<double> group_score(spec.n_group), group_tol(spec.n_group);
      for (int g = 0; g < spec.n_group; ++g) {
        std::vector<int> members(per_group);
        std::iota(members.begin(), members.end(), g * per_group);
        auto sorted = SortedByScore(r.selection, members);
        for (int j = 0; j < spec.group_score_topk; ++j) {
          group_score[g] += r.selection[sorted[j]];
          group_tol[g] += r.tolerance[sorted[j]];
        }
      }
      std::vector<int> groups(spec.n_group);
      std::iota(groups.begin(), groups.end(), 0);
      auto kept = SortedByScore(group_score, groups);
      if (spec.topk_group < spec.n_group) {
        const int a = kept[spec.topk_group - 1], b = kept[spec.topk_group];
        r.group_near_tie = group_score[a] - group_score[b] <= group_tol[a] + group_tol[b];
      }
      for (int j = 0; j < spec.topk_group; ++j)
        for (int e = kept[j] * per_group; e < (kept[j] + 1) * per_group; ++e) eligible.push_back(e);
    } else {
      eligible.resize(E);
      std::iota(eligible.begin(), eligible.end(), 0);
    }
    auto ranked = SortedByScore(r.selection, eligible);
    r.ids.assign(ranked.begin(), ranked.begin() + spec.top_k);

    std::vector<double> w(spec.top_k);
    if (score_first) {
      for (int i = 0; i < spec.top_k; ++i) w[i] = scores[r.ids[i]];
    } else if (spec.scoring == Scoring::kSoftmax) {
      double mx = -1e300, z = 0;
      for (int id : r.ids) mx = std::max(mx, r.logits[id]);
      for (int id : r.ids) z += std::exp(r.logits[id] - mx);
      for (int i = 0; i < spec.top_k; ++i) w[i] = std::exp(r.logits[r.ids[i]] - mx) / z;
    } else if (spec.scoring == Scoring::kSigmoid) {
      for (int i = 0; i < spec.top_k; ++i) w[i] = 1.0 / (1.0 + std::exp(-r.logits[r.ids[i]]));
    } else {
      for (int i = 0; i < spec.top_k; ++i) w[i] = r.logits[r.ids[i]];
    }
    // A raw logit's weight carries the logit's own rounding bound (the one the ids are
    // judged by), through the renormalisation: |d(w_i / s)| <= tol_i / s + |w_i| sum(tol) / s^2.
    std::vector<double> wtol(spec.top_k, 0.0);
    if (spec.scoring == Scoring::kNone)
      for (int i = 0; i < spec.top_k; ++i) wtol[i] = logit_tol[r.ids[i]];
    if (spec.renormalize) {
      const double s = std::accumulate(w.begin(), w.end(), 0.0);
      const double tol_sum = std::accumulate(wtol.begin(), wtol.end(), 0.0);
      if (s > 0)
        for (int i = 0; i < spec.top_k; ++i) {
          wtol[i] = wtol[i] / s + std::fabs(w[i]) * tol_sum / (s * s);
          w[i] /= s;
        }
    }
    for (double& v : w) v *= spec.scaling_factor;
    for (double& v : wtol) v *= std::fabs(spec.scaling_factor);
    r.weights = w;
    r.weight_tolerance = wtol;
  }
  return out;
}

std::string CompareWithReference(const RouterSpec& spec, const std::vector<ReferenceToken>& ref,
                                 const int32_t* ids, const float* weights, double rel_tol) {
  const int K = spec.top_k;
  for (size_t t = 0; t < ref.size(); ++t) {
    const ReferenceToken& r = ref[t];
    const int32_t* got = ids + t * K;
    const float* got_w = weights + t * K;
    auto where = [&](int i) { return absl::StrCat("token ", t, " slot ", i, ": "); };
    std::set<int> seen;
    for (int i = 0; i < K; ++i) {
      if (got[i] < 0 || got[i] >= spec.experts)
        return absl::StrCat(where(i), "id ", got[i], " out of range");
      if (!seen.insert(got[i]).second) return absl::StrCat(where(i), "id ", got[i], " repeated");
      if (!std::isfinite(got_w[i])) return absl::StrCat(where(i), "weight is not finite");
    }
    // Each chosen expert must be a reference choice, or tie within rounding with the
    // reference's choice at the boundary.
    const double kth = r.selection[r.ids[K - 1]];
    const double kth_tol = r.tolerance[r.ids[K - 1]];
    bool same_set = true;
    for (int i = 0; i < K; ++i) {
      if (std::find(r.ids.begin(), r.ids.end(), got[i]) != r.ids.end()) continue;
      same_set = false;
      if (r.group_near_tie) continue;  // a different group was a legitimate choice
      if (r.selection[got[i]] < kth - kth_tol - r.tolerance[got[i]])
        return absl::StrCat(where(i), "chose expert ", got[i], " (reference score ",
                            r.selection[got[i]], ") but the reference's k-th score is ", kth,
                            "; reference ids start ", r.ids[0]);
    }
    // Order: descending selection score, allowing swaps within rounding.
    for (int i = 1; i < K && !r.group_near_tie; ++i) {
      const double prev = r.selection[got[i - 1]], cur = r.selection[got[i]];
      if (cur > prev + r.tolerance[got[i - 1]] + r.tolerance[got[i]])
        return absl::StrCat(where(i), "expert ", got[i], " (score ", cur, ") ranked after expert ",
                            got[i - 1], " (score ", prev, ")");
    }
    if (!same_set) continue;  // weights of a near-tie swap are not comparable
    for (int i = 0; i < K; ++i) {
      const int j = static_cast<int>(std::find(r.ids.begin(), r.ids.end(), got[i]) - r.ids.begin());
      const double want = r.weights[j];
      if (std::fabs(got_w[i] - want) > rel_tol * std::fabs(want) + 1e-6 + r.weight_tolerance[j])
        return absl::StrCat(where(i), "expert ", got[i], " weight ", got_w[i], " vs reference ",
                            want);
    }
  }
  return "";
}

}  // namespace moe::testing
