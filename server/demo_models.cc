#include "server/demo_models.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "kernels/status_macros.h"

namespace moe {
namespace {

// splitmix64: fast, seedable, good enough for synthetic weights.
struct SplitMix {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float Symmetric() { return static_cast<float>(Next() >> 40) * (2.0f / 16777216.0f) - 1.0f; }
};

std::string DemoName(const std::string& family) {
  return "demo-" + absl::StrReplaceAll(family, {{"_", "-"}});
}

}  // namespace

std::vector<std::string> DemoModelNames() {
  std::vector<std::string> names;
  for (const auto& p : FamilyPresets()) names.push_back(DemoName(p.name));
  return names;
}

RouterModel MakeSyntheticModel(const RouterSpec& spec, int layers, DType weight_dtype,
                               uint64_t seed, const std::string& name) {
  RouterModel m;
  m.name = name;
  m.spec = spec;
  m.weight_dtype = weight_dtype;
  // Uniform(-a, a) has variance a^2/3; a = sqrt(3/hidden) gives unit-variance logits.
  const float a = std::sqrt(3.0f / static_cast<float>(spec.hidden));
  const size_t count = size_t(spec.experts) * spec.hidden;
  for (int l = 0; l < layers; ++l) {
    SplitMix rng{seed * 1000003ull + static_cast<uint64_t>(l)};
    RouterLayer layer;
    layer.source_layer = l;
    layer.weight.resize(count * DTypeSize(weight_dtype));
    for (size_t i = 0; i < count; ++i)
      StoreFromFloat(layer.weight.data(), weight_dtype, i, a * rng.Symmetric());
    if (spec.has_router_bias) {
      layer.router_bias.resize(spec.experts);
      for (float& b : layer.router_bias) b = 0.1f * rng.Symmetric();
    }
    if (spec.has_correction_bias) {
      layer.correction_bias.resize(spec.experts);
      for (float& b : layer.correction_bias) b = 0.05f * rng.Symmetric();
    }
    m.layers.push_back(std::move(layer));
  }
  return m;
}

absl::StatusOr<RouterModel> MakeDemoModel(const std::string& name, int layers, DType weight_dtype,
                                          uint64_t seed) {
  for (const auto& p : FamilyPresets()) {
    if (DemoName(p.name) != name) continue;
    return MakeSyntheticModel(p.spec, layers > 0 ? layers : p.layers, weight_dtype, seed, name);
  }
  std::string names;
  for (const auto& n : DemoModelNames()) absl::StrAppend(&names, names.empty() ? "" : ", ", n);
  return absl::NotFoundError(absl::StrCat("model: unknown demo model '", name, "' (", names, ")"));
}

}  // namespace moe
