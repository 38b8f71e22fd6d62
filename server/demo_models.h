// Built-in demo models: every family preset with seeded synthetic router weights of the
// real shapes, so the server runs with no download. Named "demo-<family>" with dashes,
// e.g. "demo-deepseek-v3", "demo-qwen3-30b", "demo-mixtral", "demo-gpt-oss-20b".
// Deterministic for a given seed; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/router_model.h"

namespace moe {

// Names of all demo models.
std::vector<std::string> DemoModelNames();

// layers <= 0: the family's real number of MoE layers.
absl::StatusOr<RouterModel> MakeDemoModel(const std::string& name, int layers = 0,
                                          DType weight_dtype = DType::kBF16, uint64_t seed = 1);

// Synthetic weights for any spec (used by tests and benchmarks too): uniform values
// scaled so that logits of unit-variance hidden states have unit variance.
RouterModel MakeSyntheticModel(const RouterSpec& spec, int layers, DType weight_dtype,
                               uint64_t seed, const std::string& name);

}  // namespace moe
