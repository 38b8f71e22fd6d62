#include "kernels/cuda_router.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cublaslt_gemm.h"
#include "kernels/cuda_device.h"
#include "kernels/decompose_k_layout.h"
#include "kernels/status_macros.h"

namespace moe::cuda {
namespace {

std::mutex cache_mu;

// The key's last line: a line appended later is a newer tuning of the key (one the caller
// refused, say, and tuned again), which must not stay hidden behind the first.
bool LookupCache(const std::string& file, const std::string& key, DecomposeKConfig* c) {
  std::lock_guard<std::mutex> lock(cache_mu);
  std::ifstream in(file);
  std::string k;
  std::string line;
  bool found = false;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    int mainloop, tiles, splits, cluster, polled, pdl_cooperative, dedicated_routers, staged,
        one_cta_per_sm, router_pairs, after_gemm, gemm_tile, gemm_tile_m, gemm_tma, gemm_cublas;
    if (!(fields >> k >> mainloop >> tiles >> splits >> cluster >> polled >> pdl_cooperative >>
          dedicated_routers >> staged >> one_cta_per_sm >> router_pairs >> after_gemm >>
          gemm_tile >> gemm_tile_m >> gemm_tma >> gemm_cublas) ||
        k != key)
      continue;
    c->mainloop = static_cast<Mainloop>(mainloop);
    c->token_tiles = tiles;
    c->k_splits = splits;
    c->cluster = cluster;
    c->polled = polled != 0;
    c->pdl_cooperative = pdl_cooperative != 0;
    c->dedicated_routers = dedicated_routers != 0;
    c->staged = staged != 0;
    c->pdl_one_cta_per_sm = one_cta_per_sm != 0;
    c->staged_router_pairs = router_pairs != 0;
    c->route_after_gemm = after_gemm != 0;
    c->gemm_tile = gemm_tile;
    c->gemm_tile_m = gemm_tile_m;
    c->gemm_tma = gemm_tma != 0;
    c->gemm_cublas = gemm_cublas != 0;
    found = true;
  }
  return found;
}

void StoreCache(const std::string& file, const std::string& key, const DecomposeKConfig& c) {
  std::lock_guard<std::mutex> lock(cache_mu);
  std::ofstream out(file, std::ios::app);
  out << key << " " << int(c.mainloop) << " " << c.token_tiles << " " << c.k_splits << " "
      << c.cluster << " " << int(c.polled) << " " << int(c.pdl_cooperative) << " "
      << int(c.dedicated_routers) << " " << int(c.staged) << " " << int(c.pdl_one_cta_per_sm) << " "
      << int(c.staged_router_pairs) << " " << int(c.route_after_gemm) << " " << c.gemm_tile << " "
      << c.gemm_tile_m << " " << int(c.gemm_tma) << " " << int(c.gemm_cublas) << "\n";
}

}  // namespace

