// Loading router weights from a Hugging Face checkpoint directory: config.json plus
// either model.safetensors.index.json with its shards or a single model.safetensors.
// Only the router tensors are read (shards are memory-mapped); the family comes from
// config.json's model_type and every routing parameter present in config.json overrides
// the family preset. Stateless; thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "server/router_model.h"

namespace moe {

absl::StatusOr<RouterModel> LoadCheckpointDir(const std::string& dir, const std::string& name);

// Loads a model from `source`: a checkpoint directory or a router-only .safetensors file.
absl::StatusOr<RouterModel> LoadModelSource(const std::string& source, const std::string& name);

}  // namespace moe
