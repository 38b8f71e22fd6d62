#include "kernels/router_spec.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"

namespace moe {

absl::string_view ScoringName(Scoring s) {
  switch (s) {
    case Scoring::kSoftmax:
      return "softmax";
    case Scoring::kSigmoid:
      return "sigmoid";
    case Scoring::kNone:
      return "none";
  }
  return "unknown";
}

absl::string_view RoutingOrderName(RoutingOrder o) {
  return o == RoutingOrder::kScoreThenTopK ? "score_then_topk" : "topk_then_score";
}

absl::StatusOr<Scoring> ParseScoring(absl::string_view name) {
  if (name == "softmax") return Scoring::kSoftmax;
  if (name == "sigmoid") return Scoring::kSigmoid;
  if (name == "none" || name.empty()) return Scoring::kNone;
  return absl::InvalidArgumentError(
      absl::StrCat("scoring: unknown scoring function '", name, "' (softmax, sigmoid, none)"));
}

absl::StatusOr<RoutingOrder> ParseRoutingOrder(absl::string_view name) {
  if (name == "score_then_topk") return RoutingOrder::kScoreThenTopK;
  if (name == "topk_then_score") return RoutingOrder::kTopKThenScore;
  return absl::InvalidArgumentError(
      absl::StrCat("order: unknown routing order '", name, "' (score_then_topk, topk_then_score)"));
}

absl::Status ValidateSpec(const RouterSpec& s) {
  auto bad = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (s.hidden <= 0 || s.hidden > kMaxHidden || s.hidden % kHiddenMultiple != 0)
    return bad("hidden: ", s.hidden, " is not a multiple of ", kHiddenMultiple, " in [",
               kHiddenMultiple, ", ", kMaxHidden, "]");
  if (s.experts < 1 || s.experts > kMaxExperts)
    return bad("experts: ", s.experts, " is outside [1, ", kMaxExperts, "]");
  if (s.top_k < 1 || s.top_k > kMaxTopK || s.top_k > s.experts)
    return bad("top_k: ", s.top_k, " is outside [1, min(", kMaxTopK, ", experts=", s.experts, ")]");
  if (s.n_group < 1 || s.experts % s.n_group != 0)
    return bad("n_group: ", s.n_group, " does not divide experts=", s.experts);
  if (s.n_group > 32) return bad("n_group: ", s.n_group, " is above the limit of 32");
  if (s.topk_group < 1 || s.topk_group > s.n_group)
    return bad("topk_group: ", s.topk_group, " is outside [1, n_group=", s.n_group, "]");
  const int per_group = s.experts / s.n_group;
  if (s.n_group > 1 && (s.group_score_topk < 1 || s.group_score_topk > per_group))
    return bad("group_score_topk: ", s.group_score_topk,
               " is outside [1, experts per group=", per_group, "]");
  if (s.top_k > s.topk_group * per_group)
    return bad("top_k: ", s.top_k, " exceeds the experts in the kept groups (",
               s.topk_group * per_group, ")");
  if (!(s.scaling_factor > 0.0f) || s.scaling_factor > 1e6f)
    return bad("scaling_factor: ", s.scaling_factor, " must be a positive finite number");
  return absl::OkStatus();
}

RouterSpec CheapestEquivalentSpec(const RouterSpec& spec) {
  RouterSpec out = spec;
  if (spec.scoring == Scoring::kSoftmax && spec.order == RoutingOrder::kScoreThenTopK &&
      spec.renormalize && !spec.has_correction_bias && spec.n_group == 1) {
    out.order = RoutingOrder::kTopKThenScore;
    out.renormalize = false;
  }
  return out;
}

namespace {

RouterSpec MakeSpec(std::string family, int hidden, int experts, int top_k, Scoring scoring,
                    RoutingOrder order, bool renormalize, float scaling) {
  RouterSpec s;
  s.family = std::move(family);
  s.hidden = hidden;
  s.experts = experts;
  s.top_k = top_k;
  s.scoring = scoring;
  s.order = order;
  s.renormalize = renormalize;
  s.scaling_factor = scaling;
  return s;
}

std::vector<FamilyPreset> BuildPresets() {
  constexpr auto kStk = RoutingOrder::kScoreThenTopK;
  constexpr auto kTks = RoutingOrder::kTopKThenScore;
  std::vector<FamilyPreset> p;
  auto deepseek_like = [&](const std::string& name, int hidden, int experts, int n_group,
                           int topk_group, float scale, int layers) {
    FamilyPreset f;
    f.name = name;
    f.spec = MakeSpec(name, hidden, experts, 8, Scoring::kSigmoid, kStk, true, scale);
    f.spec.has_correction_bias = true;
    f.spec.n_group = n_group;
    f.spec.topk_group = topk_group;
    f.layers = layers;
    f.weight_name = "model.layers.{L}.mlp.gate.weight";
    f.correction_bias_name = "model.layers.{L}.mlp.gate.e_score_correction_bias";
    p.push_back(f);
  };
  deepseek_like("deepseek_v3", 7168, 256, 8, 4, 2.5f, 58);
  deepseek_like("kimi_k2", 7168, 384, 1, 1, 2.827f, 60);
  deepseek_like("glm4_moe", 5120, 160, 1, 1, 2.5f, 89);

  auto plain = [&](const std::string& name, int hidden, int experts, int top_k, Scoring scoring,
                   RoutingOrder order, bool renorm, float scale, int layers, std::string weight,
                   std::string bias = "") {
    FamilyPreset f;
    f.name = name;
    f.spec = MakeSpec(name, hidden, experts, top_k, scoring, order, renorm, scale);
    f.spec.has_router_bias = !bias.empty();
    f.layers = layers;
    f.weight_name = std::move(weight);
    f.router_bias_name = std::move(bias);
    p.push_back(f);
  };
  const std::string qwen_gate = "model.layers.{L}.mlp.gate.weight";
  plain("qwen3_235b", 4096, 128, 8, Scoring::kSoftmax, kStk, true, 1.0f, 94, qwen_gate);
  plain("qwen3_30b", 2048, 128, 8, Scoring::kSoftmax, kStk, true, 1.0f, 48, qwen_gate);
  plain("mixtral", 4096, 8, 2, Scoring::kSoftmax, kStk, true, 1.0f, 32,
        "model.layers.{L}.block_sparse_moe.gate.weight");
  plain("gpt_oss_120b", 2880, 128, 4, Scoring::kSoftmax, kTks, false, 1.0f, 36,
        "model.layers.{L}.mlp.router.weight", "model.layers.{L}.mlp.router.bias");
  plain("gpt_oss_20b", 2880, 32, 4, Scoring::kSoftmax, kTks, false, 1.0f, 24,
        "model.layers.{L}.mlp.router.weight", "model.layers.{L}.mlp.router.bias");
  const std::string llama_router = "language_model.model.layers.{L}.feed_forward.router.weight";
  plain("llama4_maverick", 5120, 128, 1, Scoring::kSigmoid, kTks, false, 1.0f, 24, llama_router);
  plain("llama4_scout", 5120, 16, 1, Scoring::kSigmoid, kTks, false, 1.0f, 48, llama_router);
  plain("deepseek_v2_lite", 2048, 64, 6, Scoring::kSoftmax, kStk, false, 1.0f, 26, qwen_gate);
  return p;
}

}  // namespace

const std::vector<FamilyPreset>& FamilyPresets() {
  static const std::vector<FamilyPreset>* presets = new std::vector<FamilyPreset>(BuildPresets());
  return *presets;
}

absl::StatusOr<FamilyPreset> FindPreset(absl::string_view family) {
  for (const auto& p : FamilyPresets())
    if (p.name == family) return p;
  std::string names;
  for (const auto& p : FamilyPresets()) absl::StrAppend(&names, names.empty() ? "" : ", ", p.name);
  return absl::NotFoundError(absl::StrCat("family: unknown family '", family, "' (", names, ")"));
}

std::string TensorNameForLayer(absl::string_view pattern, int layer) {
  return absl::StrReplaceAll(pattern, {{"{L}", absl::StrCat(layer)}});
}

}  // namespace moe
