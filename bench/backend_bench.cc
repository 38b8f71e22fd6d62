// backend_bench: where a one-caller request's time goes in the server, without gRPC.
// Times the service's own path (RouterService::Submit: validation, batcher, backend,
// response; with the request's parse: protobuf's, or into an input-pool block) and the
// backend's Route() alone (hidden states on the heap, or in a pool block read in place);
// for the CUDA backend also the CUDA floors
// they are built from: an empty graph launch + sync, a graph copying the hidden states in
// (copy engine, or the stage-in kernel reading mapped memory; 1 and 16 tokens), and a graph
// with the server's copy-in, kernel slot and copy-outs around an empty kernel.
// Wall-clock medians of many calls after warm-up; layers rotate as in the service bench.
//   backend_bench [--backend cuda|cpu] [--model demo-deepseek-v3] [--calls 3000] [--json F]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/empty_kernel.h"
#include "kernels/cuda_device.h"
#include "kernels/cuda_raii.h"
#include "kernels/cuda_router.h"
#include "kernels/stage_in.h"
#include "server/backend.h"
#include "server/batcher.h"
#include "server/demo_models.h"
#include "server/metrics.h"
#include "server/route_request_parser.h"
#include "server/router_service.h"

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;

struct Stat {
  std::string name;
  double p50 = 0, p90 = 0;
};

// How the caller waits between timed calls: back to back, spinning (the CPU stays busy,
// the GPU idles) or sleeping (both may idle), as a server at one caller does.
enum class Gap { kNone, kSpin, kSleep };
constexpr auto kGap = std::chrono::microseconds(150);

// `before`, when given, runs untimed ahead of each call (e.g. to copy a request the call
// consumes).
Stat Time(const std::string& name, int calls, const std::function<bool()>& call,
          Gap gap = Gap::kNone, const std::function<void()>& before = nullptr) {
  for (int i = 0; i < std::min(calls, 200); ++i) {
    if (before) before();
    if (!call()) return {name + " (FAILED)", -1, -1};
  }
  std::vector<double> us(calls);
  for (int i = 0; i < calls; ++i) {
    if (before) before();
    if (gap == Gap::kSpin) {
      const auto until = Clock::now() + kGap;
      while (Clock::now() < until) {
      }
    } else if (gap == Gap::kSleep) {
      std::this_thread::sleep_for(kGap);
    }
    const auto t0 = Clock::now();
    if (!call()) return {name + " (FAILED)", -1, -1};
    us[i] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  }
  std::sort(us.begin(), us.end());
  return {name, us[calls / 2], us[calls * 9 / 10]};
}

// A graph captured from `record` on `stream`; null on failure.
CudaGraphExec Capture(cudaStream_t stream, const std::function<cudaError_t()>& record) {
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) return {};
  const cudaError_t err = record();
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  CudaGraph owned(graph);
  cudaGraphExec_t exec = nullptr;
  if (err != cudaSuccess || end != cudaSuccess ||
      cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess)
    return {};
  return CudaGraphExec(exec);
}

