#include "client/load_generator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/target_address.h"

namespace moe {
namespace v1 = moe_router::v1;
using Clock = std::chrono::steady_clock;

namespace {

std::string CodeName(grpc::StatusCode code) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  const int c = static_cast<int>(code);
  return c >= 0 && c < 17 ? kNames[c] : absl::StrCat("CODE_", c);
}

// One caller's samples, microseconds: client-side latency, and the server's own time, its
// queue wait and its batch's compute time as the response reports them (Timing.server_us,
// queue_us, compute_us); with same-host timing the transport's way in and way out.
struct Samples {
  std::vector<double> latency, server, queue, compute, way_in, way_out;
};

double NsSinceEpoch(Clock::time_point t) {
  return double(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

// Shared tallies: samples per thread (merged at the end), counters under one mutex.
class Tally {
 public:
  Tally(Clock::time_point measure_from, bool same_host_timing)
      : measure_from_(measure_from), same_host_timing_(same_host_timing) {}
  void Record(Clock::time_point start, Clock::time_point end, grpc::StatusCode code,
              const v1::Timing* timing, Samples* samples) {
    if (start < measure_from_) return;  // warm-up
    if (code == grpc::StatusCode::OK) {
      ok_.fetch_add(1, std::memory_order_relaxed);
      samples->latency.push_back(std::chrono::duration<double, std::micro>(end - start).count());
      if (timing != nullptr) {
        samples->server.push_back(timing->server_us());
        samples->queue.push_back(timing->queue_us());
        samples->compute.push_back(timing->compute_us());
        if (same_host_timing_ && timing->arrival_monotonic_ns() != 0) {
          const double arrival_ns = double(timing->arrival_monotonic_ns());
          samples->way_in.push_back((arrival_ns - NsSinceEpoch(start)) / 1e3);
          samples->way_out.push_back((NsSinceEpoch(end) - arrival_ns) / 1e3 - timing->server_us());
        }
      }
    } else {
      std::lock_guard<std::mutex> lock(mu_);
      ++errors_[CodeName(code)];
    }
  }
  void Merge(const Samples& samples) {
    std::lock_guard<std::mutex> lock(mu_);
    all_.insert(all_.end(), samples.latency.begin(), samples.latency.end());
    server_.insert(server_.end(), samples.server.begin(), samples.server.end());
    queue_.insert(queue_.end(), samples.queue.begin(), samples.queue.end());
    compute_.insert(compute_.end(), samples.compute.begin(), samples.compute.end());
    way_in_.insert(way_in_.end(), samples.way_in.begin(), samples.way_in.end());
    way_out_.insert(way_out_.end(), samples.way_out.begin(), samples.way_out.end());
  }
  uint64_t ok() const { return ok_.load(); }
  uint64_t error_count() {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t n = 0;
    for (const auto& [code, count] : errors_) n += count;
    return n;
  }
  LoadReport Report(double seconds, int tokens) {
    std::lock_guard<std::mutex> lock(mu_);
    LoadReport r;
    r.seconds = seconds;
    r.ok = ok_.load();
    r.errors = errors_;
    r.qps = seconds > 0 ? r.ok / seconds : 0;
    r.tokens_per_s = r.qps * tokens;
    std::sort(all_.begin(), all_.end());
    auto pct = [&](double q) {
      if (all_.empty()) return 0.0;
      return all_[std::min(all_.size() - 1, static_cast<size_t>(q * all_.size()))];
    };
    r.p50_us = pct(0.5);
    r.p90_us = pct(0.9);
    r.p99_us = pct(0.99);
    r.p999_us = pct(0.999);
    r.max_us = all_.empty() ? 0 : all_.back();
    double sum = 0;
    for (double v : all_) sum += v;
    r.mean_us = all_.empty() ? 0 : sum / all_.size();
    auto median = [](std::vector<double>& v) {
      if (v.empty()) return 0.0;
      std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
      return v[v.size() / 2];
    };
    r.server_p50_us = median(server_);
    r.queue_p50_us = median(queue_);
    r.compute_p50_us = median(compute_);
    r.way_in_p50_us = median(way_in_);
    r.way_out_p50_us = median(way_out_);
    return r;
  }

 private:
  const Clock::time_point measure_from_;
  const bool same_host_timing_;
  std::atomic<uint64_t> ok_{0};
  std::mutex mu_;
  std::map<std::string, uint64_t> errors_;
  std::vector<double> all_, server_, queue_, compute_, way_in_, way_out_;
};

// Whether calls reach the server. Every call reports in; one that finds the server unreachable
// (UNAVAILABLE: it died, is restarting or still loading) makes its caller back off, and once
// none has reached it for give_up_s the run stops. Before this a dead server was hammered
// with ~200k fast failures a second to the run's end.
class Reachability {
 public:
  Reachability(Clock::time_point start, double give_up_s)
      : give_up_ns_(give_up_s > 0 ? int64_t(give_up_s * 1e9) : 0), last_answer_ns_(Ns(start)) {}

  // Notes a call's code; returns whether it found the server unreachable.
  bool Note(grpc::StatusCode code, const std::string& message, Clock::time_point now) {
    if (code == grpc::StatusCode::UNAVAILABLE) {
      Unreachable(now, message);
      return true;
    }
    Answered(now);
    return false;
  }

  bool stopped() const { return stopped_.load(std::memory_order_relaxed); }
  std::string why() {
    std::lock_guard<std::mutex> lock(mu_);
    return why_;
  }

 private:
  void Answered(Clock::time_point now) {
    const int64_t ns = Ns(now);
    // At most a store a millisecond: every caller shares this line.
    if (ns - last_answer_ns_.load(std::memory_order_relaxed) > 1000000)
      last_answer_ns_.store(ns, std::memory_order_relaxed);
  }

  void Unreachable(Clock::time_point now, const std::string& message) {
    if (give_up_ns_ == 0 || stopped()) return;
    const int64_t silent_ns = Ns(now) - last_answer_ns_.load(std::memory_order_relaxed);
    if (silent_ns < give_up_ns_) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped()) return;
    why_ = absl::StrFormat("unreachable for %.1f s (the last call: UNAVAILABLE: %s)",
                           double(silent_ns) / 1e9, message);
    stopped_.store(true);
  }

  // The steady clock's nanoseconds as an integer for the atomic (the double is exact for 104
  // days of uptime and far finer than the millisecond that counts here after that).
  static int64_t Ns(Clock::time_point t) { return int64_t(NsSinceEpoch(t)); }
  const int64_t give_up_ns_;
  std::atomic<int64_t> last_answer_ns_;
  std::atomic<bool> stopped_{false};
  std::mutex mu_;
  std::string why_;
};

// One caller's wait before its next call while the server is unreachable: 1 ms doubling to
// 100 ms (gRPC fails a call on a broken channel at once), none once a call reaches it.
class Backoff {
 public:
  // Reports the call's code to `reach`, and waits if it found the server unreachable.
  void After(grpc::StatusCode code, const std::string& message, Reachability* reach) {
    if (!reach->Note(code, message, Clock::now())) {
      wait_ms_ = 0;
      return;
    }
    wait_ms_ = std::clamp(wait_ms_ * 2, 1, 100);
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms_));
  }

