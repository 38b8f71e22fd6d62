// moe-router-server: wires flags, models, the backend, the batcher, the gRPC services and
// the metrics endpoint; handles SIGTERM/SIGINT with a drain.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "kernels/build_version.h"
#include "kernels/flags_usage.h"
#include "server/backend.h"
#include "server/batcher.h"
#include "server/checkpoint.h"
#include "server/demo_models.h"
#include "server/heap_tuning.h"
#include "server/json_util.h"
#include "server/listen_address.h"
#include "server/metrics.h"
#include "server/router_service.h"
#include "server/server_config.h"
#include "server/serving_state.h"

ABSL_FLAG(std::string, address, "0.0.0.0:50051",
          "gRPC listen address: host:port (an IPv4 address, [an IPv6 address] or a host name; "
          "port 0..65535, 0 picks one) or unix:PATH");
ABSL_FLAG(bool, reuse_port, false,
          "Share the gRPC port with other processes that also set this (SO_REUSEPORT: the "
          "kernel spreads new connections over them, e.g. to start a new server before "
          "draining the old one). Off, a port already in use is an error; gRPC's own default "
          "(on) let a second server start silently on a busy port and take half its "
          "connections");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9090",
          "Prometheus /metrics HTTP listen address (host:port or port, as --address); empty "
          "disables");
ABSL_FLAG(std::vector<std::string>, model, {"demo-deepseek-v3"},
          "Models to load, comma-separated: a demo name (demo-deepseek-v3, demo-qwen3-30b, "
          "demo-mixtral, demo-gpt-oss-20b, ...) or NAME=PATH where PATH is a Hugging Face "
          "checkpoint directory or a router .safetensors file from moe-router-extract");
ABSL_FLAG(int, demo_layers, 0, "Layers of demo models (0: the real model's count)");
ABSL_FLAG(std::string, backend, "auto", "auto (cuda if a GPU is usable, else cpu), cuda or cpu");
ABSL_FLAG(int, device, 0, "CUDA device ordinal");
ABSL_FLAG(int, cpu_threads, 0, "CPU backend threads (0: all hardware threads)");
ABSL_FLAG(bool, autotune, true,
          "Time kernel configurations on the GPU when a token bucket is first used");
ABSL_FLAG(std::string, autotune_cache, "", "File remembering autotuned configurations");
ABSL_FLAG(bool, cuda_graphs, true,
          "Replay one CUDA graph per (model, layer, token bucket) instead of separate launches");
ABSL_FLAG(bool, zero_copy_input, true,
          "Batches of up to 256 KiB of hidden states: a small kernel reads them from "
          "page-locked host memory while the router kernel streams its weights (PDL); false, "
          "or larger batches: a copy-engine transfer first");
ABSL_FLAG(int, pinned_input_blocks, 128,
          "With --zero_copy_input: page-locked 256 KiB blocks that requests' hidden states are "
          "parsed into, so a lone request's are read by the GPU in place, with no staging "
          "copy (128 blocks: 32 MiB); requests finding none free, or larger, are parsed into "
          "heap memory and copied. 0: no blocks");
ABSL_FLAG(bool, pinned_input_streaming_stores, true,
          "Copy hidden states into the page-locked memory the GPU reads them from (the input "
          "blocks, the staging buffers) with non-temporal stores, past the CPU caches");
ABSL_FLAG(bool, stage_while_filling, true,
          "With input blocks: a lone request goes to a waiting worker before its hidden states "
          "are copied out of the gRPC message, and the GPU stages each 4 KiB chunk as it lands "
          "(the launch and the transfer overlap the copy); false: copy, then hand over");
ABSL_FLAG(int, max_batch_tokens, 256, "Most tokens in one batch (1..256)");
ABSL_FLAG(int, max_queue_delay_us, 0,
          "How long a batch may wait to fill (0: launch when the device is free)");
