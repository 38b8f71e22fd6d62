#include "server/batcher.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "kernels/cpu_router.h"

namespace moe {
namespace {

int64_t Micros(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// The closed mailbox: an address no RouteWork has, only ever compared, never dereferenced.
// NOLINTNEXTLINE(performance-no-int-to-ptr): a sentinel, not a pointer made from data
RouteWork* const kMailboxClosed = reinterpret_cast<RouteWork*>(alignof(RouteWork));

}  // namespace

Batcher::Batcher(RouterBackend* backend, BatcherOptions options, ServerMetrics* metrics)
    : backend_(backend), options_(std::move(options)), metrics_(metrics), mailbox_(kMailboxClosed) {
  for (int i = 0; i < std::max(1, backend->concurrency()); ++i)
    workers_.emplace_back([this] { WorkerMain(); });
}

Batcher::~Batcher() {
  Shutdown();
  for (auto& w : workers_) w.join();
}

void Batcher::Shutdown() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  cv_.SignalAll();
}

bool Batcher::SpinForWork(std::unique_ptr<RouteWork>* direct) {
  if (options_.idle_spin_us <= 0) return false;
  // One spinner is enough to take the next request; other idle workers sleep.
  if (spinning_.fetch_add(1) > 0) {
    spinning_.fetch_sub(1);
    return false;
  }
  mailbox_.store(nullptr, std::memory_order_release);  // open: only the spinner opens it
  const auto until = Clock::now() + std::chrono::microseconds(options_.idle_spin_us);
  bool found = false;
  // Clock reads are ~20 ns; checking the atomics between them keeps the hand-off short.
  while (!(found = mailbox_.load(std::memory_order_acquire) != nullptr ||
                   queued_.load(std::memory_order_acquire) > 0 || stopping_.load()) &&
         Clock::now() < until) {
#if defined(__x86_64__)
    __builtin_ia32_pause();  // yield the core's pipeline to its sibling hyperthread
#endif
  }
  // Closing takes whatever a Submit put in meanwhile, also after a timeout.
  RouteWork* handed = mailbox_.exchange(kMailboxClosed, std::memory_order_acq_rel);
  if (handed != nullptr) {
    direct->reset(handed);
    found = true;
  }
  spinning_.fetch_sub(1);
  return found;
}

int Batcher::queued() const {
  absl::MutexLock lock(&mu_);
  return queued_;
}

bool Batcher::TryHandOff(std::unique_ptr<RouteWork>& work) {
  // Nothing queued and a worker spinning with its mailbox open takes the request straight
  // from there. (With a queue delay the batch policy must see it: queue it.)
  if (options_.limits.max_queue_delay_us != 0 || queued_.load(std::memory_order_acquire) != 0 ||
      stopping_.load())
    return false;
  RouteWork* expected = nullptr;
  if (!mailbox_.compare_exchange_strong(expected, work.get(), std::memory_order_acq_rel))
    return false;
  static_cast<void>(work.release());  // the spinner owns it now
  return true;
}

void Batcher::Submit(std::unique_ptr<RouteWork> work) {
  if (TryHandOff(work)) return;
  const int64_t bytes = static_cast<int64_t>(work->hidden_states.size());
  bool bytes_full = false;
  {
    absl::MutexLock lock(&mu_);
    bytes_full = queued_ > 0 && queued_bytes_ + bytes > options_.max_queued_bytes;
    if (!stopping_ && queued_ < options_.max_queued_requests && !bytes_full) {
      queues_[Key(work->model, work->layer, int(work->dtype))].push_back(std::move(work));
      ++queued_;
      queued_bytes_ += bytes;
      metrics_->queue_depth->Set({}, queued_.load());
      // A spinning worker takes a lone request within a microsecond; waking a sleeping one
      // as well would let a cold thread race it for the batch. Once requests pile up, wake
      // one anyway: the spinner may have lost its core to other threads. (A spinner that
      // times out checks queued_ under mu_ before it sleeps: nothing is ever stranded.)
      if (spinning_.load() == 0 || queued_ > 1) cv_.Signal();
      return;
    }
  }
  if (work->done == nullptr) return;
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
  }
  if (stopping) {
    work->done(absl::UnavailableError("server is shutting down"), {});
  } else {
    metrics_->shed->Increment({{"model", work->model}});
    work->done(absl::ResourceExhaustedError(
                   bytes_full ? absl::StrCat("queue full: more than ", options_.max_queued_bytes,
                                             " bytes of hidden states waiting; retry later")
                              : absl::StrCat("queue full: ", options_.max_queued_requests,
                                             " requests waiting; retry later")),
               {});
  }
}

