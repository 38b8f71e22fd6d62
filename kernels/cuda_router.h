// CudaRouterPlan: the fused kernel for one (spec, token count, dtypes) with its chosen
// config and its own workspace — what the server's executor and the benchmarks hold.
// Create() picks the config by the heuristic, or by timing candidates on the device
// (autotune), optionally remembered in a cache file. Route() is stream-ordered and
// graph-capturable. Not thread-safe: one plan per stream.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cuda_raii.h"
#include "kernels/decompose_k_router.h"

namespace moe::cuda {

// One candidate the autotuner timed: its config and its per-call median, microseconds.
struct CandidateTiming {
  DecomposeKConfig config;
  float us = 0;
};

// Whether two configs are the same candidate: equal in every field the autotuner varies
// (and the cache file stores).
bool SameTunedConfig(const DecomposeKConfig& a, const DecomposeKConfig& b);

struct AutotuneOptions {
  bool enabled = false;
  std::string cache_file;  // empty: no cache
  int iterations = 20;     // graph replays per candidate
  // Timing rotates over this many layers' weights, `layer_stride_bytes` apart from the
  // weight pointer, so candidates are timed with weights coming from HBM, not L2.
  int rotate_layers = 1;
  size_t layer_stride_bytes = 0;
  // Time candidates launched with Programmatic Dependent Launch, for callers that launch
  // so (each launch then streams its weights while the previous one reduces and routes):
  // the ranking differs, by ~0.5 us between configs that tie without it. The server
  // tunes so for the batches its stage-in kernel feeds (launched under PDL behind it), and
  // without for the others. Cached under its own key.
  bool pdl = false;
  // Diagnostics (router_bench --candidates): when set, every candidate timed is appended
  // here, the chosen one among them. Nothing is appended when the cache file answers.
  std::vector<CandidateTiming>* timings = nullptr;
};

// What the autotuner times for `problem` on `device` (Create: the current device, with
// the SM count it was given): around the heuristic's arrival-counter config, the cluster
// sizes, the polled reduction's split counts and, past 8 tokens, the token tilings, and
// the heuristic's own config; every polled candidate also with dedicated routers, and for
// plans launched with PDL also launched cooperatively. Only configs the device can run
// (CanRouteDecomposeKOn), none twice (SameTunedConfig). Asks the CUDA runtime nothing.
std::vector<DecomposeKConfig> AutotuneCandidates(const RouteProblem& problem,
                                                 const DecomposeKDevice& device, bool pdl);

// The autotune cache's key for a problem on a device: the device's name (an H100 and an
// H200 both have 132 SMs, and a config tuned on one is not the other's best), its SM
// count, the problem (shape, dtypes and the routing: the epilogue's cost and which configs
// may route differ by routing), and whether launches use PDL. One whitespace-free field.
std::string AutotuneCacheKey(const RouteProblem& problem, const std::string& device_name,
                             int sm_count, bool pdl);

// Where a plan's config came from.
enum class ConfigSource {
  kHeuristic,  // ChooseDecomposeKConfig (autotuning off, or no weights to time)
  kAutotuned,  // the fastest candidate timed on the device
  kCache,      // a config the cache file remembered from an earlier tuning
  kGiven,      // CreateWithConfig (e.g. another plan's tuned config)
};
// "heuristic", "autotuned", "cache", "given".
const char* ConfigSourceName(ConfigSource source);

class CudaRouterPlan {
 public:
  // The weights pointer is needed only when autotuning (candidates run on real data).
  static absl::StatusOr<std::unique_ptr<CudaRouterPlan>> Create(
      const RouteProblem& problem, int sm_count, const AutotuneOptions& tune = {},
      const RouteArgs* tune_args = nullptr, cudaStream_t stream = nullptr);

  // A plan with a known config (e.g. one another plan of the same problem was tuned to):
  // checks it and allocates the workspace.
  static absl::StatusOr<std::unique_ptr<CudaRouterPlan>> CreateWithConfig(
      const RouteProblem& problem, const DecomposeKConfig& config, cudaStream_t stream = nullptr);

  absl::Status Route(const RouteArgs& args, cudaStream_t stream, bool pdl = false);
  cudaError_t Launch(const RouteArgs& args, cudaStream_t stream, bool pdl = false) {
    return LaunchDecomposeKRouter(problem_, args, config_, workspace_.get(), workspace_.bytes(),
                                  stream, pdl);
  }
  const DecomposeKConfig& config() const { return config_; }
  ConfigSource config_source() const { return config_source_; }
  // The chosen candidate's median per call when this plan timed the candidates, else 0.
  float tuned_micros() const { return tuned_micros_; }
  void* workspace() const { return workspace_.get(); }
  // DecomposeKWorkspaceBytes, except for a config routing after cuBLASLt's GEMM: its logits
  // and what cuBLASLt's algorithm for the problem asks for (CublasLtGemmWorkspaceNeed), not
  // the 32 MiB that would let it choose from all (H100: 1-2 MiB for DeepSeek-V3 and Kimi K2
  // at 256 tokens).
  size_t workspace_bytes() const { return workspace_.bytes(); }
  const RouteProblem& problem() const { return problem_; }

 private:
  CudaRouterPlan() = default;
  RouteProblem problem_;
  DecomposeKConfig config_;
  ConfigSource config_source_ = ConfigSource::kGiven;
  float tuned_micros_ = 0;
  DeviceBuffer workspace_;
};

// The number of launches in TimeConfigMicros' graph.
int TunedGraphLaunches(const AutotuneOptions& tune);

// What TimeConfigMicros writes before each replay to evict the graph's weights from L2:
// twice the L2, or nothing where the graph's weights alone are that large.
absl::StatusOr<DeviceBuffer> AllocateL2Flush(const AutotuneOptions& tune);

// Times `config` on `args`: per call, the median of tune.iterations replays of a CUDA
// graph of launches over the rotating layers `tune` describes (CUDA events), each after a
// write of `l2_flush` (AllocateL2Flush), after the work already on `stream`; used by the
// autotuner.
absl::StatusOr<float> TimeConfigMicros(const RouteProblem& problem, const RouteArgs& args,
                                       const DecomposeKConfig& config, const AutotuneOptions& tune,
                                       const DeviceBuffer& l2_flush, cudaStream_t stream);

}  // namespace moe::cuda
