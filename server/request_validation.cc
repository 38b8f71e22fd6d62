#include "server/request_validation.h"

#include "absl/strings/str_cat.h"
#include "kernels/cpu_router.h"

namespace moe {

absl::StatusOr<std::unique_ptr<RouteWork>> ValidateRouteRequest(
    const moe_router::v1::RouteRequest& req, HiddenBytes* data,
    const std::map<std::string, ModelDescription>& models, int max_tokens, bool check_finite) {
  auto it = models.find(req.model());
  if (it == models.end())
    return absl::NotFoundError(absl::StrCat("model: '", req.model(), "' is not loaded"));
  const ModelDescription& m = it->second;
  if (req.layer() < 0 || req.layer() >= m.layers)
    return absl::NotFoundError(absl::StrCat("layer: ", req.layer(), " does not exist; model '",
                                            m.name, "' has layers 0..", m.layers - 1));
  const auto& t = req.hidden_states();
  DType dtype;
  switch (t.dtype()) {
    case moe_router::v1::DTYPE_BF16:
      dtype = DType::kBF16;
      break;
    case moe_router::v1::DTYPE_FP16:
      dtype = DType::kFP16;
      break;
    case moe_router::v1::DTYPE_FP32:
      dtype = DType::kFP32;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("hidden_states.dtype: ", t.dtype(),
                       " is not a supported dtype (DTYPE_BF16, DTYPE_FP16, DTYPE_FP32)"));
  }
  if (t.shape_size() != 2)
    return absl::InvalidArgumentError(absl::StrCat("hidden_states.shape: expected [tokens, ",
                                                   m.spec.hidden, "], got ", t.shape_size(),
                                                   " dimensions"));
  const int64_t tokens = t.shape(0), hidden = t.shape(1);
  if (tokens < 1 || tokens > max_tokens)
    return absl::InvalidArgumentError(
        absl::StrCat("hidden_states.shape[0]: tokens = ", tokens, ", expected 1..", max_tokens));
  if (hidden != m.spec.hidden)
    return absl::InvalidArgumentError(absl::StrCat("hidden_states.shape[1]: hidden = ", hidden,
                                                   ", expected ", m.spec.hidden, " for model '",
                                                   m.name, "'"));
  const size_t want = size_t(tokens) * hidden * DTypeSize(dtype);
  if (data->size() != want)
    return absl::InvalidArgumentError(absl::StrCat("hidden_states.data: ", data->size(),
                                                   " bytes, expected ", want, " (", tokens, " x ",
                                                   hidden, " x ", DTypeSize(dtype), ")"));
  if (check_finite) {
    auto finite = CheckFinite(data->data(), dtype, size_t(tokens) * hidden, kHiddenDataField);
    if (!finite.ok()) return finite;
  }
  auto work = std::make_unique<RouteWork>();
  work->model = m.name;
  work->layer = req.layer();
  work->dtype = dtype;
  work->tokens = static_cast<int>(tokens);
  work->top_k = m.spec.top_k;
  work->experts = m.spec.experts;
  work->hidden = m.spec.hidden;
  work->hidden_states = std::move(*data);
  work->want_logits = req.return_logits();
  return work;
}

absl::StatusOr<std::unique_ptr<RouteWork>> ValidateRouteRequest(
    moe_router::v1::RouteRequest* request, const std::map<std::string, ModelDescription>& models,
    int max_tokens, bool check_finite) {
  std::string* bytes = request->mutable_hidden_states()->mutable_data();
  HiddenBytes data(std::move(*bytes));
  auto work = ValidateRouteRequest(*request, &data, models, max_tokens, check_finite);
  if (!work.ok()) *bytes = data.TakeHeapBytes();  // a refused request keeps its bytes
  return work;
}

}  // namespace moe