// The CUDA floors under the backend's GPU path.
bool TimeCudaFloors(const RouterSpec& spec, int calls, std::vector<Stat>* rows) {
  auto stream = MakeStream();
  auto pinned_in = PinnedBuffer::Allocate(size_t(spec.hidden) * 2 * 16);
  auto pinned_out = PinnedBuffer::Allocate(4096);
  auto dev_in = DeviceBuffer::Allocate(size_t(spec.hidden) * 2 * 16);
  auto dev_out = DeviceBuffer::Allocate(4096);
  if (!stream.ok() || !pinned_in.ok() || !pinned_out.ok() || !dev_in.ok() || !dev_out.ok())
    return false;
  cudaStream_t s = stream->get();
  const size_t one_token = size_t(spec.hidden) * 2, ids_bytes = size_t(spec.top_k) * 4;
  auto copy_in = [&] {
    return cudaMemcpyAsync(dev_in->get(), pinned_in->get(), one_token, cudaMemcpyHostToDevice, s);
  };
  auto empty = Capture(s, [&] { return bench::LaunchEmptyKernel(s); });
  auto copy_in_only = Capture(s, copy_in);
  auto server_shape = Capture(s, [&] {
    cudaError_t e = copy_in();
    if (e == cudaSuccess) e = bench::LaunchEmptyKernel(s);
    if (e == cudaSuccess)
      e = cudaMemcpyAsync(pinned_out->get(), dev_out->get(), ids_bytes, cudaMemcpyDeviceToHost, s);
    if (e == cudaSuccess)
      e = cudaMemcpyAsync(pinned_out->as<char>() + 2048, dev_out->as<char>() + 2048, ids_bytes,
                          cudaMemcpyDeviceToHost, s);
    return e;
  });
  void* mapped_in = nullptr;
  if (cudaHostGetDevicePointer(&mapped_in, pinned_in->get(), 0) != cudaSuccess) return false;
  auto stage_in = [&](int tokens) {
    return Capture(
        s, [&] { return cuda::LaunchStageIn(mapped_in, dev_in->get(), one_token * tokens, s); });
  };
  auto staged_1 = stage_in(1), staged_16 = stage_in(16);
  // The same with the source named by a cell in mapped memory, as the server stages.
  auto cells = PinnedBuffer::Allocate(cuda::kStageSourceCellsBytes);
  void* mapped_cells = nullptr;
  if (!cells.ok() || cudaHostGetDevicePointer(&mapped_cells, cells->get(), 0) != cudaSuccess)
    return false;
  cuda::SetStageInSource(cells->get(), mapped_in, one_token * 16);
  auto staged_from_cell_16 = Capture(
      s, [&] { return cuda::LaunchStageInFrom(mapped_cells, dev_in->get(), one_token * 16, s); });
  auto copy_in_16 = Capture(s, [&] {
    return cudaMemcpyAsync(dev_in->get(), pinned_in->get(), one_token * 16, cudaMemcpyHostToDevice,
                           s);
  });
  if (!empty || !copy_in_only || !server_shape || !staged_1 || !staged_16 || !staged_from_cell_16 ||
      !copy_in_16)
    return false;
  auto replay = [&](const CudaGraphExec& g) {
    return [&] {
      return cudaGraphLaunch(g.get(), s) == cudaSuccess && cudaStreamSynchronize(s) == cudaSuccess;
    };
  };
  rows->push_back(Time("empty kernel graph + sync", calls, replay(empty)));
  rows->push_back(Time("copy-in graph (1 token) + sync", calls, replay(copy_in_only)));
  rows->push_back(Time("copy-in graph (16 tokens) + sync", calls, replay(copy_in_16)));
  rows->push_back(Time("stage-in kernel graph (1 token) + sync", calls, replay(staged_1)));
  rows->push_back(Time("stage-in kernel graph (16 tokens) + sync", calls, replay(staged_16)));
  rows->push_back(Time("  the same, source named by cells", calls, replay(staged_from_cell_16)));
  rows->push_back(Time("copy-in, empty kernel, 2 copy-outs + sync", calls, replay(server_shape)));
  // The device part of a 16-token stage-in batch taken apart: the router alone (hidden
  // states already on the device), the stage-in kernel then the router in plain stream
  // order, and under PDL as the server runs them. One layer's weights: they stay in L2, so
  // the router rows are a lower bound.
  const RouteProblem problem16{spec, 16, DType::kBF16, DType::kBF16};
  auto plan16 = cuda::CudaRouterPlan::Create(problem16, cuda::ProbeDevice(0).sm_count);
  auto weight = DeviceBuffer::Allocate(size_t(spec.experts) * spec.hidden * 2);
  auto biases = DeviceBuffer::Allocate(size_t(spec.experts) * 8);
  auto outs = DeviceBuffer::Allocate(size_t(16) * spec.top_k * 8);
  if (!plan16.ok() || !weight.ok() || !biases.ok() || !outs.ok()) return false;
  // Distinct values (equal ones would send every token down the exact-tie path).
  std::vector<uint16_t> values(weight->bytes() / 2);
  uint32_t lcg = 12345;
  for (auto& v : values) {
    lcg = lcg * 1664525u + 1013904223u;
    v = uint16_t(0x3c00 | (lcg >> 22));  // bf16 in [0.0078, 0.0156), either sign
    if (lcg & 0x8000) v |= 0x8000;
  }
  if (cudaMemcpy(weight->get(), values.data(), weight->bytes(), cudaMemcpyHostToDevice) !=
          cudaSuccess ||
      cudaMemset(biases->get(), 0, biases->bytes()) != cudaSuccess)
    return false;
  std::memcpy(pinned_in->get(), values.data(), one_token * 16);  // what stage-in copies
  if (cudaMemcpy(dev_in->get(), values.data(), one_token * 16, cudaMemcpyHostToDevice) !=
      cudaSuccess)
    return false;
  RouteArgs args16{dev_in->get(),
                   weight->get(),
                   spec.has_router_bias ? biases->as<float>() : nullptr,
                   spec.has_correction_bias ? biases->as<float>() + spec.experts : nullptr,
                   outs->as<int32_t>(),
                   outs->as<float>() + 16 * spec.top_k,
                   nullptr};
  auto router_only = Capture(s, [&] { return (*plan16)->Launch(args16, s); });
  auto staged_router = [&](bool pdl) {
    return Capture(s, [&] {
      cudaError_t e = cuda::LaunchStageIn(mapped_in, dev_in->get(), one_token * 16, s);
      return e == cudaSuccess ? (*plan16)->Launch(args16, s, pdl) : e;
    });
  };
  auto staged_router_plain = staged_router(false), staged_router_pdl = staged_router(true);
  if (!router_only || !staged_router_plain || !staged_router_pdl) return false;
  rows->push_back(Time("router (16 tokens) graph + sync", calls, replay(router_only)));
  rows->push_back(
      Time("stage-in then router (16 tokens) + sync", calls, replay(staged_router_plain)));
  rows->push_back(
      Time("stage-in, router under PDL (16 tokens) + sync", calls, replay(staged_router_pdl)));
  // The host's half of staging 16 tokens: into page-locked memory from a source the cache
  // holds, and from a freshly allocated one (as a request's bytes arrive).
  const std::string hot(one_token * 16, '\x3f');
  std::string fresh;
  rows->push_back(Time("host memcpy 16 tokens -> pinned, hot source", calls, [&] {
    std::memcpy(pinned_in->get(), hot.data(), hot.size());
    return true;
  }));
  rows->push_back(Time(
      "host memcpy 16 tokens -> pinned, new source each call", calls,
      [&] {
        std::memcpy(pinned_in->get(), fresh.data(), fresh.size());
        return true;
      },
      Gap::kNone, [&] { fresh = std::string(hot.size(), '\x3e'); }));
  // The same with the source just written by another thread (as the gRPC thread parses a
  // request the batch's worker then stages), copied by this thread alone or by this thread
  // and a third, spinning one, half each.
  std::string cross(hot.size(), '\0');
  std::atomic<int> phase{0};  // 1: writer's turn; 2: helper's turn; 0: done
  std::atomic<bool> stop{false};
  std::thread writer_thread([&] {
    while (!stop.load(std::memory_order_acquire)) {
      if (phase.load(std::memory_order_acquire) == 1) {
        std::memset(cross.data(), 0x3d, cross.size());
        phase.store(0, std::memory_order_release);
      }
    }
  });
  std::thread helper_thread([&] {
    while (!stop.load(std::memory_order_acquire)) {
      if (phase.load(std::memory_order_acquire) == 2) {
        const size_t half = cross.size() / 2;
        std::memcpy(pinned_in->as<char>() + half, cross.data() + half, cross.size() - half);
        phase.store(0, std::memory_order_release);
      }
    }
  });
  auto written_elsewhere = [&] {
    phase.store(1, std::memory_order_release);
    while (phase.load(std::memory_order_acquire) != 0) {
    }
  };
  rows->push_back(Time(
      "host memcpy 16 tokens -> pinned, written by another thread", calls,
      [&] {
        std::memcpy(pinned_in->get(), cross.data(), cross.size());
        return true;
      },
      Gap::kNone, written_elsewhere));
  rows->push_back(Time(
      "  the same, half copied by a third, spinning thread", calls,
      [&] {
        phase.store(2, std::memory_order_release);
        std::memcpy(pinned_in->get(), cross.data(), cross.size() / 2);
        while (phase.load(std::memory_order_acquire) != 0) {
        }
        return true;
      },
      Gap::kNone, written_elsewhere));
  stop.store(true, std::memory_order_release);
  writer_thread.join();
  helper_thread.join();
  return true;
}

