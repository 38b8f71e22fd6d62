// The load generator behind moe-router-bench: closed loop (N callers, each with one
// request in flight, unary or streaming) or open loop (requests issued at a fixed rate,
// latency measured from the scheduled send time so a slow server cannot hide queueing).
// Thread-safe internally; Run is called once.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/router_client.h"

namespace moe {

struct LoadOptions {
  std::string address = "localhost:50051";
  std::string model;
  int layers = 1;       // requests rotate over layers 0..layers-1 (at most the model's)
  int tokens = 1;       // tokens per request (at most the model's max_tokens)
  int concurrency = 1;  // closed loop: callers, a thread each (1..kMaxConcurrency)
  double rate = 0;      // > 0: open loop at this many requests per second (<= kMaxRate)
  bool stream = false;  // closed loop over RouteStream (one stream per caller)
  double duration_s = 10;
  double warmup_s = 1;
  // Before the run, wait up to this many seconds for the server's health check to answer
  // SERVING (a server still loading its models answers NOT_SERVING). During it, stop once no
  // call has reached the server (every one UNAVAILABLE: it died, is restarting or still
  // loading) for this many seconds; 0: no wait first, and run to the end whatever happens.
  // Either way a caller whose call found the server unreachable waits before its next one
  // (1 ms doubling to 100 ms), so a dead server is not hammered with fast failures.
  double give_up_s = 5;
  bool progress = true;  // a line per second on stderr
  // The server runs on this host: split each answered request's transport time into the way
  // in and the way out with the server's monotonic arrival stamp (Timing.arrival_monotonic_ns),
  // which is meaningless next to another host's clock.
  bool same_host_timing = false;
  ClientOptions client;
};

struct LoadReport {
  double seconds = 0;
  uint64_t ok = 0;
  std::map<std::string, uint64_t> errors;  // by status code name
  double qps = 0, tokens_per_s = 0;
  double p50_us = 0, p90_us = 0, p99_us = 0, p999_us = 0, max_us = 0, mean_us = 0;
  // Median of the server's own time per request (Timing.server_us; 0 from servers that
  // do not report it, like the echo server): the rest of p50 is transport and client.
  double server_p50_us = 0;
  // Median Timing.queue_us: arrival (before the parse) to the batch's launch.
  double queue_p50_us = 0;
  double compute_p50_us = 0;  // median Timing.compute_us: the batch's device (or CPU) time
  // With same_host_timing, medians over the requests whose server stamped its arrival (0
  // otherwise): the way in, from the client starting the call (its serialization included) to
  // the server's arrival stamp; the way out, from the answer being ready (arrival + server_us)
  // to the client having it (its parse included).
  double way_in_p50_us = 0, way_out_p50_us = 0;
  // Why the run stopped before its end (the server unreachable for give_up_s), "" if it ran
  // to the end. `seconds` is then the measured time that did run. ToJson says only whether
  // (the reason holds the server's own message).
  std::string stopped_early;

  std::string ToJson(const LoadOptions& o) const;
  std::string ToText() const;
};

inline constexpr int kMaxConcurrency = 4096;
inline constexpr double kMaxRate = 1e6;
inline constexpr double kMaxSeconds = 86400;
// What RunLoad's prepared requests may hold together (PreparedRequestCount).
inline constexpr size_t kMaxPreparedBytes = size_t(256) << 20;

// How many requests RunLoad prepares (their hidden states built once, sent in turn): one a
// layer, so that every layer of 0..layers-1 is visited, at least 16, and no more than
// kMaxPreparedBytes of hidden states hold (then only the first layers are visited; RunLoad
// says so).
int PreparedRequestCount(const LoadOptions& options, int hidden);

// The options' own checks (the model's limits are RunLoad's): INVALID_ARGUMENT naming the
// flag (--tokens, --layers, --concurrency, --rate, --duration_s, --warmup_s, --give_up_s).
absl::Status CheckLoadOptions(const LoadOptions& options);

// Runs the load; fails if the options are refused (CheckLoadOptions, or more layers or
// tokens than the model has or takes), if the model cannot be described, or if its caller
// threads cannot be started, or if the server is not serving within give_up_s (unreachable,
// or still loading its models). A server that goes away mid-run is a report with
// stopped_early set (after give_up_s), not a failure: what was measured before is kept.
absl::StatusOr<LoadReport> RunLoad(const LoadOptions& options);

}  // namespace moe