std::vector<DecomposeKConfig> AutotuneCandidates(const RouteProblem& p,
                                                 const DecomposeKDevice& device, bool pdl) {
  const int sm_count = device.sm_count;
  std::vector<DecomposeKConfig> out;
  auto add = [&](const DecomposeKConfig& c) {
    if (!CanRouteDecomposeKOn(p, c, device).ok()) return;
    for (const auto& o : out)
      if (SameTunedConfig(o, c)) return;
    out.push_back(c);
  };
  const int max_splits = std::max(1, (p.spec.hidden + 255) / 256);
  const DecomposeKConfig base = ChooseDecomposeKConfigFor(p, device, /*allow_polled=*/false);
  DecomposeKConfig counter = base;
  counter.cluster = 0;
  for (int f : {1, 2, 4}) {
    for (bool up : {false, true}) {
      DecomposeKConfig c = counter;
      c.k_splits = up ? counter.k_splits * f : std::max(1, counter.k_splits / f);
      c.k_splits = std::min(c.k_splits, max_splits);
      add(c);
    }
  }
  if (base.mainloop != Mainloop::kTensorCore) return out;
  for (int cluster : {4, 8, 16}) {
    DecomposeKConfig c = base;
    c.cluster = c.k_splits = cluster;
    add(c);
  }
  // Clusters whose rank 0 routes (routers of up to 128 experts): 8-token chunks, every
  // split count whose cluster fits (CanRouteDecomposeK). From 16 tokens too: the chunks
  // are then routed by several clusters at once (H200, Mixtral t=16: 2.70 us against 3.83
  // with 16-token chunks).
  for (int splits : {2, 4, 8, 16}) {
    DecomposeKConfig c = base;
    c.token_tiles = 1;
    c.cluster = c.k_splits = splits;
    add(c);
  }
  // Split counts around the polled rule's own count, not the heuristic's cut for decode
  // batches (which is built from the same S/4 and one-pass count as candidates below).
  DecomposeKConfig polled =
      ChooseDecomposeKConfigFor(p, device, /*allow_polled=*/true, /*cut_decode_splits=*/false,
                                /*allow_rank_zero_routes=*/false);
  // The staged tiles' candidates are added below; here the 32-expert polled CTAs.
  if (polled.staged) polled = ChoosePolledConfig(p, sm_count, polled.token_tiles);
  polled.pdl_cooperative = false;  // both launches are candidates under PDL (below)
  polled.pdl_one_cta_per_sm = false;
  if (polled.polled) {
    // Below 128 tokens also down to an eighth of the heuristic's splits, and the one-pass
    // count: fewer partials for the routers to gather, and under PDL each warp's weights
    // still all loaded before the wait. H200, same run, per call under PDL: Mixtral t=1
    // 2.94 -> 2.62 us (4 splits against 16), Llama 4 Scout t=1 3.76 -> 2.65, Kimi K2 t=1
    // 5.85 -> 5.32 (bench/NOTES.md, session 23). A sixteenth was never chosen. At 128
    // tokens the tuner's graph ranked DeepSeek-V2-Lite's 4-split config within 0.1 us of
    // the staged one, and router_bench then measured it 0.5 us slower, in one run of two.
    std::vector<int> split_counts = {polled.k_splits / 2, polled.k_splits, polled.k_splits * 2};
    if (p.tokens < 128) {
      for (int splits :
           {polled.k_splits / 8, polled.k_splits / 4, PolledOnePassSplits(p, polled.token_tiles)})
        split_counts.push_back(splits);
    }
    for (int splits : split_counts) {
      DecomposeKConfig c = polled;
      c.k_splits = std::max(1, splits);
      add(c);
    }
    // From 9 tokens also two token tiles at the split count whose warps take the pass of 2
    // K steps (PolledShortPassSplits): Qwen3-30B t=16 at 4 splits, Qwen3-235B at 8.
    if (p.tokens > 8 && p.tokens < 128) {
      DecomposeKConfig c = polled;
      c.token_tiles = 2;
      c.k_splits = PolledShortPassSplits(p);
      add(c);
    }
  } else {
    // Where the heuristic did not take the polled reduction (past 128 tokens, or a
    // router's logits over the limit at its token tiling) other tilings may still fit.
    for (int tiles : {2, 4}) add(ChoosePolledConfig(p, sm_count, tiles));
  }
  if (p.tokens > 8) {
    for (const DecomposeKConfig& from : {base, polled}) {
      for (int tiles : {1, 2, 4}) {
        DecomposeKConfig c = from;
        c.token_tiles = tiles;
        add(c);
      }
    }
  }
  // From 32 tokens: the staged 64 x 64 tiles at about one CTA per SM, and with 3/4 and
  // half the splits (fewer partials to gather, more stages a CTA).
  if (p.tokens >= 32) {
    const DecomposeKConfig staged = ChooseStagedConfig(p, sm_count);
    for (int splits : {staged.k_splits, staged.k_splits * 3 / 4, staged.k_splits / 2})
      add(ChooseStagedConfig(p, sm_count, std::max(1, splits)));
  }
  // From 64 tokens: routing after the staged-tile GEMM, two launches (route_after_gemm), with
  // the GEMM's three tile shapes at the GEMM heuristic's split count. Where no one-launch
  // config holds a large router's batch (DeepSeek-V3 and Kimi K2 at 256 tokens: the staged
  // 64 x 64 tiles cannot all be resident, and the tuner's best one-launch configs took 15.76
  // and 25.20 us against cuBLAS's GEMM alone at 8.36 and 9.58; H100, bench/NOTES.md session
  // 68).
  if (p.tokens >= 64) {
    for (const auto& [tile, tile_m] : {std::pair{64, 0}, std::pair{128, 64}, std::pair{128, 0}})
      add(ChooseRouteAfterGemmConfig(p, device, tile, tile_m));
    // And from 128 tokens cuBLASLt's GEMM where it loads: DeepSeek-V3 t=256 10.48 us a call
    // against the 64-tile's 13.17, Kimi K2 12.59 against 19.06 (H100, session 68).
    if (p.tokens >= 128) add(ChooseRouteAfterCublasLtConfig());
  }
  // The heuristic's own config (the C ABI's, and the server's without tuning), so that a
  // tuned plan is never one the heuristic beats: session 35's H200 sweep had the
  // heuristic's staged 16 splits at GLM-4.5 t=128 (8.45 us) and Kimi K2 t=64 (8.81) ahead
  // of every staged count the tuner timed (8.74, 9.12). Its launch flag as the others':
  // both launches are added below.
  DecomposeKConfig heuristic = ChooseDecomposeKConfigFor(p, device);
  heuristic.pdl_cooperative = false;
  heuristic.pdl_one_cta_per_sm = false;
  add(heuristic);
  // Every staged candidate also with router pairs where they route (add checks), and
  // without (the heuristic's may have them): with, half the CTAs of a full chunk's row
  // route and the others free their SMs for the next launch once they have published.
  const size_t before_pairs = out.size();
  for (size_t i = 0; i < before_pairs; ++i) {
    if (!out[i].staged) continue;
    DecomposeKConfig c = out[i];
    c.staged_router_pairs = !c.staged_router_pairs;
    add(c);
  }
  // Every polled candidate also with and without dedicated router CTAs (with: a split
  // fewer where the routers would not fit on the SMs otherwise).
  const size_t before_dedicated = out.size();
  for (size_t i = 0; i < before_dedicated; ++i) {
    if (!out[i].polled) continue;
    DecomposeKConfig c = out[i];
    c.dedicated_routers = false;
    add(out[i].dedicated_routers ? c : WithDedicatedRouters(p, c, sm_count));
  }
  if (pdl) {
    const size_t n = out.size();
    for (size_t i = 0; i < n; ++i) {
      if (!out[i].polled) continue;
      DecomposeKConfig c = out[i];
      c.pdl_cooperative = true;
      add(c);
    }
    // And the 32-expert polled CTAs kept to one CTA per SM, both launches (the cost and the
    // gain depend on the grid: decompose_k_polled.cu).
    const size_t launches = out.size();
    for (size_t i = 0; i < launches; ++i) {
      if (!out[i].polled || out[i].staged) continue;
      DecomposeKConfig c = out[i];
      c.pdl_one_cta_per_sm = true;
      add(c);
    }
  }
  return out;
}

