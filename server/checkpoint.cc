#include "server/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <regex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "kernels/status_macros.h"
#include "server/json_util.h"
#include "server/safetensors.h"

namespace moe {
namespace {

// Layer numbers in tensor names above this are refused (real models have at most a few
// hundred layers).
constexpr int kMaxSourceLayer = 100000;

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// config.json model_type -> preset name.
absl::StatusOr<std::string> PresetForModelType(const std::string& model_type) {
  if (model_type == "deepseek_v3") return std::string("deepseek_v3");
  if (model_type == "kimi_k2") return std::string("kimi_k2");
  if (model_type == "glm4_moe") return std::string("glm4_moe");
  if (model_type == "qwen3_moe") return std::string("qwen3_30b");
  if (model_type == "mixtral") return std::string("mixtral");
  if (model_type == "gpt_oss") return std::string("gpt_oss_20b");
  if (model_type == "llama4" || model_type == "llama4_text") return std::string("llama4_scout");
  if (model_type == "deepseek_v2") return std::string("deepseek_v2_lite");
  return absl::InvalidArgumentError(
      absl::StrCat("config.json: model_type '", model_type, "' is not a supported MoE family"));
}

// Applies the routing keys present in config.json on top of the preset.
absl::Status ApplyConfig(const google::protobuf::Struct& cfg, const std::string& path,
                         RouterSpec* spec) {
  // The first key present wins; its value must be a whole number an int holds (a cast of
  // anything else would be undefined), and ValidateSpec judges the range below.
  auto set_int = [&](std::initializer_list<const char*> keys, int* out) -> absl::Status {
    for (const char* k : keys)
      if (auto v = JsonNumber(cfg, k)) {
        constexpr int kMax = std::numeric_limits<int>::max();
        const std::optional<uint64_t> whole = WholeNumberUpTo(*v, kMax);
        if (!whole)
          return absl::InvalidArgumentError(
              absl::StrCat(path, ": '", k, "' = ", *v, " is not a whole number 0..", kMax));
        *out = static_cast<int>(*whole);
        return absl::OkStatus();
      }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(set_int({"hidden_size"}, &spec->hidden));
  RETURN_IF_ERROR(
      set_int({"n_routed_experts", "num_experts", "num_local_experts"}, &spec->experts));
  RETURN_IF_ERROR(set_int({"num_experts_per_tok", "experts_per_token"}, &spec->top_k));
  RETURN_IF_ERROR(set_int({"n_group"}, &spec->n_group));
  RETURN_IF_ERROR(set_int({"topk_group"}, &spec->topk_group));
  if (auto v = JsonString(cfg, "scoring_func")) {
    ASSIGN_OR_RETURN(spec->scoring, ParseScoring(*v));
  }
  if (auto v = JsonBool(cfg, "norm_topk_prob")) spec->renormalize = *v;
  if (auto v = JsonNumber(cfg, "routed_scaling_factor"))
    spec->scaling_factor = static_cast<float>(*v);
  auto valid = ValidateSpec(*spec);
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", valid.message()));
  return absl::OkStatus();
}

// Tensor name -> shard file, from the index or the single file.
absl::StatusOr<std::map<std::string, std::string>> TensorFiles(const std::string& dir) {
  std::map<std::string, std::string> files;
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (IsFile(index_path)) {
    ASSIGN_OR_RETURN(auto index, ReadJsonFile(index_path));
    auto it = index.fields().find("weight_map");
    if (it == index.fields().end() || !it->second.has_struct_value())
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": no 'weight_map' object"));
    for (const auto& [tensor, file] : it->second.struct_value().fields()) {
      if (!file.has_string_value() || file.string_value().find('/') != std::string::npos)
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": weight_map entry for '", tensor, "' is not a file name"));
      files[tensor] = dir + "/" + file.string_value();
    }
    return files;
  }
  const std::string single = dir + "/model.safetensors";
  if (!IsFile(single))
    return absl::NotFoundError(
        absl::StrCat(dir, ": neither model.safetensors.index.json nor model.safetensors found"));
  ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single));
  for (const auto& [tensor, info] : file->tensors()) files[tensor] = single;
  return files;
}

// Reads a bias vector of `experts` elements (F32, BF16 or F16) as float.
absl::StatusOr<std::vector<float>> ReadBias(const SafetensorsFile& file, const std::string& name,
                                            int experts) {
  ASSIGN_OR_RETURN(const TensorInfo* t, file.Find(name));
  const std::string where = absl::StrCat(file.path(), ": tensor '", name, "'");
  if (t->shape != std::vector<int64_t>{experts})
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": wrong shape for the model, expected [", experts, "]"));
  ASSIGN_OR_RETURN(DType dt, ToDType(t->dtype, where));
  std::vector<float> out(experts);
  for (int e = 0; e < experts; ++e) out[e] = LoadAsFloat(file.Data(*t), dt, e);
  return out;
}

}  // namespace