void Batcher::WorkerMain() {
  for (;;) {
    std::vector<std::unique_ptr<RouteWork>> batch;
    std::vector<std::unique_ptr<RouteWork>> dropped;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        if (queued_ == 0) {
          if (stopping_) return;
          mu_.Unlock();
          std::unique_ptr<RouteWork> direct;
          const bool found = SpinForWork(&direct);
          mu_.Lock();
          if (direct != nullptr) {  // handed over through the mailbox: a batch of one
            const auto now = Clock::now();
            if (now > direct->deadline || (direct->cancelled && direct->cancelled())) {
              dropped.push_back(std::move(direct));
            } else {
              batch.push_back(std::move(direct));
              ++executing_;
            }
            break;
          }
          if (!found && queued_ == 0 && !stopping_) cv_.Wait(&mu_);
          continue;
        }
        // The queue whose head waited longest goes first (FIFO across queues).
        auto oldest = queues_.end();
        for (auto it = queues_.begin(); it != queues_.end(); ++it)
          if (!it->second.empty() &&
              (oldest == queues_.end() ||
               it->second.front()->arrival < oldest->second.front()->arrival))
            oldest = it;
        auto& q = oldest->second;
        int tokens = 0;
        for (const auto& w : q) tokens += w->tokens;
        const auto now = Clock::now();
        const BatchDecision d =
            DecideBatch(Micros(now), Micros(q.front()->arrival), tokens, options_.limits);
        if (!d.launch_now && !stopping_) {
          cv_.WaitWithTimeout(&mu_, absl::Microseconds(d.wait_until_us - Micros(now)));
          continue;
        }
        int batch_tokens = 0;
        while (!q.empty()) {
          auto& w = q.front();
          const bool expired = now > w->deadline || (w->cancelled && w->cancelled());
          if (!expired && batch_tokens + w->tokens > options_.limits.max_batch_tokens &&
              !batch.empty())
            break;
          queued_bytes_ -= static_cast<int64_t>(w->hidden_states.size());
          if (expired) {
            dropped.push_back(std::move(w));
          } else {
            batch_tokens += w->tokens;
            batch.push_back(std::move(w));
          }
          q.pop_front();
          --queued_;
        }
        if (q.empty()) queues_.erase(oldest);
        metrics_->queue_depth->Set({}, queued_.load());
        if (!batch.empty()) ++executing_;
        break;
      }
    }
    for (auto& w : dropped) {
      // A passed deadline also cancels the call; report the deadline, the real cause.
      const bool late = Clock::now() > w->deadline;
      w->done(late ? absl::DeadlineExceededError("deadline passed while queued")
                   : absl::CancelledError("request cancelled by the client"),
              {});
    }
    if (!batch.empty()) {
      Execute(std::move(batch));
      absl::MutexLock lock(&mu_);
      --executing_;
    }
  }
}

bool Batcher::TryRunInline(std::unique_ptr<RouteWork>& work) {
  {
    absl::MutexLock lock(&mu_);
    // With idle spinning on, requests always go to the workers: a worker only spins after
    // it ran a batch, so running lone requests inline would leave the workers asleep.
    if (stopping_ || queued_ > 0 || options_.limits.max_queue_delay_us > 0 ||
        options_.idle_spin_us > 0 || executing_ >= static_cast<int>(workers_.size()))
      return false;
    ++executing_;
  }
  std::vector<std::unique_ptr<RouteWork>> batch;
  batch.push_back(std::move(work));
  Execute(std::move(batch));
  absl::MutexLock lock(&mu_);
  --executing_;
  return true;
}

