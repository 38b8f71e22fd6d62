// Fuzz target: any bytes as a RouteRequest off the wire, through the server's own path:
// ValidateRouteRequest, then the batcher running it on the CPU backend. A request is
// either refused with a message or routed; a routed one gets top_k distinct experts in
// range per token with finite weights. Two small models (DeepSeek-V3's grouped sigmoid
// routing with a correction bias, and GPT-OSS's top-k-then-softmax with a router bias)
// keep each input cheap.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "server/backend.h"
#include "server/batcher.h"
#include "server/demo_models.h"
#include "server/metrics.h"
#include "server/request_validation.h"

namespace moe {
namespace {

RouterSpec SmallSpec(const char* family, int experts, int top_k, int groups, int topk_group) {
  RouterSpec spec = FindPreset(family).value().spec;
  spec.hidden = 64;
  spec.experts = experts;
  spec.top_k = top_k;
  spec.n_group = groups;
  spec.topk_group = topk_group;
  return spec;
}

struct Harness {
  MetricsRegistry registry;
  ServerMetrics metrics{&registry};
  std::unique_ptr<RouterBackend> backend = MakeCpuBackend(1);
  std::map<std::string, ModelDescription> models;
  std::unique_ptr<Batcher> batcher;

  Harness() {
    // Malformed UTF-8 in `model` is refused by the parser with a log line per input.
    google::protobuf::SetLogHandler(nullptr);
    const RouterModel small[] = {
        MakeSyntheticModel(SmallSpec("deepseek_v3", 32, 4, 4, 2), 2, DType::kBF16, 1, "ds"),
        MakeSyntheticModel(SmallSpec("gpt_oss_20b", 8, 2, 1, 1), 2, DType::kFP32, 2, "oss")};
    for (const RouterModel& m : small) {
      if (!backend->LoadModel(m).ok()) std::abort();
      ModelDescription d;
      d.name = m.name;
      d.spec = m.spec;
      d.weight_dtype = m.weight_dtype;
      d.layers = m.num_layers();
      models[m.name] = d;
    }
    // No idle spin and no queue delay: an idle batcher runs a lone request inline.
    batcher = std::make_unique<Batcher>(backend.get(), BatcherOptions{}, &metrics);
  }
};

void RouteOne(const uint8_t* data, size_t size) {
  static Harness* const h = new Harness();  // lives for the process, as the server's does
  moe_router::v1::RouteRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return;
  auto work = ValidateRouteRequest(&request, h->models, kMaxTokens);
  if (!work.ok()) {
    if (work.status().message().empty()) std::abort();  // every refusal names its field
    return;
  }
  const int tokens = (*work)->tokens, top_k = (*work)->top_k, experts = (*work)->experts;
  const bool want_logits = (*work)->want_logits;
  bool answered = false;
  absl::Status status;
  RouteResult result;
  (*work)->done = [&](absl::Status s, RouteResult r) {
    answered = true;
    status = std::move(s);
    result = std::move(r);
  };
  std::unique_ptr<RouteWork> lone = std::move(*work);
  if (!h->batcher->TryRunInline(lone) || !answered) std::abort();  // idle: runs at once
  if (!status.ok()) std::abort();                                  // validated input is routed
  if (result.ids.size() != size_t(tokens) * top_k || result.weights.size() != result.ids.size())
    std::abort();
  if (want_logits && result.logits.size() != size_t(tokens) * experts) std::abort();
  for (int t = 0; t < tokens; ++t) {
    std::vector<bool> seen(experts, false);
    for (int j = 0; j < top_k; ++j) {
      const int32_t id = result.ids[size_t(t) * top_k + j];
      const float w = result.weights[size_t(t) * top_k + j];
      if (id < 0 || id >= experts || seen[id] || !std::isfinite(w) || w < 0) std::abort();
      seen[id] = true;
    }
  }
}

}  // namespace
}  // namespace moe

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moe::RouteOne(data, size);
  return 0;
}