const char* ConfigSourceName(ConfigSource source) {
  switch (source) {
    case ConfigSource::kHeuristic:
      return "heuristic";
    case ConfigSource::kAutotuned:
      return "autotuned";
    case ConfigSource::kCache:
      return "cache";
    case ConfigSource::kGiven:
      return "given";
  }
  return "unknown";
}

bool SameTunedConfig(const DecomposeKConfig& a, const DecomposeKConfig& b) {
  return a.mainloop == b.mainloop && a.token_tiles == b.token_tiles && a.k_splits == b.k_splits &&
         a.cluster == b.cluster && a.polled == b.polled && a.pdl_cooperative == b.pdl_cooperative &&
         a.dedicated_routers == b.dedicated_routers && a.staged == b.staged &&
         a.pdl_one_cta_per_sm == b.pdl_one_cta_per_sm &&
         a.staged_router_pairs == b.staged_router_pairs &&
         a.route_after_gemm == b.route_after_gemm && a.gemm_tile == b.gemm_tile &&
         a.gemm_tile_m == b.gemm_tile_m && a.gemm_tma == b.gemm_tma &&
         a.gemm_cublas == b.gemm_cublas;
}

// "v14": the config gained route_after_gemm and the GEMM's fields (tile, cuBLASLt), new
// candidates from 64 tokens (session 68): plans cached by older builds never timed them. "v13": the
// key names the routing (top_k, scoring, order, biases, groups, renormalisation) as well as the
// shape: two models of one shape but different routing had shared a line, though the epilogue's
// cost, and which configs may route at all (staged_router_pairs), differ by routing; one whose spec
// refused the other's config was tuned again at every start. "v12": the config gained
// staged_router_pairs, a new candidate (session 66): plans cached by older builds never timed it.
// "v11": the heuristic's configs at 17-64 tokens (a candidate always) moved to two token tiles with
// dedicated routers, launched one CTA per SM (session 52): plans cached by older builds never timed
// them. "v10": a new candidate, the two-tile polled kernel at the split count that gives a warp at
// most two K steps (PolledShortPassSplits, session 51), which runs a pass of two steps, and the
// heuristic's configs at 9-16 tokens (a candidate always) moved to it: plans cached by older builds
// never timed them. "v9": the config gained pdl_one_cta_per_sm (session 36), and the heuristic's
// decode configs changed with it; "v8": cluster configs of routers up to 128 experts at 8-token
// chunks run the kernel whose rank 0 routes, with clusters across the expert blocks (session 27),
// so a cached cluster config means another kernel, or is no longer valid; "v7": more polled split
// counts and timings with weights from HBM (session 23), so a cache written by an older build holds
// choices from a smaller, L2-flattered field and is tuned again once; v6: the one-token epilogue
// changed (session 17), so timings cached by older builds no longer rank the configs; v5: the
// config gained staged (v4: dedicated_routers, v3: pdl_cooperative, v2: the polled reduction).
// Older cache lines no longer match.
std::string AutotuneCacheKey(const RouteProblem& p, const std::string& device_name, int sm_count,
                             bool pdl) {
  std::string device = device_name.empty() ? "unknown" : device_name;
  for (char& c : device)  // one whitespace-free field of the cache line
    if (std::isspace(static_cast<unsigned char>(c)) || c == ':') c = '_';
  const RouterSpec& s = p.spec;
  return absl::StrCat("v14:", device, ":sm", sm_count, ":t", p.tokens, ":e", s.experts, ":h",
                      s.hidden, ":x", DTypeName(p.hidden_dtype), ":w", DTypeName(p.weight_dtype),
                      ":k", s.top_k, ":", ScoringName(s.scoring), ":", RoutingOrderName(s.order),
                      ":b", int(s.has_router_bias), int(s.has_correction_bias), ":g", s.n_group,
                      "/", s.topk_group, "/", s.group_score_topk, ":r", int(s.renormalize),
                      pdl ? ":pdl" : "");
}