 private:
  int wait_ms_ = 0;
};

std::vector<v1::RouteRequest> MakeRequests(const LoadOptions& o, int hidden, int count) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<v1::RouteRequest> reqs;
  for (int i = 0; i < count; ++i) {
    v1::RouteRequest req;
    req.set_model(o.model);
    req.set_layer(i % o.layers);
    req.set_request_id(uint64_t(i) + 1);
    auto* t = req.mutable_hidden_states();
    t->set_dtype(v1::DTYPE_BF16);
    t->add_shape(o.tokens);
    t->add_shape(hidden);
    std::string bytes(size_t(o.tokens) * hidden * 2, '\0');
    for (size_t k = 0; k < bytes.size(); k += 2) {
      float f = normal(rng);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      const uint16_t b = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
      std::memcpy(&bytes[k], &b, 2);
    }
    t->set_data(std::move(bytes));
    reqs.push_back(std::move(req));
  }
  return reqs;
}

void ClosedUnary(v1::Router::Stub* stub, const std::vector<v1::RouteRequest>& reqs, int caller,
                 Clock::time_point end, Tally* tally, Reachability* reach) {
  Samples samples;
  Backoff backoff;
  for (uint64_t i = caller; Clock::now() < end && !reach->stopped(); ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::RouteResponse resp;
    const auto start = Clock::now();
    const grpc::Status s = stub->Route(&ctx, reqs[i % reqs.size()], &resp);
    tally->Record(start, Clock::now(), s.error_code(), &resp.timing(), &samples);
    backoff.After(s.error_code(), s.error_message(), reach);
  }
  tally->Merge(samples);
}

