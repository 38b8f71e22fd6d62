// RouterSpec: how one MoE family turns router logits into expert ids and weights,
// plus presets for the families in docs (DeepSeek-V3, Kimi K2, GLM-4.5, Qwen3, Mixtral,
// gpt-oss, Llama 4, DeepSeek-V2-Lite). Plain values; thread-safe to share read-only.
//
// Semantics, per token t, with logits l[e] = x[t]·W[e] (+ router_bias[e]):
//   order == kScoreThenTopK:
//     s[e] = score(l)[e]            (softmax over all experts, sigmoid, or l itself)
//     selection[e] = s[e] + correction_bias[e] (bias only if has_correction_bias)
//     chosen = grouped_top_k(selection)
//     w[i] = s[chosen[i]]
//   order == kTopKThenScore:
//     selection[e] = l[e] + correction_bias[e]
//     chosen = grouped_top_k(selection)
//     w = score over the chosen logits only (softmax over the k chosen, or sigmoid each)
//   then, if renormalize: w /= sum(w); finally w *= scaling_factor.
// grouped_top_k: experts split into n_group equal groups; a group's score is the sum of
// its top `group_score_topk` selection scores; the topk_group best groups are kept and
// top_k experts are chosen among them. n_group == 1 is plain top-k.
// Ties: equal scores (of experts or of groups) pick the lower id. Chosen experts are
// returned in descending selection order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/dtype.h"

namespace moe {

enum class Scoring : int { kSoftmax = 0, kSigmoid = 1, kNone = 2 };
enum class RoutingOrder : int { kScoreThenTopK = 0, kTopKThenScore = 1 };

absl::string_view ScoringName(Scoring s);
absl::string_view RoutingOrderName(RoutingOrder o);
absl::StatusOr<Scoring> ParseScoring(absl::string_view name);
absl::StatusOr<RoutingOrder> ParseRoutingOrder(absl::string_view name);

// Limits of every backend (CPU and CUDA).
inline constexpr int kMaxTokens = 256;
inline constexpr int kMaxExperts = 512;
inline constexpr int kMaxTopK = 16;
inline constexpr int kMaxHidden = 16384;
inline constexpr int kHiddenMultiple = 8;

struct RouterSpec {
  std::string family;  // e.g. "deepseek_v3"; informational.
  int hidden = 0;
  int experts = 0;
  int top_k = 0;
  Scoring scoring = Scoring::kSoftmax;
  RoutingOrder order = RoutingOrder::kScoreThenTopK;
  bool has_router_bias = false;
  bool has_correction_bias = false;
  int n_group = 1;
  int topk_group = 1;
  int group_score_topk = 2;  // experts summed per group score (DeepSeek-V3: 2)
  bool renormalize = false;
  float scaling_factor = 1.0f;
};

// Checks a spec against the limits above; the message names the offending field.
absl::Status ValidateSpec(const RouterSpec& spec);

// The cheapest spec with the same results. Score-first softmax, renormalised, with neither
// a correction bias nor groups, is top-k-then-softmax: softmax is increasing, so the k best
// scores are the k best logits, and renormalising the chosen softmax scores cancels their
// common factor exp(-max) / sum, leaving softmax over the chosen logits (which already sums
// to 1). Routed that way, a token needs no max, sum or exponential over all its experts
// (Qwen3, Mixtral). Any other spec is returned unchanged. Ids differ only where two
// different logits round to one softmax score (a tie within rounding); weights agree to
// float rounding.
RouterSpec CheapestEquivalentSpec(const RouterSpec& spec);

// A model family preset: the spec plus the checkpoint conventions needed to load it.
struct FamilyPreset {
  std::string name;  // e.g. "deepseek_v3"
  RouterSpec spec;
  int layers = 0;                    // MoE layers in the released model (demo models use this)
  std::string weight_name;           // tensor name pattern, "{L}" replaced by the decoder layer
  std::string router_bias_name;      // empty when the family has none
  std::string correction_bias_name;  // empty when the family has none
};

// All presets; the returned reference lives for the program's lifetime.
const std::vector<FamilyPreset>& FamilyPresets();
absl::StatusOr<FamilyPreset> FindPreset(absl::string_view family);

// Tensor name for decoder layer `layer` from a pattern with "{L}".
std::string TensorNameForLayer(absl::string_view pattern, int layer);

}  // namespace moe