ABSL_FLAG(int, max_queued_requests, 4096, "Queue bound; beyond it requests get RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_stream_in_flight, 256,
          "Requests of one RouteStream answered but not yet written, or not yet answered, "
          "beyond which the server stops reading that stream until the client reads "
          "(bounds a stream's memory when its client does not read)");
ABSL_FLAG(int, stream_window_bytes, 0,
          "0: gRPC's adaptive HTTP/2 flow-control window (BDP probing), which grows with the "
          "bytes in flight and has no bound of ours: up to 1 GiB a call, past 40 MB seen for "
          "one client that sent without reading its answers on a loaded host. N > 0: a fixed "
          "window of N bytes a call, so such a client parks at most ~N in the server's "
          "transport (besides --max_stream_in_flight requests); costs tail latency with many "
          "callers (p99 6 -> 15-19 ms at 64 callers on a 2-core host)");
ABSL_FLAG(int64_t, max_queued_bytes, int64_t{1} << 30,
          "Bound on the hidden-state bytes queued; beyond it requests get RESOURCE_EXHAUSTED "
          "(a request finding the queue empty is always taken)");
ABSL_FLAG(int, idle_spin_us, -1,
          "How long an idle batcher worker busy-waits for the next request before sleeping. "
          "-1: 1000 on the CUDA backend, 0 on the CPU backend (whose threads need the cores). "
          "0: sleep at once, and a lone request runs on the gRPC thread. Spinning lowers "
          "one-caller latency (~60 us on the H100) at the cost of one core kept busy that "
          "long after each batch");