absl::StatusOr<RouterModel> LoadCheckpointDir(const std::string& dir, const std::string& name) {
  const std::string config_path = dir + "/config.json";
  ASSIGN_OR_RETURN(auto config, ReadJsonFile(config_path));
  // Multimodal configs (Llama 4) keep the language model's keys under text_config.
  if (auto it = config.fields().find("text_config");
      it != config.fields().end() && it->second.has_struct_value()) {
    auto model_type = JsonString(config, "model_type");
    config = it->second.struct_value();
    if (model_type && !JsonString(config, "model_type"))
      (*config.mutable_fields())["model_type"].set_string_value(*model_type);
  }
  auto model_type = JsonString(config, "model_type");
  if (!model_type)
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": no 'model_type'"));
  ASSIGN_OR_RETURN(std::string preset_name, PresetForModelType(*model_type));
  ASSIGN_OR_RETURN(FamilyPreset preset, FindPreset(preset_name));
  RouterModel model;
  model.name = name;
  model.spec = preset.spec;
  RETURN_IF_ERROR(ApplyConfig(config, config_path, &model.spec));

  ASSIGN_OR_RETURN(auto tensor_files, TensorFiles(dir));
  // The MoE layers are those whose router weight exists (dense layers have none).
  std::string pattern =
      absl::StrReplaceAll(preset.weight_name, {{".", "\\."}, {"{L}", "([0-9]+)"}});
  const std::regex weight_re(pattern);
  std::vector<int> moe_layers;
  for (const auto& [tensor, file] : tensor_files) {
    std::smatch m;
    if (!std::regex_match(tensor, m, weight_re)) continue;
    int layer = 0;  // not std::stoi, which throws on a number beyond int
    if (!absl::SimpleAtoi(m[1].str(), &layer) || layer > kMaxSourceLayer)
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": tensor '", tensor, "': layer number beyond 0..", kMaxSourceLayer));
    moe_layers.push_back(layer);
  }
  std::sort(moe_layers.begin(), moe_layers.end());
  if (moe_layers.empty())
    return absl::NotFoundError(absl::StrCat(dir, ": missing tensor '",
                                            TensorNameForLayer(preset.weight_name, 0),
                                            "' (no router weights of family ", preset.name, ")"));

  std::map<std::string, std::unique_ptr<SafetensorsFile>> open_files;
  auto open = [&](const std::string& tensor) -> absl::StatusOr<const SafetensorsFile*> {
    auto it = tensor_files.find(tensor);
    if (it == tensor_files.end())
      return absl::NotFoundError(absl::StrCat(dir, ": missing tensor '", tensor, "'"));
    auto& slot = open_files[it->second];
    if (!slot) {
      ASSIGN_OR_RETURN(slot, SafetensorsFile::Open(it->second));
    }
    return slot.get();
  };
  const int64_t e = model.spec.experts, h = model.spec.hidden;
  for (int layer_index : moe_layers) {
    RouterLayer layer;
    layer.source_layer = layer_index;
    const std::string wname = TensorNameForLayer(preset.weight_name, layer_index);
    ASSIGN_OR_RETURN(const SafetensorsFile* file, open(wname));
    ASSIGN_OR_RETURN(const TensorInfo* w, file->Find(wname));
    const std::string where = absl::StrCat(file->path(), ": tensor '", wname, "'");
    if (w->shape != std::vector<int64_t>{e, h})
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": wrong shape for the model, expected [", e, ", ", h, "] from config.json"));
    ASSIGN_OR_RETURN(DType dt, ToDType(w->dtype, where));
    if (layer_index != moe_layers.front() && dt != model.weight_dtype)
      return absl::InvalidArgumentError(absl::StrCat(where, ": dtype differs from other layers"));
    model.weight_dtype = dt;
    layer.weight.assign(file->Data(*w), file->Data(*w) + (w->end - w->begin));
    if (model.spec.has_router_bias) {
      const std::string bname = TensorNameForLayer(preset.router_bias_name, layer_index);
      ASSIGN_OR_RETURN(const SafetensorsFile* bfile, open(bname));
      ASSIGN_OR_RETURN(layer.router_bias, ReadBias(*bfile, bname, e));
    }
    if (model.spec.has_correction_bias) {
      const std::string bname = TensorNameForLayer(preset.correction_bias_name, layer_index);
      ASSIGN_OR_RETURN(const SafetensorsFile* bfile, open(bname));
      ASSIGN_OR_RETURN(layer.correction_bias, ReadBias(*bfile, bname, e));
    }
    model.layers.push_back(std::move(layer));
  }
  RETURN_IF_ERROR(ValidateModel(model, dir));
  return model;
}

absl::StatusOr<RouterModel> LoadModelSource(const std::string& source, const std::string& name) {
  if (IsDirectory(source)) return LoadCheckpointDir(source, name);
  if (IsFile(source)) return ReadRouterFile(source, name);
  return absl::NotFoundError(absl::StrCat(source, ": no such checkpoint directory or router file"));
}

}  // namespace moe
