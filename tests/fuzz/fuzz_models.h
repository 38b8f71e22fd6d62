// What the request fuzz targets share: two small models loaded into a CPU backend, their
// descriptions as the service keeps them, and the checks every routed request must pass.
#pragma once

#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "server/backend.h"
#include "server/batcher.h"
#include "server/demo_models.h"
#include "server/request_validation.h"

namespace moe::fuzz {

inline RouterSpec SmallSpec(const char* family, int experts, int top_k, int groups,
                            int topk_group) {
  RouterSpec spec = FindPreset(family).value().spec;
  spec.hidden = 64;
  spec.experts = experts;
  spec.top_k = top_k;
  spec.n_group = groups;
  spec.topk_group = topk_group;
  return spec;
}

// DeepSeek-V3's grouped sigmoid routing with a correction bias ("ds", bf16 weights) and
// GPT-OSS's top-k-then-softmax with a router bias ("oss", fp32 weights), hidden 64 each so
// an input costs microseconds. Loads them into `backend`; returns their descriptions.
inline std::map<std::string, ModelDescription> LoadSmallModels(RouterBackend* backend) {
  // Malformed UTF-8 in `model` is refused by the parser with a log line per input.
  google::protobuf::SetLogHandler(nullptr);
  const RouterModel small[] = {
      MakeSyntheticModel(SmallSpec("deepseek_v3", 32, 4, 4, 2), 2, DType::kBF16, 1, "ds"),
      MakeSyntheticModel(SmallSpec("gpt_oss_20b", 8, 2, 1, 1), 2, DType::kFP32, 2, "oss")};
  std::map<std::string, ModelDescription> models;
  for (const RouterModel& m : small) {
    if (!backend->LoadModel(m).ok()) std::abort();
    ModelDescription d;
    d.name = m.name;
    d.spec = m.spec;
    d.weight_dtype = m.weight_dtype;
    d.layers = m.num_layers();
    models[m.name] = d;
  }
  return models;
}

// Aborts (the fuzzer's report) unless a validated request was answered OK with top_k
// distinct experts in range per token, finite non-negative weights, and logits if asked.
inline void CheckRouted(const absl::Status& status, const RouteResult& r, int tokens, int top_k,
                        int experts, bool want_logits) {
  if (!status.ok()) std::abort();  // validated input is routed
  if (r.ids.size() != size_t(tokens) * top_k || r.weights.size() != r.ids.size()) std::abort();
  if (want_logits && r.logits.size() != size_t(tokens) * experts) std::abort();
  for (int t = 0; t < tokens; ++t) {
    std::vector<bool> seen(experts, false);
    for (int j = 0; j < top_k; ++j) {
      const int32_t id = r.ids[size_t(t) * top_k + j];
      const float w = r.weights[size_t(t) * top_k + j];
      if (id < 0 || id >= experts || seen[id] || !std::isfinite(w) || w < 0) std::abort();
      seen[id] = true;
    }
  }
}

}  // namespace moe::fuzz
