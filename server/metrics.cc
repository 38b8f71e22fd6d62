#include "server/metrics.h"

#include <civetweb.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "server/listener_wake.h"

namespace moe {
namespace {

std::string FormatValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  return absl::StrFormat("%.17g", v);
}

std::string EscapeLabel(const std::string& v) {
  return absl::StrReplaceAll(v, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

std::string LabelText(const Labels& labels, const std::string& extra_key = "",
                      const std::string& extra_value = "") {
  std::string out;
  for (const auto& [k, v] : labels)
    absl::StrAppend(&out, out.empty() ? "" : ",", k, "=\"", EscapeLabel(v), "\"");
  if (!extra_key.empty())
    absl::StrAppend(&out, out.empty() ? "" : ",", extra_key, "=\"", extra_value, "\"");
  return out.empty() ? "" : "{" + out + "}";
}

}  // namespace

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> b;
  for (int i = 0; i < count; ++i, start *= factor) b.push_back(start);
  return b;
}

MetricFamily::MetricFamily(std::string name, std::string help, Type type,
                           std::vector<double> buckets)
    : name_(std::move(name)), help_(std::move(help)), type_(type), buckets_(std::move(buckets)) {}

MetricFamily::Series& MetricFamily::SeriesFor(const Labels& labels) {
  auto& s = series_[labels];
  if (type_ == Type::kHistogram && s.bucket_counts.empty())
    s.bucket_counts.assign(buckets_.size(), 0);
  return s;
}

void MetricFamily::Increment(const Labels& labels, double by) {
  absl::MutexLock lock(&mu_);
  SeriesFor(labels).value += by;
}

void MetricFamily::Set(const Labels& labels, double value) {
  absl::MutexLock lock(&mu_);
  SeriesFor(labels).value = value;
}

void MetricFamily::Observe(const Labels& labels, double value) {
  absl::MutexLock lock(&mu_);
  Series& s = SeriesFor(labels);
  for (size_t i = 0; i < buckets_.size(); ++i)
    if (value <= buckets_[i]) ++s.bucket_counts[i];
  s.sum += value;
  ++s.count;
}

void MetricFamily::Render(std::string* out) const {
  const char* type = type_ == Type::kCounter ? "counter"
                     : type_ == Type::kGauge ? "gauge"
                                             : "histogram";
  absl::StrAppend(out, "# HELP ", name_, " ", help_, "\n# TYPE ", name_, " ", type, "\n");
  absl::MutexLock lock(&mu_);
  for (const auto& [labels, s] : series_) {
    if (type_ != Type::kHistogram) {
      absl::StrAppend(out, name_, LabelText(labels), " ", FormatValue(s.value), "\n");
      continue;
    }
    for (size_t i = 0; i < buckets_.size(); ++i)
      absl::StrAppend(out, name_, "_bucket", LabelText(labels, "le", absl::StrCat(buckets_[i])),
                      " ", s.bucket_counts[i], "\n");
    absl::StrAppend(out, name_, "_bucket", LabelText(labels, "le", "+Inf"), " ", s.count, "\n");
    absl::StrAppend(out, name_, "_sum", LabelText(labels), " ", FormatValue(s.sum), "\n");
    absl::StrAppend(out, name_, "_count", LabelText(labels), " ", s.count, "\n");
  }
}

MetricFamily* MetricsRegistry::AddCounter(const std::string& name, const std::string& help) {
  absl::MutexLock lock(&mu_);
  families_.push_back(std::make_unique<MetricFamily>(name, help, MetricFamily::Type::kCounter));
  return families_.back().get();
}
MetricFamily* MetricsRegistry::AddGauge(const std::string& name, const std::string& help) {
  absl::MutexLock lock(&mu_);
  families_.push_back(std::make_unique<MetricFamily>(name, help, MetricFamily::Type::kGauge));
  return families_.back().get();
}
MetricFamily* MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                            std::vector<double> buckets) {
  absl::MutexLock lock(&mu_);
  families_.push_back(std::make_unique<MetricFamily>(name, help, MetricFamily::Type::kHistogram,
                                                     std::move(buckets)));
  return families_.back().get();
}

std::string MetricsRegistry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& f : families_) f->Render(&out);
  return out;
}

ServerMetrics::ServerMetrics(MetricsRegistry* r) {
  const auto latency = ExponentialBuckets(10e-6, 2.0, 16);  // 10 us .. 0.33 s
  requests =
      r->AddCounter("moe_router_requests_total", "Route requests by model and gRPC status code.");
  request_seconds = r->AddHistogram("moe_router_request_duration_seconds",
                                    "Time from arrival to response of Route requests.", latency);
  queue_seconds = r->AddHistogram("moe_router_queue_wait_seconds",
                                  "Time requests waited in the batch queue.", latency);
  compute_seconds = r->AddHistogram("moe_router_batch_compute_seconds",
                                    "Compute time of one batch (device time on the GPU).", latency);
  batch_tokens = r->AddHistogram("moe_router_batch_tokens", "Tokens per executed batch.",
                                 ExponentialBuckets(1, 2, 10));
  queue_depth = r->AddGauge("moe_router_queue_depth", "Requests waiting in batch queues.");
  in_flight =
      r->AddGauge("moe_router_in_flight_requests", "Route requests accepted and not yet answered.");
  open_streams = r->AddGauge("moe_router_open_streams", "RouteStream calls not yet finished.");
  shed = r->AddCounter("moe_router_shed_total", "Requests rejected because the queue was full.");
  model_info = r->AddGauge("moe_router_model_info", "Loaded models (value 1).");
  weight_bytes =
      r->AddGauge("moe_router_weight_memory_bytes", "Bytes of router weights held per model.");
  build_info = r->AddGauge("moe_router_build_info", "Build information (value 1).");
  serving = r->AddGauge("moe_router_serving",
                        "1 while new calls are routed (models loaded, device working, not "
                        "draining), else 0; /readyz says the same.");
  kernel_info = r->AddGauge(
      "moe_router_kernel_info",
      "The kernel config run for batches of up to `tokens` tokens of a model (value 1).");
  kernel_tuned_seconds =
      r->AddGauge("moe_router_kernel_tuned_seconds",
                  "Per-call time the autotuner measured for each bucket's kernel at load.");
}