ABSL_FLAG(int, max_message_bytes, 64 << 20, "Largest gRPC message accepted");
ABSL_FLAG(double, grace_period_s, 10.0,
          "On SIGTERM/SIGINT: how long queued requests may take to finish");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate (enables TLS with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM server private key");
ABSL_FLAG(std::string, tls_client_ca, "", "PEM CA for client certificates (enables mutual TLS)");
ABSL_FLAG(std::string, port_file, "",
          "Once listening (before the models load), write the bound gRPC and metrics ports here");
ABSL_FLAG(
    std::string, config, "",
    "JSON file of flag values, e.g. {\"model\": [\"demo-mixtral\"], \"max_batch_tokens\": 128}; "
    "flags given on the command line override it");

namespace moe {
namespace {

// HTTP/2's default window is the least (RFC 9113); gRPC grows one to at most 1 GiB.
constexpr int kMinStreamWindow = 65535;
constexpr int kMaxStreamWindow = 1 << 30;

std::atomic<int> g_signal{0};
void OnSignal(int sig) { g_signal = sig; }

int Fail(const std::string& message) {
  std::fprintf(stderr, "moe-router-server: %s\n", message.c_str());
  return 1;
}

// "GRPC_PORT METRICS_PORT\n" into `path`, whole or not at all (written beside it, then
// renamed over it), so that a reader polling for the file never sees half a line. A path
// that cannot be written stops the server: whoever waits for the file would wait forever.
absl::Status WritePortFile(const std::string& path, int grpc_port, int metrics_port) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  FILE* f = std::fopen(tmp.c_str(), "w");
  bool ok = f != nullptr && std::fprintf(f, "%d %d\n", grpc_port, metrics_port) > 0;
  if (f != nullptr) ok = std::fclose(f) == 0 && ok;
  if (ok) ok = std::rename(tmp.c_str(), path.c_str()) == 0;
  if (ok) return absl::OkStatus();
  const std::string why = std::strerror(errno);
  std::remove(tmp.c_str());
  return absl::InvalidArgumentError(absl::StrCat("--port_file: cannot write ", path, ": ", why));
}

// Which kernel each token bucket of a just-loaded model got: a log line per bucket and the
// kernel-info metrics, so an operator can tell a tuned plan from a cached or heuristic one
// (and see what a restart changed) without a GPU profiler.
void ReportKernelChoices(const RouterBackend& backend, const std::string& model,
                         ServerMetrics& metrics) {
  for (const KernelChoice& k : backend.KernelChoices(model)) {
    const std::string tokens = std::to_string(k.tokens);
    const std::string dtype(DTypeName(k.hidden_dtype));
    std::fprintf(stderr, "moe-router-server:   %s %s up to %3d tokens: %s (%s", model.c_str(),
                 dtype.c_str(), k.tokens, k.config.c_str(), k.source.c_str());
    if (k.tuned_us > 0) std::fprintf(stderr, ", %.2f us", k.tuned_us);
    std::fprintf(stderr, ")\n");
    metrics.kernel_info->Set({{"model", model},
                              {"tokens", tokens},
                              {"dtype", dtype},
                              {"config", k.config},
                              {"source", k.source}},
                             1);
    if (k.tuned_us > 0)
      metrics.kernel_tuned_seconds->Set({{"model", model}, {"tokens", tokens}, {"dtype", dtype}},
                                        k.tuned_us * 1e-6);
  }
}

// Loads every --model into the backend, logging progress; the service's model table.
absl::StatusOr<RouterService::ModelTable> LoadModels(RouterBackend& backend,
                                                     ServerMetrics& metrics) {
  RouterService::ModelTable models;
  for (const std::string& spec : absl::GetFlag(FLAGS_model)) {
    if (spec.empty()) continue;
    std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits('=', 1));
    if (parts.size() == 2 && parts[0].empty())
      return absl::InvalidArgumentError(
          absl::StrCat("--model ", spec, ": no name before '=' (NAME=PATH)"));
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<RouterModel> model =
        parts.size() == 2 ? LoadModelSource(parts[1], parts[0])
                          : MakeDemoModel(parts[0], absl::GetFlag(FLAGS_demo_layers));
    if (!model.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("--model ", spec, ": ", model.status().message()));
    if (models.count(model->name))
      return absl::InvalidArgumentError(absl::StrCat("--model: '", model->name, "' given twice"));
    auto status = backend.LoadModel(*model);
    if (!status.ok())
      return absl::InternalError(absl::StrCat("loading ", model->name, ": ", status.message()));
    // One token through the backend: the model works end to end before SERVING. (The CUDA
    // backend already made its plans and graphs in LoadModel.)
    std::string zeros(size_t(model->spec.hidden) * 2, '\0');
    std::vector<int32_t> ids(model->spec.top_k);
    std::vector<float> w(model->spec.top_k);
    auto warm = backend.Route(model->name, 0,
                              {zeros.data(), DType::kBF16, 1, ids.data(), w.data(), nullptr});
    if (!warm.ok())
      return absl::InternalError(
          absl::StrCat("warm-up of ", model->name, ": ", warm.status().message()));
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(
        stderr,
        "moe-router-server: loaded %s (%s, %d layers, %d experts x %d hidden, %.1f MB) in %.2f s\n",
        model->name.c_str(), model->spec.family.c_str(), model->num_layers(), model->spec.experts,
        model->spec.hidden, model->WeightBytes() / 1e6, secs);
    ReportKernelChoices(backend, model->name, metrics);
    models[model->name] = {model->name, model->spec, model->weight_dtype, model->num_layers(),
                           model->WeightBytes()};
    metrics.model_info->Set({{"model", model->name},
                             {"family", model->spec.family},
                             {"backend", backend.name()},
                             {"device", backend.device()}},
                            1);
    metrics.weight_bytes->Set({{"model", model->name}}, model->WeightBytes());
    metrics.shed->Increment({{"model", model->name}}, 0);  // series exist before the first shed
  }
  if (models.empty()) return absl::InvalidArgumentError("--model: no models to serve");
  return models;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials() {
  if (absl::GetFlag(FLAGS_tls_cert).empty() && absl::GetFlag(FLAGS_tls_key).empty())
    return grpc::InsecureServerCredentials();
  auto cert = ReadWholeFile(absl::GetFlag(FLAGS_tls_cert));
  auto key = ReadWholeFile(absl::GetFlag(FLAGS_tls_key));
  if (!cert.ok())
    return absl::InvalidArgumentError(absl::StrCat("--tls_cert: ", cert.status().message()));
  if (!key.ok())
    return absl::InvalidArgumentError(absl::StrCat("--tls_key: ", key.status().message()));
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!absl::GetFlag(FLAGS_tls_client_ca).empty()) {
    auto ca = ReadWholeFile(absl::GetFlag(FLAGS_tls_client_ca));
    if (!ca.ok())
      return absl::InvalidArgumentError(absl::StrCat("--tls_client_ca: ", ca.status().message()));
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

// "--NAME: V is outside LO..HI" where V is (NaN included), else OK.
template <typename T>
absl::Status InRange(const char* name, T value, T lo, T hi) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", value, " is outside ", lo, "..", hi));
}

// Every numeric flag within what the server can honour, before anything starts: a value
// outside is refused by name (a negative or NaN grace period, a thread count the system
// cannot start, a million demo layers, a zero message size had been taken or crashed).
absl::Status CheckFlagRanges() {
  using absl::GetFlag;
  constexpr int kIntMax = std::numeric_limits<int>::max();
  for (const absl::Status& s : {
           InRange("--idle_spin_us", GetFlag(FLAGS_idle_spin_us), -1, 1000000),
           InRange("--max_batch_tokens", GetFlag(FLAGS_max_batch_tokens), 1, kMaxTokens),
           InRange("--max_queue_delay_us", GetFlag(FLAGS_max_queue_delay_us), 0, 1000000),
           InRange("--max_queued_requests", GetFlag(FLAGS_max_queued_requests), 1, kIntMax),
           InRange("--max_queued_bytes", GetFlag(FLAGS_max_queued_bytes), int64_t{0},
                   std::numeric_limits<int64_t>::max()),
           InRange("--max_stream_in_flight", GetFlag(FLAGS_max_stream_in_flight), 1, kIntMax),
           InRange("--max_message_bytes", GetFlag(FLAGS_max_message_bytes), 4096, kIntMax),
           InRange("--pinned_input_blocks", GetFlag(FLAGS_pinned_input_blocks), 0, 4096),
           InRange("--demo_layers", GetFlag(FLAGS_demo_layers), 0, 1024),
           InRange("--device", GetFlag(FLAGS_device), 0, 1023),
           InRange("--cpu_threads", GetFlag(FLAGS_cpu_threads), 0, 1024),
           InRange("--grace_period_s", GetFlag(FLAGS_grace_period_s), 0.0, 3600.0),
       })
    if (!s.ok()) return s;
  if (const int w = GetFlag(FLAGS_stream_window_bytes);
      w != 0 && (w < kMinStreamWindow || w > kMaxStreamWindow))
    return absl::InvalidArgumentError(absl::StrCat("--stream_window_bytes: ", w,
                                                   " is neither 0 nor in ", kMinStreamWindow, "..",
                                                   kMaxStreamWindow));
  return absl::OkStatus();
}

// The server's whole life: flags, models, the service, until a signal drains it.
int ServerMain(int argc, char** argv) {
  const std::string heap = TuneHeapForLargeMessages();  // before any thread exists
  absl::SetProgramUsageMessage(
      "Routes tokens to experts for Mixture-of-Experts models over gRPC.\n"
      "  moe-router-server --model demo-deepseek-v3\n"
      "  moe-router-server --model ds=/models/DeepSeek-V3 --address 0.0.0.0:50051\n"
      "  moe-router-server --config server.json");
  moe::SetFlagsUsage("moe-router-server", __FILE__);
  if (auto status = ApplyConfigFileFlag(argc, argv); !status.ok())
    return Fail(std::string(status.message()));
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built with Mutex deadlock detection on: a global graph update on
  // every lock (5x the cost of an uncontended lock, measured). The tests and TSan-style
  // tools find lock-order bugs; the serving path should not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  if (absl::Status bad = CheckFlagRanges(); !bad.ok()) return Fail(std::string(bad.message()));
  if (absl::Status bad = CheckListenAddress("--address", absl::GetFlag(FLAGS_address),
                                            /*port_alone=*/false);
      !bad.ok())
    return Fail(std::string(bad.message()));
  if (const std::string metrics = absl::GetFlag(FLAGS_metrics_address); !metrics.empty())
    if (absl::Status bad = CheckListenAddress("--metrics_address", metrics, /*port_alone=*/true);
        !bad.ok())
      return Fail(std::string(bad.message()));
  const int idle_spin_us = absl::GetFlag(FLAGS_idle_spin_us);
  const int max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);

  // Backend.
  std::unique_ptr<RouterBackend> backend;
  const std::string backend_flag = absl::GetFlag(FLAGS_backend);
  if (backend_flag != "auto" && backend_flag != "cuda" && backend_flag != "cpu")
    return Fail("--backend: expected auto, cuda or cpu");
  if (backend_flag != "cpu") {
    std::string error;
    CudaBackendOptions options;
    options.device = absl::GetFlag(FLAGS_device);
    options.autotune = absl::GetFlag(FLAGS_autotune);
    options.tune_cache = absl::GetFlag(FLAGS_autotune_cache);
    options.graphs = absl::GetFlag(FLAGS_cuda_graphs);
    options.zero_copy_input = absl::GetFlag(FLAGS_zero_copy_input);
    options.input_pool_blocks = absl::GetFlag(FLAGS_pinned_input_blocks);
    options.pinned_input_streaming_stores = absl::GetFlag(FLAGS_pinned_input_streaming_stores);
    options.stage_while_filling = absl::GetFlag(FLAGS_stage_while_filling);
    backend = MakeCudaBackend(options, &error);
    if (!backend && backend_flag == "cuda") return Fail(absl::StrCat("--backend=cuda: ", error));
    if (!backend)
      std::fprintf(stderr, "moe-router-server: %s; using the CPU backend\n", error.c_str());
  }
  if (!backend) backend = MakeCpuBackend(absl::GetFlag(FLAGS_cpu_threads));
  std::fprintf(stderr, "%s\n", moe::VersionLine("moe-router-server").c_str());
  std::fprintf(stderr, "moe-router-server: backend %s (%s)\n", backend->name().c_str(),
               backend->device().c_str());
  std::fprintf(stderr, "moe-router-server: %s\n", heap.c_str());

  MetricsRegistry registry;
  ServerMetrics metrics(&registry);
  const moe::BuildVersion& version = moe::GetBuildVersion();
  metrics.build_info->Set({{"version", version.version}, {"commit", version.commit}}, 1);

  // gRPC first, NOT_SERVING, so orchestrators see a live but unready process while the
  // models load. One phase feeds every health answer: gRPC's health service, /healthz and
  // /readyz on the metrics endpoint, and the moe_router_serving gauge.
  std::unique_ptr<grpc::Server> server;
  ServingState serving_state;
  metrics.serving->Set({}, 0);
  // Serialised, so the three answers cannot end up disagreeing when the batcher's failure
  // report and a phase of the main thread's come together.
  absl::Mutex enter_mu;
  auto enter = [&server, &serving_state, &metrics, &enter_mu](ServingPhase phase) {
    absl::MutexLock lock(&enter_mu);
    serving_state.Set(phase);
    const bool ready = IsReady(serving_state.phase());  // a failed device stays failed
    if (server) server->GetHealthCheckService()->SetServingStatus(ready);
    metrics.serving->Set({}, ready ? 1 : 0);
  };
  BatcherOptions batcher_options;
  batcher_options.limits.max_batch_tokens = max_batch_tokens;
  batcher_options.limits.max_queue_delay_us = absl::GetFlag(FLAGS_max_queue_delay_us);
  batcher_options.max_queued_requests = absl::GetFlag(FLAGS_max_queued_requests);
  batcher_options.max_queued_bytes = absl::GetFlag(FLAGS_max_queued_bytes);
  batcher_options.idle_spin_us =
      idle_spin_us >= 0 ? idle_spin_us : (backend->name() == "cuda" ? 1000 : 0);
  batcher_options.on_backend_failure = [&enter] {
    std::fprintf(stderr, "moe-router-server: the device failed; health is now NOT_SERVING\n");
    enter(ServingPhase::kDeviceFailed);
  };
  Batcher batcher(backend.get(), batcher_options, &metrics);
  RouterService service(&batcher, backend.get(), &metrics, kMaxTokens,
                        absl::GetFlag(FLAGS_max_stream_in_flight));

  std::unique_ptr<MetricsHttpServer> http;
  if (!absl::GetFlag(FLAGS_metrics_address).empty()) {
    std::string error;
    http = MetricsHttpServer::Start(absl::GetFlag(FLAGS_metrics_address), &registry, &serving_state,
                                    &error);
    if (!http) return Fail(error);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  auto creds = ServerCredentials();
  if (!creds.ok()) return Fail(std::string(creds.status().message()));
  int grpc_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::GetFlag(FLAGS_address), *creds, &grpc_port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, absl::GetFlag(FLAGS_reuse_port) ? 1 : 0);
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  builder.SetMaxSendMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  builder.RegisterService(&service);
  if (const int window = absl::GetFlag(FLAGS_stream_window_bytes); window > 0) {
    // BDP probing off: the window stays where it is set. gRPC otherwise raises it from
    // the bytes that arrive during a ping's round trip, and on a loaded host (slow ping
    // answers) it grew past 40 MB for one stream whose client did not read (session 34).
    builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, window);
  }
  server = builder.BuildAndStart();
  if (!server || grpc_port == 0)
    return Fail(absl::StrCat("--address: cannot listen on ", absl::GetFlag(FLAGS_address),
                             " (in use, or not an address of this host)"));
  enter(ServingPhase::kLoading);

  if (const std::string port_file = absl::GetFlag(FLAGS_port_file); !port_file.empty()) {
    if (absl::Status written = WritePortFile(port_file, grpc_port, http ? http->port() : 0);
        !written.ok()) {
      server->Shutdown();
      return Fail(std::string(written.message()));
    }
  }

  auto models = LoadModels(*backend, metrics);
  if (!models.ok()) {
    server->Shutdown();
    return Fail(std::string(models.status().message()));
  }
  service.SetModels(std::move(*models));
  enter(ServingPhase::kServing);
  // The URL with the bound port (the flag's may be 0: pick one); the flag is HOST:PORT or PORT.
  const std::string metrics_flag = absl::GetFlag(FLAGS_metrics_address);
  const size_t colon = metrics_flag.rfind(':');
  const std::string metrics_at =
      http ? absl::StrCat("metrics on http://",
                          colon == std::string::npos ? "0.0.0.0" : metrics_flag.substr(0, colon),
                          ":", http->port(), "/metrics")
           : "metrics off (--metrics_address is empty)";
  // A Unix socket has no port (gRPC reports 1 for it): its address instead.
  const std::string grpc_at = absl::StartsWith(absl::GetFlag(FLAGS_address), "unix")
                                  ? absl::GetFlag(FLAGS_address)
                                  : absl::StrCat("port ", grpc_port);
  std::fprintf(stderr, "moe-router-server: serving gRPC on %s, %s\n", grpc_at.c_str(),
               metrics_at.c_str());
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  while (g_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::fprintf(stderr, "moe-router-server: signal %d, draining\n", g_signal.load());
  enter(ServingPhase::kDraining);
  // Stop accepting new calls; calls already accepted finish (up to the grace period).
  const auto grace = std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::duration<double>(absl::GetFlag(FLAGS_grace_period_s)));
  server->Shutdown(std::chrono::system_clock::now() + grace);
  batcher.Shutdown();
  std::fprintf(stderr, "moe-router-server: stopped\n");
  return 0;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) { return moe::ServerMain(argc, argv); }
