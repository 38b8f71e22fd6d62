// Fuzz target: up to four RouteRequests (each framed as a 2-byte little-endian length, then
// its bytes) routed once each alone and once together through a batcher whose first batch
// is held until all are queued, so the rest merge into shared batches where their model,
// layer and dtype agree. Every request must get the same answer, to the bit, either way:
// the batcher must give each request its own rows of a merged batch (ids, weights, and
// logits where asked), and the CPU backend sums each token the same whatever the batch
// around it. A refused request is refused alone and does not disturb the others.
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/metrics.h"
#include "tests/fuzz/fuzz_models.h"

namespace moe::fuzz {
namespace {

constexpr int kMaxRequests = 4;

// The CPU backend behind a gate: Route waits while the gate is closed.
class GatedBackend : public RouterBackend {
 public:
  explicit GatedBackend(RouterBackend* inner) : inner_(inner) {}
  std::string name() const override { return inner_->name(); }
  std::string device() const override { return inner_->device(); }
  absl::Status LoadModel(const RouterModel& m) override { return inner_->LoadModel(m); }
  absl::StatusOr<double> Route(const std::string& model, int layer, const BatchIO& io) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      opened_.wait(lock, [&] { return open_; });
    }
    return inner_->Route(model, layer, io);
  }
  void SetOpen(bool open) {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = open;
    opened_.notify_all();
  }

 private:
  // std's primitives, not absl's: ThreadSanitizer sees them without annotations.
  RouterBackend* const inner_;
  std::mutex mu_;
  std::condition_variable opened_;
  bool open_ = true;
};

struct Harness {
  MetricsRegistry registry;
  ServerMetrics metrics{&registry};
  std::unique_ptr<RouterBackend> cpu = MakeCpuBackend(1);
  std::map<std::string, ModelDescription> models = LoadSmallModels(cpu.get());
  GatedBackend gated{cpu.get()};  // the same loaded models
  Batcher alone{cpu.get(), BatcherOptions{}, &metrics};
  Batcher together{&gated, BatcherOptions{}, &metrics};
};

// The answers of a set of requests, filled by their done callbacks from any thread. Shared
// with the callbacks: a worker may still be inside mu's unlock after the waiter has seen
// the last answer (TSan saw the waiter's stack frame reused under it).
struct Answers : std::enable_shared_from_this<Answers> {
  std::mutex mu;
  std::condition_variable arrived;
  int expected = 0, count = 0;
  std::vector<absl::Status> status{kMaxRequests};
  std::vector<RouteResult> result{kMaxRequests};
  std::function<void(absl::Status, RouteResult)> For(int i) {
    return [self = shared_from_this(), i](absl::Status s, RouteResult r) {
      std::lock_guard<std::mutex> lock(self->mu);
      self->status[i] = std::move(s);
      self->result[i] = std::move(r);
      ++self->count;
      self->arrived.notify_all();
    };
  }
  void WaitForAll() {
    std::unique_lock<std::mutex> lock(mu);
    arrived.wait(lock, [&] { return count == expected; });
  }
};

bool SameBits(const void* a, const void* b, size_t bytes) {
  return bytes == 0 || std::memcmp(a, b, bytes) == 0;
}

void RouteAloneAndTogether(const uint8_t* data, size_t size) {
  static Harness* const h = new Harness();
  std::vector<std::unique_ptr<RouteWork>> solo, merged;
  for (size_t at = 0; at + 2 <= size && solo.size() < kMaxRequests;) {
    const size_t len = std::min<size_t>(size - at - 2, data[at] | data[at + 1] << 8);
    moe_router::v1::RouteRequest a, b;
    const bool parsed = a.ParseFromArray(data + at + 2, static_cast<int>(len));
    at += 2 + len;
    if (!parsed) continue;
    b = a;
    auto wa = ValidateRouteRequest(&a, h->models, kMaxTokens);
    auto wb = ValidateRouteRequest(&b, h->models, kMaxTokens);
    if (wa.ok() != wb.ok()) std::abort();  // validation depends on the request alone
    if (!wa.ok()) continue;
    solo.push_back(std::move(*wa));
    merged.push_back(std::move(*wb));
  }
  const int n = static_cast<int>(solo.size());
  if (n == 0) return;
  const auto one_ptr = std::make_shared<Answers>(), batch_ptr = std::make_shared<Answers>();
  Answers &by_one = *one_ptr, &by_batch = *batch_ptr;
  by_batch.expected = n;
  std::vector<bool> want_logits(n);
  for (int i = 0; i < n; ++i) {
    const RouteWork& w = *solo[i];
    solo[i]->done = by_one.For(i);
    merged[i]->done = by_batch.For(i);
    const int tokens = w.tokens, top_k = w.top_k, experts = w.experts;
    want_logits[i] = w.want_logits;
    if (!h->alone.TryRunInline(solo[i])) std::abort();  // idle: runs at once
    std::lock_guard<std::mutex> lock(by_one.mu);        // answered inline, on this thread
    CheckRouted(by_one.status[i], by_one.result[i], tokens, top_k, experts, want_logits[i]);
  }
  // The first request's batch waits at the gate while the others queue behind it.
  h->gated.SetOpen(false);
  for (int i = 0; i < n; ++i) h->together.Submit(std::move(merged[i]));
  h->gated.SetOpen(true);
  by_batch.WaitForAll();
  for (int i = 0; i < n; ++i) {
    const RouteResult &one = by_one.result[i], &batch = by_batch.result[i];
    if (!by_batch.status[i].ok() || one.ids.size() != batch.ids.size() ||
        one.weights.size() != batch.weights.size() ||
        !SameBits(one.ids.data(), batch.ids.data(), one.ids.size() * 4) ||
        !SameBits(one.weights.data(), batch.weights.data(), one.weights.size() * 4))
      std::abort();
    if (want_logits[i] &&
        (one.logits.size() != batch.logits.size() ||
         !SameBits(one.logits.data(), batch.logits.data(), one.logits.size() * 4)))
      std::abort();
  }
}

}  // namespace
}  // namespace moe::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moe::fuzz::RouteAloneAndTogether(data, size);
  return 0;
}
