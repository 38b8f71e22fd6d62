#include "server/router_model.h"

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "kernels/status_macros.h"
#include "server/safetensors.h"

namespace moe {
namespace {

absl::string_view AsBytes(const std::vector<float>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)};
}

}  // namespace

int64_t RouterModel::WeightBytes() const {
  int64_t total = 0;
  for (const auto& l : layers)
    total += l.weight.size() + 4 * (l.router_bias.size() + l.correction_bias.size());
  return total;
}

absl::Status ValidateModel(const RouterModel& m, const std::string& source) {
  auto spec_status = ValidateSpec(m.spec);
  if (!spec_status.ok())
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", spec_status.message()));
  if (m.layers.empty())
    return absl::InvalidArgumentError(absl::StrCat(source, ": no router layers"));
  const size_t expect = size_t(m.spec.experts) * m.spec.hidden * DTypeSize(m.weight_dtype);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const auto& l = m.layers[i];
    if (l.weight.size() != expect)
      return absl::InvalidArgumentError(absl::StrCat(source, ": layer ", i, ": weight has ",
                                                     l.weight.size(), " bytes, ", expect,
                                                     " expected"));
    if (m.spec.has_router_bias != !l.router_bias.empty() ||
        (!l.router_bias.empty() && l.router_bias.size() != size_t(m.spec.experts)))
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": layer ", i, ": router bias does not match the spec"));
    if (m.spec.has_correction_bias != !l.correction_bias.empty() ||
        (!l.correction_bias.empty() && l.correction_bias.size() != size_t(m.spec.experts)))
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": layer ", i, ": correction bias does not match the spec"));
  }
  return absl::OkStatus();
}

std::map<std::string, std::string> SpecToMetadata(const RouterSpec& s) {
  return {
      {"format", "moe-router/1"},
      {"family", s.family},
      {"hidden", absl::StrCat(s.hidden)},
      {"experts", absl::StrCat(s.experts)},
      {"top_k", absl::StrCat(s.top_k)},
      {"scoring", std::string(ScoringName(s.scoring))},
      {"order", std::string(RoutingOrderName(s.order))},
      {"router_bias", s.has_router_bias ? "true" : "false"},
      {"correction_bias", s.has_correction_bias ? "true" : "false"},
      {"n_group", absl::StrCat(s.n_group)},
      {"topk_group", absl::StrCat(s.topk_group)},
      {"group_score_topk", absl::StrCat(s.group_score_topk)},
      {"renormalize", s.renormalize ? "true" : "false"},
      {"scaling_factor", absl::StrCat(s.scaling_factor)},
  };
}

absl::StatusOr<RouterSpec> SpecFromMetadata(const std::map<std::string, std::string>& md,
                                            const std::string& source) {
  auto get = [&](const char* key) -> absl::StatusOr<std::string> {
    auto it = md.find(key);
    if (it == md.end())
      return absl::InvalidArgumentError(absl::StrCat(source, ": __metadata__ lacks '", key, "'"));
    return it->second;
  };
  auto get_int = [&](const char* key) -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(std::string v, get(key));
    int out;
    if (!absl::SimpleAtoi(v, &out))
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": __metadata__ '", key, "' is not an integer: '", v, "'"));
    return out;
  };
  auto get_bool = [&](const char* key) -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(std::string v, get(key));
    if (v != "true" && v != "false")
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": __metadata__ '", key, "' is not true/false: '", v, "'"));
    return v == "true";
  };
  RouterSpec s;
  ASSIGN_OR_RETURN(s.family, get("family"));
  ASSIGN_OR_RETURN(s.hidden, get_int("hidden"));
  ASSIGN_OR_RETURN(s.experts, get_int("experts"));
  ASSIGN_OR_RETURN(s.top_k, get_int("top_k"));
  ASSIGN_OR_RETURN(std::string scoring, get("scoring"));
  ASSIGN_OR_RETURN(s.scoring, ParseScoring(scoring));
  ASSIGN_OR_RETURN(std::string order, get("order"));
  ASSIGN_OR_RETURN(s.order, ParseRoutingOrder(order));
  ASSIGN_OR_RETURN(s.has_router_bias, get_bool("router_bias"));
  ASSIGN_OR_RETURN(s.has_correction_bias, get_bool("correction_bias"));
  ASSIGN_OR_RETURN(s.n_group, get_int("n_group"));
  ASSIGN_OR_RETURN(s.topk_group, get_int("topk_group"));
  ASSIGN_OR_RETURN(s.group_score_topk, get_int("group_score_topk"));
  ASSIGN_OR_RETURN(s.renormalize, get_bool("renormalize"));
  ASSIGN_OR_RETURN(std::string scale, get("scaling_factor"));
  if (!absl::SimpleAtof(scale, &s.scaling_factor))
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": __metadata__ 'scaling_factor' is not a number: '", scale, "'"));
  auto valid = ValidateSpec(s);
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", valid.message()));
  return s;
}