void Batcher::Execute(std::vector<std::unique_ptr<RouteWork>> batch) {
  const RouteWork& first = *batch.front();
  const int top_k = first.top_k, experts = first.experts;
  int tokens = 0;
  bool want_logits = false;
  for (const auto& w : batch) {
    tokens += w->tokens;
    want_logits |= w->want_logits;
  }
  // Gather the hidden states of every request into one batch (a lone request's bytes
  // are used in place, by the device too where they are in its input pool).
  std::string gathered;
  if (batch.size() > 1) {
    gathered.reserve(size_t(tokens) * first.hidden * DTypeSize(first.dtype));
    for (const auto& w : batch) {
      w->hidden_states.WaitFilled();
      gathered += w->hidden_states.view();
    }
  }
  const bool lone = batch.size() == 1;
  // A lone request's bytes may still be arriving (Submit's caller handed it over first): a
  // backend that stages them on the device waits on the fill's marks there; any other
  // reads them once they are all written.
  if (lone && !backend_->StagesWhileFilling()) first.hidden_states.WaitFilled();
  const char* hidden = lone ? first.hidden_states.data() : gathered.data();
  std::vector<int32_t> ids(size_t(tokens) * top_k);
  std::vector<float> weights(ids.size());
  std::vector<float> logits(want_logits ? size_t(tokens) * experts : 0);
  const bool device_checks = backend_->ChecksFiniteOnDevice();
  std::vector<uint8_t> nonfinite(device_checks ? tokens : 0, 0);
  BatchIO io;
  io.hidden = hidden;
  io.hidden_dtype = first.dtype;
  io.hidden_device = lone ? first.hidden_states.device_view() : nullptr;
  io.hidden_device_bytes = lone ? first.hidden_states.device_readable_bytes() : 0;
  io.hidden_fill = lone ? &first.hidden_states : nullptr;
  io.tokens = tokens;
  io.ids = ids.data();
  io.weights = weights.data();
  io.logits = want_logits ? logits.data() : nullptr;
  io.nonfinite_rows = device_checks ? nonfinite.data() : nullptr;
  const auto start = Clock::now();
  auto compute = backend_->Route(first.model, first.layer, io);
  if (!backend_->healthy() && options_.on_backend_failure && !failure_reported_.exchange(true))
    options_.on_backend_failure();
  const Labels backend_label = {{"backend", backend_->name()}};
  if (compute.ok()) {
    metrics_->compute_seconds->Observe(backend_label, *compute);
    metrics_->batch_tokens->Observe(backend_label, tokens);
  }
  // Scatter: each request gets its own rows.
  int row = 0;
  for (auto& w : batch) {
    if (!compute.ok()) {
      w->done(compute.status(), {});
      continue;
    }
    if (device_checks && std::any_of(nonfinite.begin() + row, nonfinite.begin() + row + w->tokens,
                                     [](uint8_t bad) { return bad != 0; })) {
      // The device saw a NaN or an infinity in this request's rows (and only its outputs
      // are spoilt). The host names the element, as validation would have; should it find
      // none, the device was wrong and the outputs, computed from finite values, stand.
      w->hidden_states.WaitFilled();
      absl::Status finite = CheckFinite(w->hidden_states.data(), w->dtype,
                                        size_t(w->tokens) * w->hidden, kHiddenDataField);
      if (!finite.ok()) {
        row += w->tokens;
        w->done(std::move(finite), {});
        continue;
      }
    }
    RouteResult r;
    r.ids.assign(ids.begin() + size_t(row) * top_k, ids.begin() + size_t(row + w->tokens) * top_k);
    r.weights.assign(weights.begin() + size_t(row) * top_k,
                     weights.begin() + size_t(row + w->tokens) * top_k);
    if (w->want_logits)
      r.logits.assign(logits.begin() + size_t(row) * experts,
                      logits.begin() + size_t(row + w->tokens) * experts);
    r.queue_seconds = std::chrono::duration<double>(start - w->arrival).count();
    r.compute_seconds = *compute;
    r.batch_tokens = tokens;
    r.batch_requests = static_cast<int>(batch.size());
    metrics_->queue_seconds->Observe({{"model", w->model}}, r.queue_seconds);
    row += w->tokens;
    w->done(absl::OkStatus(), std::move(r));
  }
}

}  // namespace moe
