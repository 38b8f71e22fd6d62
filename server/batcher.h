// The dynamic batcher: one queue per (model, layer, dtype) and backend->concurrency()
// workers, so the GPU backend keeps two batches in flight. A batch launches as soon as a
// worker is free and work is queued (or after
// max_queue_delay_us to let it fill), up to max_batch_tokens; results are scattered back
// to each request through its callback. Requests whose deadline passed or that were
// cancelled are answered without being computed. A bounded queue sheds load.
// Thread-safe: Submit may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/backend.h"
#include "server/batching_policy.h"
#include "server/input_pool.h"
#include "server/metrics.h"

namespace moe {

using Clock = std::chrono::steady_clock;

struct RouteResult {
  std::vector<int32_t> ids;
  std::vector<float> weights;
  std::vector<float> logits;
  double queue_seconds = 0, compute_seconds = 0;
  int batch_tokens = 0, batch_requests = 0;
};

// The request field non-finite hidden states are reported against, by validation or, when
// the backend checks them on the device, by the batcher.
inline constexpr char kHiddenDataField[] = "hidden_states.data";

struct RouteWork {
  std::string model;
  int layer = 0;
  DType dtype = DType::kBF16;
  int tokens = 0;
  int top_k = 0, experts = 0, hidden = 0;
  HiddenBytes hidden_states;  // [tokens, hidden] raw
  bool want_logits = false;
  Clock::time_point arrival;
  Clock::time_point deadline = Clock::time_point::max();
  std::function<bool()> cancelled;  // may be empty
  std::function<void(absl::Status, RouteResult)> done;
};

struct BatcherOptions {
  BatchingLimits limits;
  int max_queued_requests = 4096;
  // The same bound on the hidden-state bytes waiting: 4096 requests of 256 DeepSeek-V3
  // tokens hold 15 GB, past the memory a container is usually given. A request that finds
  // the queue empty is always taken, whatever its size (the message size limit bounds it).
  int64_t max_queued_bytes = int64_t{1} << 30;
  // How long an idle worker busy-waits for the next request before sleeping. A spinning
  // worker takes a lone request within a microsecond and runs it on a thread whose caches
  // hold the backend's code and data (a request run on a cold gRPC thread costs ~30 us
  // more on the CUDA path, measured); the price is a core kept busy that long after each
  // batch. 0: sleep at once (then a lone request runs inline on the gRPC thread); > 0:
  // every request goes to the workers.
  int idle_spin_us = 0;
  // Called once, from a worker, when the backend reports itself unhealthy after a batch.
  std::function<void()> on_backend_failure;
};

class Batcher {
 public:
  Batcher(RouterBackend* backend, BatcherOptions options, ServerMetrics* metrics);
  ~Batcher();  // drains: finishes every queued request, then stops

  // Queues the work or answers it at once (RESOURCE_EXHAUSTED when the queue is full,
  // UNAVAILABLE after Shutdown).
  void Submit(std::unique_ptr<RouteWork> work);
  // Run-to-completion for a lone request: when nothing is queued, a batch slot is free, idle
  // spinning is off and the policy launches at once (max_queue_delay_us == 0),
  // computes `work` on the calling thread — skipping two thread hand-offs — and returns
  // true; otherwise leaves `work` untouched and returns false (then Submit it).
  bool TryRunInline(std::unique_ptr<RouteWork>& work);
  // Gives `work` straight to a worker spinning for it (nothing queued, no queue delay) and
  // returns true; otherwise leaves it untouched and returns false. Submit tries this first.
  // A request whose bytes are still being filled (HiddenBytes::BeginFill) may go this way:
  // it is a batch of its own, and the worker reads its bytes only as the fill marks them.
  bool TryHandOff(std::unique_ptr<RouteWork>& work);
  // Stops accepting; the worker finishes what is queued. Idempotent.
  void Shutdown();
  int queued() const;
  // Workers busy-waiting for work right now (0 or 1; see idle_spin_us).
  int spinning_workers() const { return spinning_.load(); }

 private:
  using Key = std::tuple<std::string, int, int>;
  void WorkerMain();
  // Busy-waits up to idle_spin_us for queued work or shutdown; true if some arrived. A
  // request handed over through the mailbox while spinning lands in `direct`.
  bool SpinForWork(std::unique_ptr<RouteWork>* direct);
  void Execute(std::vector<std::unique_ptr<RouteWork>> batch);

  RouterBackend* const backend_;
  const BatcherOptions options_;
  ServerMetrics* const metrics_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::map<Key, std::deque<std::unique_ptr<RouteWork>>> queues_ ABSL_GUARDED_BY(mu_);
  // Written under mu_; read without it by a spinning worker (SpinForWork).
  std::atomic<int> queued_{0};
  int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // hidden bytes of the queued requests
  int executing_ ABSL_GUARDED_BY(mu_) = 0;         // batches being computed (workers and inline)
  std::atomic<bool> stopping_{false};              // written under mu_, like queued_
  std::atomic<int> spinning_{0};                   // workers busy-waiting for work
  // A lone request's way to the spinning worker without mu_ or the queue map (measured
  // 3-6 us of hand-off on the H100 host, most of it the mutex between the two threads).
  // Open (null) only while a worker spins with nothing queued; Submit fills it with a CAS;
  // the spinner closes it (kMailboxClosed) when it takes the work or stops spinning, so a
  // request is never left in it.
  std::atomic<RouteWork*> mailbox_;
  std::vector<std::thread> workers_;
  std::atomic<bool> failure_reported_{false};
};

}  // namespace moe
