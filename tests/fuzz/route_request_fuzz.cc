// Fuzz target: any bytes as a RouteRequest off the wire, through the server's own path:
// ValidateRouteRequest, then the batcher running it on the CPU backend. A request is
// either refused with a message or routed, and a routed one passes CheckRouted.
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "server/metrics.h"
#include "tests/fuzz/fuzz_models.h"

namespace moe::fuzz {
namespace {

struct Harness {
  MetricsRegistry registry;
  ServerMetrics metrics{&registry};
  std::unique_ptr<RouterBackend> backend = MakeCpuBackend(1);
  std::map<std::string, ModelDescription> models = LoadSmallModels(backend.get());
  // No idle spin and no queue delay: an idle batcher runs a lone request inline.
  Batcher batcher{backend.get(), BatcherOptions{}, &metrics};
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
  const RouteWork& w = **work;
  const int tokens = w.tokens, top_k = w.top_k, experts = w.experts;
  const bool want_logits = w.want_logits;
  bool answered = false;
  absl::Status status;
  RouteResult result;
  (*work)->done = [&](absl::Status s, RouteResult r) {
    answered = true;
    status = std::move(s);
    result = std::move(r);
  };
  std::unique_ptr<RouteWork> lone = std::move(*work);
  if (!h->batcher.TryRunInline(lone) || !answered) std::abort();  // idle: runs at once
  CheckRouted(status, result, tokens, top_k, experts, want_logits);
}

}  // namespace
}  // namespace moe::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moe::fuzz::RouteOne(data, size);
  return 0;
}
