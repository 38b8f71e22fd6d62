// A small Prometheus metrics layer: counters, gauges and histograms with labels, rendered
// in the text exposition format 0.0.4. Thread-safe: every method may be called from any
// thread (one mutex per family; updates are short).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/serving_state.h"

struct mg_context;
struct mg_connection;

namespace moe {

using Labels = std::vector<std::pair<std::string, std::string>>;

class MetricFamily {
 public:
  enum class Type { kCounter, kGauge, kHistogram };
  MetricFamily(std::string name, std::string help, Type type, std::vector<double> buckets = {});

  void Increment(const Labels& labels, double by = 1.0);  // counters and gauges
  void Set(const Labels& labels, double value);           // gauges
  void Observe(const Labels& labels, double value);       // histograms
  void Render(std::string* out) const;

 private:
  struct Series {
    double value = 0.0;
    std::vector<uint64_t> bucket_counts;  // histograms: cumulative at render time
    double sum = 0.0;
    uint64_t count = 0;
  };
  Series& SeriesFor(const Labels& labels) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string name_, help_;
  const Type type_;
  const std::vector<double> buckets_;
  mutable absl::Mutex mu_;
  std::map<Labels, Series> series_ ABSL_GUARDED_BY(mu_);
};

class MetricsRegistry {
 public:
  MetricFamily* AddCounter(const std::string& name, const std::string& help);
  MetricFamily* AddGauge(const std::string& name, const std::string& help);
  MetricFamily* AddHistogram(const std::string& name, const std::string& help,
                             std::vector<double> buckets);
  std::string Render() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<MetricFamily>> families_ ABSL_GUARDED_BY(mu_);
};

// Exponential buckets: start, start*factor, ... (count of them).
std::vector<double> ExponentialBuckets(double start, double factor, int count);

// The service's metrics, created once.
struct ServerMetrics {
  explicit ServerMetrics(MetricsRegistry* r);
  MetricFamily* requests;         // moe_router_requests_total{model,code}
  MetricFamily* request_seconds;  // moe_router_request_duration_seconds{model}
  MetricFamily* queue_seconds;    // moe_router_queue_wait_seconds{model}
  MetricFamily* compute_seconds;  // moe_router_batch_compute_seconds{backend}
  MetricFamily* batch_tokens;     // moe_router_batch_tokens{backend}
  MetricFamily* queue_depth;      // moe_router_queue_depth
  MetricFamily* in_flight;        // moe_router_in_flight_requests
  MetricFamily* open_streams;     // moe_router_open_streams
  MetricFamily* shed;             // moe_router_shed_total{model}
  MetricFamily* model_info;       // moe_router_model_info{model,family,backend,device}
  MetricFamily* weight_bytes;     // moe_router_weight_memory_bytes{model}
  MetricFamily* build_info;       // moe_router_build_info{version,commit}
  MetricFamily* serving;          // moe_router_serving (1 or 0)
  // moe_router_kernel_info{model,tokens,dtype,config,source}: each token bucket's kernel.
  MetricFamily* kernel_info;
  // moe_router_kernel_tuned_seconds{model,tokens,dtype}: its per-call time when autotuned.
  MetricFamily* kernel_tuned_seconds;
};

// The metrics endpoint's HTTP connections served at once, and how long one may take to
// send its request before it is closed (MetricsHttpServer::Start says why).
inline constexpr int kMetricsHttpThreads = 8;
inline constexpr int kMetricsHttpRequestTimeoutMs = 5000;

// Serves over HTTP (civetweb), until destroyed: GET /metrics, the registry's scrape; and,
// given a ServingState, GET /healthz (200 "alive: PHASE" unless the device failed: a
// liveness probe) and GET /readyz (200 "ready: serving" only while serving: a readiness
// probe), each 503 with the phase otherwise. HEAD answers any of them without the body;
// other methods get 405.
class MetricsHttpServer {
 public:
  // address: "host:port" or "port"; port 0 picks a free one (see port()). `state` may be
  // null (no /healthz or /readyz); it and `registry` must outlive the server.
  static std::unique_ptr<MetricsHttpServer> Start(const std::string& address,
                                                  const MetricsRegistry* registry,
                                                  const ServingState* state, std::string* error);
  ~MetricsHttpServer();
  int port() const { return port_; }

 private:
  // What a health path answers: the state it reads and which question it asks.
  struct HealthPath {
    const ServingState* state;
    bool readiness;
  };
  MetricsHttpServer() = default;
  mg_context* ctx_ = nullptr;
  const MetricsRegistry* registry_ = nullptr;
  HealthPath liveness_{}, readiness_{};
  int port_ = 0;
  std::string wake_host_;  // where to connect to wake civetweb's listener (listener_wake.h)
  static int Handle(mg_connection* conn, void* self);
  static int HandleHealth(mg_connection* conn, void* path);
};

}  // namespace moe