int TunedGraphLaunches(const AutotuneOptions& tune) {
  return std::clamp(std::max(1, tune.rotate_layers), 4, 64);
}

absl::StatusOr<DeviceBuffer> AllocateL2Flush(const AutotuneOptions& tune) {
  // Weights that fit in L2 over the graph's launches would stay there from one replay to
  // the next and flatter configs with fewer CTAs pulling from HBM: on the H200 the graph's
  // 64 launches over Mixtral's 64 KB layers (4 MB) ranked an 8-split polled config first
  // at 128 tokens, 5.16 us a call in router_bench with weights from HBM against 4.63 for
  // the cluster config. So the replays are then preceded by a write of twice the L2's
  // size, which evicts them as a server's other kernels would. One buffer (120 MB on the
  // H200) serves all of a plan's candidates.
  int device = 0, l2_bytes = 0;
  CUDA_RETURN_STATUS_IF_ERROR(cudaGetDevice(&device));
  CUDA_RETURN_STATUS_IF_ERROR(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
  const int layers = std::max(1, tune.rotate_layers);
  const size_t graph_weight_bytes =
      size_t(std::min(layers, TunedGraphLaunches(tune))) * tune.layer_stride_bytes;
  if (graph_weight_bytes >= 2 * size_t(l2_bytes)) return DeviceBuffer();
  return DeviceBuffer::Allocate(2 * size_t(l2_bytes));
}

absl::StatusOr<float> TimeConfigMicros(const RouteProblem& problem, const RouteArgs& args,
                                       const DecomposeKConfig& config, const AutotuneOptions& tune,
                                       const DeviceBuffer& l2_flush, cudaStream_t stream) {
  // One CUDA graph of launches over the rotating layers, replayed: per-call time as the
  // server runs it (a kernel in a graph), without the ~1 us jitter of timing single eager
  // launches, which decided between close candidates. Captured on a private stream
  // (the legacy default stream cannot capture) that first waits for `stream`.
  ASSIGN_OR_RETURN(auto ws, DeviceBuffer::Allocate(DecomposeKWorkspaceBytes(problem, config)));
  ASSIGN_OR_RETURN(auto own, MakeStream());
  ASSIGN_OR_RETURN(auto ready, MakeEvent(/*timing=*/false));
  cudaStream_t s = own.get();
  CUDA_RETURN_STATUS_IF_ERROR(cudaEventRecord(ready.get(), stream));
  CUDA_RETURN_STATUS_IF_ERROR(cudaStreamWaitEvent(s, ready.get(), 0));
  CUDA_RETURN_STATUS_IF_ERROR(ResetDecomposeKWorkspace(ws.get(), problem, config, s));
  const int layers = std::max(1, tune.rotate_layers);
  const int launches = TunedGraphLaunches(tune);
  // Relaxed: a candidate's first launch may make a one-time cudaFuncSetAttribute call (the
  // 16-CTA cluster opt-in), which a stricter mode could refuse and the refusal be cached.
  CUDA_RETURN_STATUS_IF_ERROR(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
  cudaError_t err = cudaSuccess;
  for (int l = 0; l < launches && err == cudaSuccess; ++l) {
    RouteArgs layer_args = args;  // weights from HBM, as in service
    layer_args.weight =
        static_cast<const char*>(args.weight) + size_t(l % layers) * tune.layer_stride_bytes;
    err = LaunchDecomposeKRouter(problem, layer_args, config, ws.get(), ws.bytes(), s, tune.pdl);
  }
  cudaGraph_t raw_graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(s, &raw_graph);
  CudaGraph graph(raw_graph);
  CUDA_RETURN_STATUS_IF_ERROR(err != cudaSuccess ? err : end);
  cudaGraphExec_t raw_exec;
  CUDA_RETURN_STATUS_IF_ERROR(cudaGraphInstantiate(&raw_exec, graph.get(), 0));
  CudaGraphExec exec(raw_exec);
  ASSIGN_OR_RETURN(auto start, MakeEvent());
  ASSIGN_OR_RETURN(auto stop, MakeEvent());
  std::vector<float> times;
  for (int i = 0; i < tune.iterations + 2; ++i) {
    if (l2_flush.bytes() > 0)
      CUDA_RETURN_STATUS_IF_ERROR(cudaMemsetAsync(l2_flush.get(), i & 0xff, l2_flush.bytes(), s));
    CUDA_RETURN_STATUS_IF_ERROR(cudaEventRecord(start.get(), s));
    CUDA_RETURN_STATUS_IF_ERROR(cudaGraphLaunch(exec.get(), s));
    CUDA_RETURN_STATUS_IF_ERROR(cudaEventRecord(stop.get(), s));
    CUDA_RETURN_STATUS_IF_ERROR(cudaEventSynchronize(stop.get()));
    float ms = 0;
    CUDA_RETURN_STATUS_IF_ERROR(cudaEventElapsedTime(&ms, start.get(), stop.get()));
    if (i >= 2) times.push_back(ms * 1000.0f / launches);  // two warm-up replays
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

absl::StatusOr<std::unique_ptr<CudaRouterPlan>> CudaRouterPlan::Create(const RouteProblem& problem,
                                                                       int sm_count,
                                                                       const AutotuneOptions& tune,
                                                                       const RouteArgs* tune_args,
                                                                       cudaStream_t stream) {
  DecomposeKConfig config = ChooseDecomposeKConfig(problem, sm_count);
  RETURN_IF_ERROR(CanRouteDecomposeK(problem, config));
  ConfigSource source = ConfigSource::kHeuristic;
  float tuned_micros = 0;
  if (tune.enabled && tune_args != nullptr) {
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) cudaGetLastError();
    const std::string key = AutotuneCacheKey(problem, ProbeDevice(device).name, sm_count, tune.pdl);
    DecomposeKConfig cached;
    if (!tune.cache_file.empty() && LookupCache(tune.cache_file, key, &cached) &&
        CanRouteDecomposeK(problem, cached).ok()) {
      config = cached;
      source = ConfigSource::kCache;
    } else {
      float best = 1e30f;
      ASSIGN_OR_RETURN(const DeviceBuffer l2_flush, AllocateL2Flush(tune));
      for (const auto& c :
           AutotuneCandidates(problem, CurrentDecomposeKDevice(sm_count), tune.pdl)) {
        // A candidate the device cannot run (e.g. a cluster too large to schedule) is
        // skipped, not fatal; clear the error it left.
        auto us = TimeConfigMicros(problem, *tune_args, c, tune, l2_flush, stream);
        if (!us.ok()) {
          cudaGetLastError();
          continue;
        }
        if (tune.timings != nullptr) tune.timings->push_back({c, *us});
        if (*us < best) {
          best = *us;
          config = c;
          source = ConfigSource::kAutotuned;
          tuned_micros = *us;
        }
      }
      if (!tune.cache_file.empty()) StoreCache(tune.cache_file, key, config);
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<CudaRouterPlan> plan, CreateWithConfig(problem, config, stream));
  plan->config_source_ = source;
  plan->tuned_micros_ = tuned_micros;
  return plan;
}

absl::StatusOr<std::unique_ptr<CudaRouterPlan>> CudaRouterPlan::CreateWithConfig(
    const RouteProblem& problem, const DecomposeKConfig& config, cudaStream_t stream) {
  RETURN_IF_ERROR(CanRouteDecomposeK(problem, config));
  std::unique_ptr<CudaRouterPlan> plan(new CudaRouterPlan());
  plan->problem_ = problem;
  plan->config_ = config;
  size_t bytes = DecomposeKWorkspaceBytes(problem, config);
  if (config.route_after_gemm && config.gemm_cublas) {
    size_t need = 0;
    CUDA_RETURN_STATUS_IF_ERROR(CublasLtGemmWorkspaceNeed(RouterGemmProblem(problem), &need));
    bytes = RouteAfterCublasLtOffset(problem) + need;
  }
  ASSIGN_OR_RETURN(plan->workspace_, DeviceBuffer::Allocate(bytes));
  CUDA_RETURN_STATUS_IF_ERROR(
      ResetDecomposeKWorkspace(plan->workspace_.get(), problem, config, stream));
  CUDA_RETURN_STATUS_IF_ERROR(cudaStreamSynchronize(stream));
  return plan;
}

absl::Status CudaRouterPlan::Route(const RouteArgs& args, cudaStream_t stream, bool pdl) {
  RETURN_IF_ERROR(CheckRouteArgs(problem_, args));
  return CUDA_STATUS(Launch(args, stream, pdl));
}

}  // namespace moe::cuda