void ClosedStream(v1::Router::Stub* stub, const std::vector<v1::RouteRequest>& reqs, int caller,
                  Clock::time_point end, Tally* tally, Reachability* reach) {
  Samples samples;
  Backoff backoff;
  uint64_t i = caller;
  while (Clock::now() < end && !reach->stopped()) {
    grpc::ClientContext ctx;
    auto stream = stub->RouteStream(&ctx);
    v1::RouteStreamResponse resp;
    bool broken = false;
    while (Clock::now() < end && !reach->stopped()) {
      // The prepared requests as they are (ids 1..count in turn): a copy to set a fresh id
      // (229 KB at 16 tokens) would count the client's memcpy as the call's time.
      const v1::RouteRequest& req = reqs[i++ % reqs.size()];
      const auto start = Clock::now();
      if (!stream->Write(req) || !stream->Read(&resp)) {
        broken = true;
        break;
      }
      const auto code = resp.has_error() ? static_cast<grpc::StatusCode>(resp.error().code())
                                         : grpc::StatusCode::OK;
      tally->Record(start, Clock::now(), code, &resp.response().timing(), &samples);
      backoff.After(code, resp.error().message(), reach);
    }
    stream->WritesDone();
    const grpc::Status s = stream->Finish();
    if (broken) {
      const grpc::StatusCode code = s.ok() ? grpc::StatusCode::UNKNOWN : s.error_code();
      tally->Record(Clock::now(), Clock::now(), code, nullptr, &samples);
      backoff.After(code, s.error_message(), reach);
    }
  }
  tally->Merge(samples);
}