absl::Status WriteRouterFile(const RouterModel& m, const std::string& path) {
  RETURN_IF_ERROR(ValidateModel(m, path));
  std::vector<TensorToWrite> tensors;
  std::string source_layers;
  const int64_t e = m.spec.experts, h = m.spec.hidden;
  for (int i = 0; i < m.num_layers(); ++i) {
    const auto& l = m.layers[i];
    absl::StrAppend(&source_layers, i ? "," : "", l.source_layer);
    tensors.push_back({absl::StrCat("layers.", i, ".weight"),
                       ToStDType(m.weight_dtype),
                       {e, h},
                       {reinterpret_cast<const char*>(l.weight.data()), l.weight.size()}});
    if (!l.router_bias.empty())
      tensors.push_back(
          {absl::StrCat("layers.", i, ".router_bias"), StDType::kF32, {e}, AsBytes(l.router_bias)});
    if (!l.correction_bias.empty())
      tensors.push_back({absl::StrCat("layers.", i, ".correction_bias"),
                         StDType::kF32,
                         {e},
                         AsBytes(l.correction_bias)});
  }
  auto metadata = SpecToMetadata(m.spec);
  metadata["layers"] = absl::StrCat(m.num_layers());
  metadata["source_layers"] = source_layers;
  return WriteSafetensors(path, tensors, metadata);
}

absl::StatusOr<RouterModel> ReadRouterFile(const std::string& path, const std::string& name) {
  ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  RouterModel m;
  m.name = name;
  ASSIGN_OR_RETURN(m.spec, SpecFromMetadata(file->metadata(), path));
  auto layers_it = file->metadata().find("layers");
  int layers = 0;
  if (layers_it == file->metadata().end() || !absl::SimpleAtoi(layers_it->second, &layers) ||
      layers < 1 || layers > 100000)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": __metadata__ 'layers' is missing or invalid"));
  std::vector<std::string> source_layers;
  if (auto it = file->metadata().find("source_layers"); it != file->metadata().end())
    source_layers = absl::StrSplit(it->second, ',');
  const int64_t e = m.spec.experts, h = m.spec.hidden;
  bool dtype_set = false;
  for (int i = 0; i < layers; ++i) {
    RouterLayer layer;
    layer.source_layer = i;
    if (i < static_cast<int>(source_layers.size()))
      (void)absl::SimpleAtoi(source_layers[i], &layer.source_layer);
    const std::string wname = absl::StrCat("layers.", i, ".weight");
    ASSIGN_OR_RETURN(const TensorInfo* w, file->Find(wname));
    if (w->shape != std::vector<int64_t>{e, h})
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", wname, "': wrong shape for the model, expected [", e, ", ", h, "]"));
    ASSIGN_OR_RETURN(DType dt, ToDType(w->dtype, absl::StrCat(path, ": tensor '", wname, "'")));
    if (dtype_set && dt != m.weight_dtype)
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", wname, "': dtype differs from layer 0's"));
    m.weight_dtype = dt;
    dtype_set = true;
    layer.weight.assign(file->Data(*w), file->Data(*w) + (w->end - w->begin));
    auto read_bias = [&](const char* what, bool wanted, std::vector<float>* out) -> absl::Status {
      if (!wanted) return absl::OkStatus();
      const std::string bname = absl::StrCat("layers.", i, ".", what);
      ASSIGN_OR_RETURN(const TensorInfo* b, file->Find(bname));
      if (b->dtype != StDType::kF32 || b->shape != std::vector<int64_t>{e})
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", bname, "': expected F32 [", e, "]"));
      out->resize(e);
      std::memcpy(out->data(), file->Data(*b), e * 4);
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(read_bias("router_bias", m.spec.has_router_bias, &layer.router_bias));
    RETURN_IF_ERROR(
        read_bias("correction_bias", m.spec.has_correction_bias, &layer.correction_bias));
    m.layers.push_back(std::move(layer));
  }
  RETURN_IF_ERROR(ValidateModel(m, path));
  return m;
}

}  // namespace moe