std::unique_ptr<MetricsHttpServer> MetricsHttpServer::Start(const std::string& address,
                                                            const MetricsRegistry* registry,
                                                            const ServingState* state,
                                                            std::string* error) {
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer());
  s->registry_ = registry;
  s->liveness_ = {state, /*readiness=*/false};
  s->readiness_ = {state, /*readiness=*/true};
  s->wake_host_ = WakeHostOf(address);
  // civetweb serves each connection on one of num_threads workers until the request is read
  // and answered, waiting up to request_timeout_ms (30 s by default) for its bytes. With two
  // workers, two idle connections (a TCP health check, a port scan, a stalled client) made
  // every scrape time out for 30 s. Now a few stray connections leave workers free, and more
  // hold them for at most 5 s (a scrape's timeout is 10 s by default in Prometheus).
  const std::string threads = std::to_string(kMetricsHttpThreads);
  const std::string timeout_ms = std::to_string(kMetricsHttpRequestTimeoutMs);
  const char* options[] = {"listening_ports",    address.c_str(),    "num_threads", threads.c_str(),
                           "request_timeout_ms", timeout_ms.c_str(), nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  mg_init_data init = {&callbacks, nullptr, options};
  unsigned code = 0;
  char text[256] = {};
  mg_error_data err = {&code, text, sizeof(text)};
  s->ctx_ = mg_start2(&init, &err);
  if (s->ctx_ == nullptr) {
    *error = absl::StrCat("metrics_address: cannot listen on '", address, "': ", text);
    return nullptr;
  }
  mg_set_request_handler(s->ctx_, "/metrics$", &MetricsHttpServer::Handle, s.get());
  if (state != nullptr) {
    mg_set_request_handler(s->ctx_, "/healthz$", &MetricsHttpServer::HandleHealth, &s->liveness_);
    mg_set_request_handler(s->ctx_, "/readyz$", &MetricsHttpServer::HandleHealth, &s->readiness_);
  }
  mg_server_port ports[4];
  const int n = mg_get_server_ports(s->ctx_, 4, ports);
  if (n > 0) s->port_ = ports[0].port;
  return s;
}

// mg_stop returns once civetweb's listener thread sees the stop flag, which it checks
// only when its poll() returns (1.3 s when idle): a helper connects to our own port until
// mg_stop is done, so the poll returns at once (~30 ms in all).
MetricsHttpServer::~MetricsHttpServer() {
  if (!ctx_) return;
  std::atomic<bool> stopped{false};
  std::thread waker;
  try {
    waker = std::thread([this, &stopped] {
      while (!stopped.load()) {
        ConnectBriefly(wake_host_, port_, 50);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
  } catch (const std::system_error&) {
    // No thread to spare: stop the slow way rather than not at all.
  }
  mg_stop(ctx_);
  stopped = true;
  if (waker.joinable()) waker.join();
}

namespace {

// GET or HEAD; anything else is answered 405 here (a POST had been answered with the scrape).
bool GetOrHead(mg_connection* conn, bool* get) {
  const char* method = mg_get_request_info(conn)->request_method;
  *get = std::strcmp(method, "GET") == 0;
  if (*get || std::strcmp(method, "HEAD") == 0) return true;
  mg_printf(conn,
            "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n");
  return false;
}

// The status line and headers for `body`, and the body for a GET (RFC 9110: HEAD has none).
void Reply(mg_connection* conn, bool get, int code, const char* reason, const char* type,
           const std::string& body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            code, reason, type, body.size());
  if (get) mg_write(conn, body.data(), body.size());
}

}  // namespace

int MetricsHttpServer::Handle(mg_connection* conn, void* self) {
  bool get = false;
  if (!GetOrHead(conn, &get)) return 405;
  Reply(conn, get, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
        static_cast<MetricsHttpServer*>(self)->registry_->Render());
  return 200;
}

// The body names the phase either way, so a failed probe's event says why
// ("not ready: loading").
int MetricsHttpServer::HandleHealth(mg_connection* conn, void* path) {
  bool get = false;
  if (!GetOrHead(conn, &get)) return 405;
  const HealthPath& asked = *static_cast<const HealthPath*>(path);
  const ServingPhase phase = asked.state->phase();
  const bool yes = asked.readiness ? IsReady(phase) : IsAlive(phase);
  const char* answer =
      asked.readiness ? (yes ? "ready" : "not ready") : (yes ? "alive" : "not alive");
  const int code = yes ? 200 : 503;
  Reply(conn, get, code, yes ? "OK" : "Service Unavailable", "text/plain; charset=utf-8",
        absl::StrCat(answer, ": ", ServingPhaseName(phase), "\n"));
  return code;
}

}  // namespace moe