// Open loop: sends at the scheduled times whatever the responses do.
void OpenLoop(v1::Router::Stub* stub, const std::vector<v1::RouteRequest>& reqs, double rate,
              Clock::time_point begin, Clock::time_point end, Tally* tally, Reachability* reach) {
  struct Call {
    grpc::ClientContext ctx;
    v1::RouteResponse resp;
    Clock::time_point scheduled;
  };
  std::atomic<int> outstanding{0};
  std::mutex lat_mu;
  Samples samples;
  const auto period = std::chrono::duration<double>(1.0 / rate);
  for (uint64_t i = 0;; ++i) {
    const auto scheduled = begin + std::chrono::duration_cast<Clock::duration>(period * double(i));
    if (scheduled >= end || reach->stopped()) break;
    std::this_thread::sleep_until(scheduled);
    auto* call = new Call;
    call->scheduled = scheduled;
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    outstanding.fetch_add(1);
    stub->async()->Route(
        &call->ctx, &reqs[i % reqs.size()], &call->resp,
        [call, tally, reach, &outstanding, &lat_mu, &samples](const grpc::Status& s) {
          const auto now = Clock::now();
          {
            std::lock_guard<std::mutex> lock(lat_mu);
            tally->Record(call->scheduled, now, s.error_code(), &call->resp.timing(), &samples);
          }
          // The schedule is the load: no back-off, only the stop.
          reach->Note(s.error_code(), s.error_message(), now);
          delete call;
          outstanding.fetch_sub(1);
        });
  }
  while (outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  tally->Merge(samples);
}

// Waits up to give_up_s for the server's health check to answer SERVING. A server started
// beside the load generator listens before its models are loaded (NOT_SERVING until then),
// and its model list is empty meanwhile: without the wait a script that starts both was
// told the model "is not loaded". A server without the health service (the echo server)
// counts as serving.
absl::Status WaitUntilServing(RouterClient* client, const LoadOptions& o) {
  const auto start = Clock::now();
  bool said = false;
  for (;;) {
    bool serving = false;
    const grpc::Status s = client->Health(&serving);
    if (serving || s.error_code() == grpc::StatusCode::UNIMPLEMENTED) return absl::OkStatus();
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (waited >= o.give_up_s) {
      const std::string after = o.give_up_s > 0 ? absl::StrFormat(" after %.1f s", waited) : "";
      if (!s.ok())
        return absl::UnavailableError(absl::StrCat("cannot reach the server at ", o.address, after,
                                                   ": ", CodeName(s.error_code()), ": ",
                                                   s.error_message()));
      return absl::UnavailableError(absl::StrCat("the server at ", o.address, " is not serving",
                                                 after,
                                                 " (still loading its models, or its device "
                                                 "failed; see its log)"));
    }
    if (!said && o.progress) {
      std::fprintf(stderr, "moe-router-bench: waiting up to %g s for the server at %s (%s)\n",
                   o.give_up_s, o.address.c_str(),
                   s.ok() ? "not serving yet" : "not reachable yet");
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

std::string LoadReport::ToJson(const LoadOptions& o) const {
  std::vector<std::string> errs;
  for (const auto& [code, n] : errors) errs.push_back(absl::StrFormat("\"%s\": %d", code, n));
  return absl::StrFormat(
      "{\"model\": \"%s\", \"tokens\": %d, \"concurrency\": %d, \"rate\": %g, \"stream\": %s, "
      "\"seconds\": %.3f, \"ok\": %d, \"qps\": %.1f, \"tokens_per_s\": %.1f, \"p50_us\": %.1f, "
      "\"p90_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f, "
      "\"mean_us\": %.1f, \"server_p50_us\": %.1f, \"queue_p50_us\": %.1f, \"compute_p50_us\": "
      "%.1f, \"way_in_p50_us\": %.1f, \"way_out_p50_us\": %.1f, "
      "\"errors\": {%s}, \"stopped_early\": %s}",
      o.model, o.tokens, o.concurrency, o.rate, o.stream ? "true" : "false", seconds, ok, qps,
      tokens_per_s, p50_us, p90_us, p99_us, p999_us, max_us, mean_us, server_p50_us, queue_p50_us,
      compute_p50_us, way_in_p50_us, way_out_p50_us, absl::StrJoin(errs, ", "),
      stopped_early.empty() ? "false" : "true");
}

std::string LoadReport::ToText() const {
  std::vector<std::string> errs;
  for (const auto& [code, n] : errors) errs.push_back(absl::StrCat(code, "=", n));
  const std::string ways =
      way_in_p50_us != 0 || way_out_p50_us != 0
          ? absl::StrFormat("; transport p50 in %.0f, out %.0f", way_in_p50_us, way_out_p50_us)
          : "";
  return absl::StrFormat(
      "%d ok in %.1f s: %.0f req/s, %.0f tokens/s; latency us p50 %.0f p90 %.0f p99 %.0f "
      "p99.9 %.0f max %.0f; server p50 %.0f (queue %.0f, compute %.0f)%s; errors: %s",
      ok, seconds, qps, tokens_per_s, p50_us, p90_us, p99_us, p999_us, max_us, server_p50_us,
      queue_p50_us, compute_p50_us, ways, errs.empty() ? "none" : absl::StrJoin(errs, " "));
}

int PreparedRequestCount(const LoadOptions& o, int hidden) {
  const size_t bytes = size_t(std::max(o.tokens, 1)) * std::max(hidden, 1) * 2;
  const size_t fit = std::max<size_t>(16, kMaxPreparedBytes / bytes);
  return int(std::min<size_t>(std::max(16, o.layers), fit));
}

absl::Status CheckLoadOptions(const LoadOptions& o) {
  auto refuse = [](const char* flag, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why));
  };
  if (absl::Status bad = CheckTargetAddress("--address", o.address); !bad.ok()) return bad;
  if (absl::Status bad = CheckLoadBalancing("--load_balancing", o.client.load_balancing); !bad.ok())
    return bad;
  if (o.tokens < 1) return refuse("--tokens", absl::StrCat(o.tokens, " is less than 1"));
  if (o.layers < 1) return refuse("--layers", absl::StrCat(o.layers, " is less than 1"));
  if (o.concurrency < 1 || o.concurrency > kMaxConcurrency)
    return refuse("--concurrency", absl::StrCat(o.concurrency, " is outside 1..", kMaxConcurrency,
                                                " (a thread each)"));
  // !(x >= 0) also refuses NaN.
  if (!(o.rate >= 0 && o.rate <= kMaxRate))
    return refuse("--rate",
                  absl::StrCat(o.rate, " is outside 0..", kMaxRate, " requests a second"));
  if (!(o.duration_s > 0 && o.duration_s <= kMaxSeconds))
    return refuse("--duration_s", absl::StrCat(o.duration_s, " is outside (0, ", kMaxSeconds, "]"));
  if (!(o.warmup_s >= 0 && o.warmup_s <= kMaxSeconds))
    return refuse("--warmup_s", absl::StrCat(o.warmup_s, " is outside 0..", kMaxSeconds));
  if (!(o.give_up_s >= 0 && o.give_up_s <= kMaxSeconds))
    return refuse("--give_up_s", absl::StrCat(o.give_up_s, " is outside 0..", kMaxSeconds));
  return absl::OkStatus();
}

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& o) {
  if (absl::Status bad = CheckLoadOptions(o); !bad.ok()) return bad;
  RouterClient client(o.address, o.client);
  if (absl::Status ready = WaitUntilServing(&client, o); !ready.ok()) return ready;
  v1::ListModelsResponse models;
  const grpc::Status s = client.ListModels(&models);
  if (!s.ok())
    return absl::UnavailableError(
        absl::StrCat("cannot list models at ", o.address, ": ", s.error_message()));
  const v1::ModelInfo* model = nullptr;
  for (const auto& m : models.models())
    if (m.name() == o.model) model = &m;
  if (model == nullptr || model->hidden() <= 0)
    return absl::NotFoundError(absl::StrCat("model '", o.model, "' is not loaded"));
  // The model's limits, before a request is built: every request past them would only be
  // refused (and a huge --tokens made the client's hidden states too large to allocate).
  if (model->layers() > 0 && o.layers > model->layers())
    return absl::InvalidArgumentError(absl::StrCat("--layers: ", o.layers, " is more than model '",
                                                   o.model, "' has (", model->layers(), ")"));
  if (model->max_tokens() > 0 && o.tokens > model->max_tokens())
    return absl::InvalidArgumentError(absl::StrCat("--tokens: ", o.tokens, " is more than model '",
                                                   o.model, "' takes (max_tokens ",
                                                   model->max_tokens(), ")"));
  const int hidden = model->hidden();
  if (size_t(o.tokens) * hidden * 2 > kMaxPreparedBytes)
    return absl::InvalidArgumentError(absl::StrCat("--tokens: ", o.tokens, " tokens of hidden ",
                                                   hidden, " are more than ",
                                                   kMaxPreparedBytes >> 20, " MiB a request"));
  const int count = PreparedRequestCount(o, hidden);
  if (count < o.layers)
    std::fprintf(stderr,
                 "moe-router-bench: %d requests of %d tokens fit %zu MiB: layers 0..%d of the %d "
                 "asked are visited\n",
                 count, o.tokens, kMaxPreparedBytes >> 20, count - 1, o.layers);
  const auto reqs = MakeRequests(o, hidden, count);

  const auto begin = Clock::now();
  const auto measure_from = begin + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(o.warmup_s));
  const auto end = measure_from + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(o.duration_s));
  Tally tally(measure_from, o.same_host_timing);
  Reachability reach(begin, o.give_up_s);
  // Several channels: one HTTP/2 connection serialises many callers.
  std::vector<std::unique_ptr<RouterClient>> clients;
  const int channels = std::clamp(o.concurrency / 16, 1, 8);
  clients.reserve(channels);
  for (int i = 0; i < channels; ++i)
    clients.push_back(std::make_unique<RouterClient>(o.address, o.client));

  std::atomic<bool> done{false};
  std::thread progress([&] {
    uint64_t last = 0;
    int second = 0;
    while (!done.load()) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      if (done.load() || !o.progress) continue;
      const uint64_t now_ok = tally.ok();
      std::fprintf(stderr, "[%3ds] %llu req/s, %llu ok, %llu errors\n", ++second,
                   static_cast<unsigned long long>(now_ok - last),
                   static_cast<unsigned long long>(now_ok),
                   static_cast<unsigned long long>(tally.error_count()));
      last = now_ok;
    }
  });
  // The callers wait at a gate until all of them have started, so that one the system
  // cannot start (its thread limit) ends the run at once, with the others unstarted.
  std::promise<bool> gate;
  const std::shared_future<bool> go = gate.get_future().share();
  std::vector<std::thread> threads;
  std::string start_error;
  try {
    if (o.rate > 0) {
      threads.emplace_back([&] {
        if (go.get()) OpenLoop(clients[0]->stub(), reqs, o.rate, begin, end, &tally, &reach);
      });
    } else {
      for (int c = 0; c < o.concurrency; ++c)
        threads.emplace_back([&, c] {
          if (!go.get()) return;
          (o.stream ? ClosedStream : ClosedUnary)(clients[c % channels]->stub(), reqs, c, end,
                                                  &tally, &reach);
        });
    }
  } catch (const std::system_error& e) {
    start_error = absl::StrCat("--concurrency: caller thread ", threads.size() + 1, " of ",
                               o.concurrency, " could not start: ", e.what());
  }
  gate.set_value(start_error.empty());
  for (auto& t : threads) t.join();
  done = true;
  progress.join();
  if (!start_error.empty()) return absl::ResourceExhaustedError(start_error);
  if (!reach.stopped()) return tally.Report(o.duration_s, o.tokens);
  // Stopped early: the rates over the measured time that did run.
  const double ran_s =
      std::chrono::duration<double>(std::min(Clock::now(), end) - measure_from).count();
  LoadReport report = tally.Report(std::max(ran_s, 0.0), o.tokens);
  report.stopped_early = absl::StrCat("the server at ", o.address, " was ", reach.why());
  return report;
}

}  // namespace moe
