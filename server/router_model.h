// RouterModel: one model's validated routing spec and its router weights for every MoE
// layer, in host memory. Built by the checkpoint loader, the router-file loader or the
// demo generator; immutable once built and safe to share between threads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/router_spec.h"

namespace moe {

struct RouterLayer {
  int source_layer = 0;                // decoder-layer index in the original checkpoint
  std::vector<uint8_t> weight;         // [experts, hidden] of RouterModel::weight_dtype
  std::vector<float> router_bias;      // [experts] or empty
  std::vector<float> correction_bias;  // [experts] or empty
};

struct RouterModel {
  std::string name;
  RouterSpec spec;
  DType weight_dtype = DType::kBF16;
  std::vector<RouterLayer> layers;

  int num_layers() const { return static_cast<int>(layers.size()); }
  int64_t WeightBytes() const;
};

// Checks that every layer's tensors match the spec; errors name `source` and the layer.
absl::Status ValidateModel(const RouterModel& model, const std::string& source);

// The compact router-only safetensors file: tensors "layers.{i}.weight",
// "layers.{i}.router_bias", "layers.{i}.correction_bias" and the routing parameters in
// __metadata__ (see router_model.cc for the keys).
absl::Status WriteRouterFile(const RouterModel& model, const std::string& path);
absl::StatusOr<RouterModel> ReadRouterFile(const std::string& path, const std::string& name);

// The metadata keys that carry a spec, shared by the router file and tests.
std::map<std::string, std::string> SpecToMetadata(const RouterSpec& spec);
absl::StatusOr<RouterSpec> SpecFromMetadata(const std::map<std::string, std::string>& metadata,
                                            const std::string& source);

}  // namespace moe