std::vector<uint16_t> RandomBf16(size_t n) {
  std::vector<uint16_t> out(n);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (auto& h : out) {
    const float f = normal(rng);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    h = uint16_t(bits >> 16);
  }
  return out;
}

void AddMedianRow(const std::string& name, std::vector<double> v, std::vector<Stat>* rows) {
  if (v.empty()) return;
  std::sort(v.begin(), v.end());
  rows->push_back({name, v[v.size() / 2], v[v.size() * 9 / 10]});
}

int Main(int argc, char** argv) {
  std::string model_name = "demo-deepseek-v3", json, backend_name = "cuda";
  int calls = 3000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--backend" && i + 1 < argc) {
      backend_name = argv[++i];
    } else if (a == "--model" && i + 1 < argc) {
      model_name = argv[++i];
    } else if (a == "--calls" && i + 1 < argc) {
      calls = std::max(10, std::atoi(argv[++i]));
    } else if (a == "--json" && i + 1 < argc) {
      json = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: backend_bench [--backend cuda|cpu] [--model NAME] [--calls N] "
                   "[--json FILE]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  const bool cuda = backend_name == "cuda";
  if (!cuda && backend_name != "cpu") {
    std::fprintf(stderr, "backend_bench: --backend must be cuda or cpu\n");
    return 2;
  }
  // The backends first: they set the device's scheduling flags before the context exists.
  std::string error;
  auto make = [&](bool graphs, bool zero_copy_input) -> std::unique_ptr<RouterBackend> {
    if (!cuda) return MakeCpuBackend(0);
    CudaBackendOptions options;
    options.graphs = graphs;
    options.zero_copy_input = zero_copy_input;
    return MakeCudaBackend(options, &error);
  };
  std::unique_ptr<RouterBackend> graphs = make(true, true);
  std::unique_ptr<RouterBackend> eager = graphs ? make(false, true) : nullptr;
  // The same with a copy-engine transfer of the hidden states (--zero_copy_input=false).
  std::unique_ptr<RouterBackend> copied = cuda && eager ? make(true, false) : nullptr;
  if (graphs == nullptr || eager == nullptr || (cuda && copied == nullptr)) {
    std::fprintf(stderr, "backend_bench: %s\n", error.c_str());
    return 1;
  }
  auto model = MakeDemoModel(model_name);
  if (!model.ok()) {
    std::fprintf(stderr, "backend_bench: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  for (RouterBackend* b : {graphs.get(), eager.get(), copied.get()}) {
    if (b == nullptr) continue;
    const auto s = b->LoadModel(*model);
    if (!s.ok()) {
      std::fprintf(stderr, "backend_bench: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  const RouterSpec& spec = model->spec;
  const int layers = model->num_layers();
  std::printf("backend_bench: %s on %s (%s), %d layers, %d calls per row\n", model_name.c_str(),
              graphs->device().c_str(), graphs->name().c_str(), layers, calls);

  std::vector<Stat> rows;
  if (cuda && !TimeCudaFloors(spec, calls, &rows)) {
    std::fprintf(stderr, "backend_bench: CUDA set-up failed\n");
    return 1;
  }
  // The service's own path as a lone unary request takes it (no gRPC context).
  MetricsRegistry registry;
  ServerMetrics metrics(&registry);
  Batcher batcher(graphs.get(), {}, &metrics);
  RouterService service(&batcher, graphs.get(), &metrics, kMaxTokens);
  service.SetModels(
      {{model_name, {model_name, spec, model->weight_dtype, layers, model->WeightBytes()}}});

  // A pool like the backend's, filled by cached stores (--pinned_input_streaming_stores=false).
  PinnedBuffer cached_region;
  std::unique_ptr<InputPool> cached_pool;
  if (cuda) {
    constexpr int kBlocks = 8;
    auto region = PinnedBuffer::Allocate(kBlocks * kInputBlockBytes);
    void* mapped = nullptr;
    if (!region.ok() || cudaHostGetDevicePointer(&mapped, region->get(), 0) != cudaSuccess) {
      std::fprintf(stderr, "backend_bench: no mapped page-locked memory\n");
      return 1;
    }
    cached_region = std::move(*region);
    std::memset(cached_region.get(), 0, kBlocks * kInputBlockBytes);
    cached_pool = std::make_unique<InputPool>(cached_region.as<char>(), mapped, kInputBlockBytes,
                                              kBlocks, /*streaming_stores=*/false);
  }

  for (int tokens : {1, 16}) {
    const std::vector<uint16_t> hidden = RandomBf16(size_t(tokens) * spec.hidden);
    std::vector<moe_router::v1::RouteRequest> requests(layers);
    for (int l = 0; l < layers; ++l) {
      auto& r = requests[l];
      r.set_model(model_name);
      r.set_layer(l);
      auto* t = r.mutable_hidden_states();
      t->set_dtype(moe_router::v1::DTYPE_BF16);
      t->add_shape(tokens);
      t->add_shape(spec.hidden);
      t->set_data(hidden.data(), hidden.size() * 2);
    }
    const std::string t_label = "t=" + std::to_string(tokens);
    int next = 0;
    std::vector<double> server_us;
    moe_router::v1::RouteRequest request;  // Submit takes its bytes: a fresh copy each call
    rows.push_back(Time(
        "service Submit() " + t_label + ", graphs", calls,
        [&] {
          bool ok = false;
          service.Submit(&request, nullptr,
                         [&](const absl::Status& s, const moe_router::v1::RouteResponse& r) {
                           ok = s.ok();  // a lone request on an idle batcher runs inline
                           if (ok) server_us.push_back(r.timing().server_us());
                         });
          next = (next + 1) % layers;
          return ok;
        },
        Gap::kNone, [&] { request = requests[next]; }));
    AddMedianRow("  server_us it reports", std::move(server_us), &rows);

    // The parse too, as the server does it: protobuf's (what gRPC does for a typed handler:
    // the data into a heap string) against ParseRouteRequest (the data into an input-pool
    // block the device reads in place). Each call parses one layer's serialization.
    std::vector<std::string> serialized(layers);
    for (int l = 0; l < layers; ++l) serialized[l] = requests[l].SerializeAsString();
    struct ParseVariant {
      const char* label;
      InputPool* pool;  // null: protobuf's own parse
    };
    std::vector<ParseVariant> parses = {{"protobuf parse", nullptr}};
    if (graphs->input_pool() != nullptr)
      parses.push_back({"parse into an input block", graphs->input_pool()});
    if (cached_pool != nullptr)
      parses.push_back({"parse into a block, cached stores", cached_pool.get()});
    for (const ParseVariant& variant : parses) {
      InputPool* pool = variant.pool;
      const bool pooled = pool != nullptr;
      rows.push_back(Time(std::string(variant.label) + " + Submit() " + t_label, calls, [&] {
        bool ok = false;
        auto done = [&](const absl::Status& s, const moe_router::v1::RouteResponse&) {
          ok = s.ok();
        };
        const std::string& bytes = serialized[next];
        next = (next + 1) % layers;
        if (pooled) {
          ParsedRouteRequest parsed;
          const absl::Status status = ParseRouteRequest(bytes, pool, &parsed);
          service.Submit(status, parsed.request, std::move(parsed.hidden), Clock::now(), nullptr,
                         done);
        } else {
          moe_router::v1::RouteRequest request;
          if (!request.ParseFromString(bytes)) return false;
          service.Submit(&request, nullptr, done);
        }
        return ok;
      }));
    }

    std::vector<int32_t> ids(size_t(tokens) * spec.top_k);
    std::vector<float> weights(ids.size());
    BatchIO io{hidden.data(), DType::kBF16, tokens, ids.data(), weights.data(), nullptr};
    struct Variant {
      RouterBackend* backend;
      const char* label;
      Gap gap;
      bool pooled_input = false;  // the hidden states in an input-pool block
    };
    std::vector<Variant> variants = {{graphs.get(), "graphs", Gap::kNone}};
    // The hidden states in an input-pool block: the stage-in reads them in place.
    HiddenBytes block;
    if (graphs->input_pool() != nullptr &&
        graphs->input_pool()->TryAcquire(hidden.size() * 2, &block)) {
      std::memcpy(block.mutable_data(), hidden.data(), hidden.size() * 2);
      variants.push_back({graphs.get(), "graphs, input in a pool block", Gap::kNone, true});
    }
    if (cuda)
      variants.insert(variants.end(),
                      {Variant{eager.get(), "no graphs", Gap::kNone},
                       Variant{copied.get(), "graphs, copy-engine input", Gap::kNone},
                       Variant{graphs.get(), "graphs, 150 us spin between", Gap::kSpin},
                       Variant{graphs.get(), "graphs, 150 us sleep between", Gap::kSleep}});
    for (const Variant& v : variants) {
      int layer = 0;
      std::vector<double> compute;
      compute.reserve(calls + 200);
      rows.push_back(Time(
          "backend Route() " + t_label + ", " + v.label, calls,
          [&] {
            BatchIO call = io;
            if (v.pooled_input) {
              call.hidden = block.data();
              call.hidden_device = block.device_view();
              call.hidden_device_bytes = block.device_readable_bytes();
            }
            auto r = v.backend->Route(model_name, layer, call);
            layer = (layer + 1) % layers;
            if (r.ok()) compute.push_back(*r * 1e6);
            return r.ok();
          },
          v.gap));
      AddMedianRow("  compute time it reports", std::move(compute), &rows);
    }
  }

  std::printf("%-48s %10s %10s\n", "stage", "p50 us", "p90 us");
  for (const auto& r : rows) std::printf("%-48s %10.1f %10.1f\n", r.name.c_str(), r.p50, r.p90);
  if (!json.empty()) {
    FILE* f = std::fopen(json.c_str(), "w");
    if (f == nullptr) return 1;
    std::fprintf(f, "{\"model\": \"%s\", \"device\": \"%s\", \"rows\": [", model_name.c_str(),
                 graphs->device().c_str());
    for (size_t i = 0; i < rows.size(); ++i)
      std::fprintf(f, "%s{\"stage\": \"%s\", \"p50_us\": %.2f, \"p90_us\": %.2f}", i ? ", " : "",
                   rows[i].name.c_str(), rows[i].p50, rows[i].p90);
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  return 0;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) { return moe::Main(argc, argv); }
