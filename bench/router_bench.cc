// router_bench: per-call latency of the fused Decompose-K router vs cuBLAS, measured as
// CUDA-graph replays of L launches over L different layers' weights (L chosen so the
// weights exceed 3x the L2 cache: every call reads its weights from HBM). Median of many
// replays, CUDA events, warmed up. Prints a table; --json writes every number.
//
//   router_bench [--json FILE] [--replays N] [--quick] [--filter SUBSTR,...]
//                [--tokens N,...]   (the router rows' token counts, 1..256; default 1,4,16,64,
//                128, the table: 256 is the server's largest bucket)
//                [--timeline] [--pdl_timeline [--sweep_splits N,...]]   (diagnostics:
//                router_timelines.h)
//                [--gemm_timeline]   (diagnostics: gemm_timeline.h)
//                [--candidates]   (every config the autotuner timed, not only the winner;
//                with --pdl_timeline its five fastest for each shape)
//                [--gemm_cp_async]   (the staged-tile GEMMs load by cp.async, not the TMA:
//                an A/B of the two in one binary)
//                [--gemm_tile 16|32|64|128|64x128]   (every GEMM row takes the staged-tile kernel
//                with this tile, rows of A x rows of B, the 16-row rows too (which the heuristic
//                gives the router kernels), its splits chosen for it as the heuristic would: an
//                A/B of tile choices)
//                [--gemm_splits N]   (the staged-tile GEMM rows take about N splits: as many
//                as leave no split empty, at most two CTAs an SM)
//                [--gemm_shapes MxNxK,...]   (these bf16 GEMMs instead of the M = N table)
//                [--gemm_decompose_k]   (the GEMM rows the heuristic hands to cuBLASLt take
//                the best Decompose-K config instead: the A/B behind GemmTakesCublas)
//                [--host_launch_cost]   (the host time of one eager launch call, TMA and
//                cp.async stages: host_launch_cost.h)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "bench/bench_util.h"
#include "bench/empty_kernel.h"
#include "bench/gemm_timeline.h"
#include "bench/host_launch_cost.h"
#include "bench/router_timelines.h"
#include "kernels/config_description.h"
#include "kernels/cublas_router.h"
#include "kernels/cuda_device.h"
#include "kernels/cuda_raii.h"
#include "kernels/cuda_router.h"
#include "kernels/decompose_k_gemm_tile.h"
#include "kernels/gemm_launch.h"

namespace moe::bench {
namespace {

int g_replays = 50;

// Median microseconds per launch of `enqueue_layer(l)` for l in [0, layers), captured once
// into a graph and replayed.
float TimePerCall(int layers, const std::function<void(int, cudaStream_t)>& enqueue_layer,
                  cudaStream_t stream) {
  const CudaGraphExec exec = CaptureWarmGraph(layers, stream, enqueue_layer);
  auto start = Must(MakeEvent()), stop = Must(MakeEvent());
  std::vector<float> us;
  for (int r = 0; r < g_replays; ++r) {
    CHECK_CUDA(cudaEventRecord(start.get(), stream));
    CHECK_CUDA(cudaGraphLaunch(exec.get(), stream));
    CHECK_CUDA(cudaEventRecord(stop.get(), stream));
    CHECK_CUDA(cudaEventSynchronize(stop.get()));
    float ms;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start.get(), stop.get()));
    us.push_back(ms * 1000.0f / layers);
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

// Device-to-device copy bandwidth (bytes read + written), GB/s.
double CopyBandwidth(cudaStream_t stream) {
  const size_t bytes = size_t(1) << 30;
  auto a = Must(DeviceBuffer::Allocate(bytes)), b = Must(DeviceBuffer::Allocate(bytes));
  CHECK_CUDA(cudaMemset(a.get(), 1, bytes));
  auto start = Must(MakeEvent()), stop = Must(MakeEvent());
  std::vector<float> ms_list;
  for (int i = 0; i < 12; ++i) {
    CHECK_CUDA(cudaEventRecord(start.get(), stream));
    CHECK_CUDA(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, stream));
    CHECK_CUDA(cudaEventRecord(stop.get(), stream));
    CHECK_CUDA(cudaEventSynchronize(stop.get()));
    float ms;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start.get(), stop.get()));
    if (i >= 2) ms_list.push_back(ms);
  }
  std::sort(ms_list.begin(), ms_list.end());
  return 2.0 * bytes / (ms_list[ms_list.size() / 2] * 1e-3) / 1e9;
}

// What the autotuner measured for one candidate config of a row: the per-call median in
// its own graph of the row's layers, without and with PDL (< 0: not timed in that mode).
struct CandidateRow {
  std::string config;
  float nopdl_us = -1, pdl_us = -1;
};

struct Row {
  std::string shape;
  int layers;
  double bytes;
  float fused_us, fused_nopdl_us, cublas_gemm_us, cublas_route_us, empty_us;
  std::string config;
  std::vector<CandidateRow> candidates;  // --candidates only
};

// --gemm_shapes: "MxNxK" as a bf16 GEMM the C ABI accepts.
absl::StatusOr<cuda::GemmProblem> ParseGemmShape(absl::string_view text) {
  const std::vector<absl::string_view> parts = absl::StrSplit(text, 'x');
  cuda::GemmProblem p;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &p.m) || !absl::SimpleAtoi(parts[1], &p.n) ||
      !absl::SimpleAtoi(parts[2], &p.k))
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not MxNxK"));
  const absl::Status ok = cuda::CanGemmDecomposeK(p);
  if (!ok.ok()) return absl::InvalidArgumentError(absl::StrCat("'", text, "': ", ok.message()));
  return p;
}

// --gemm_splits: about `wanted` splits of a GEMM's staged tiles, at most two CTAs an SM
// over its output tiles (a 64-tile CTA fits twice; they meet at a barrier, so all must be
// resident: a grid that cannot be fails its cooperative launch, and router_bench with it),
// adjusted as TileGemmSplits does so that every split owns at least one 64-wide K stage.
int ForcedTileGemmSplits(const cuda::GemmProblem& p, const cuda::DecomposeKConfig& cfg, int wanted,
                         int sm_count) {
  cuda::TileGemmShape one_split{p.m, p.n, p.k, cfg.gemm_tile, /*k_splits=*/1};
  one_split.tile_m = cfg.gemm_tile_m;
  const int tiles = cuda::TileGemmCtas(one_split);  // output tiles
  const int total = (p.k + 63) / 64;                // 64-wide K stages
  const int splits = std::min({wanted, std::max(1, 2 * sm_count / tiles), total});
  const int per = (total + splits - 1) / splits;
  return (total + per - 1) / per;
}

// Both modes' timings merged by config, in the order the autotuner tried them.
std::vector<CandidateRow> MergeCandidates(const std::vector<cuda::CandidateTiming>& nopdl,
                                          const std::vector<cuda::CandidateTiming>& pdl) {
  std::vector<CandidateRow> out;
  auto entry = [&](const std::string& config) -> CandidateRow& {
    for (CandidateRow& c : out)
      if (c.config == config) return c;
    out.push_back({config});
    return out.back();
  };
  for (const auto& t : nopdl) entry(cuda::DescribeDecomposeKConfig(t.config)).nopdl_us = t.us;
  for (const auto& t : pdl) entry(cuda::DescribeDecomposeKConfig(t.config)).pdl_us = t.us;
  return out;
}

int BenchMain(int argc, char** argv) {
  std::string json_path;
  bool quick = false;
  std::string filter;  // comma-separated substrings of the row names; empty: every row
  bool timeline = false, pdl_timeline = false, gemm_timeline = false, candidates = false;
  bool gemm_cp_async = false, host_launch_cost = false, gemm_decompose_k = false;
  int gemm_tile = 0;    // --gemm_tile: force the staged tiles' edge; 0 the heuristic's
  int gemm_tile_m = 0;  // --gemm_tile 64x128: rows of A (64) against 128 of B
  int gemm_splits = 0;  // --gemm_splits: force the staged-tile GEMMs' S; 0 the heuristic's
  std::vector<cuda::GemmProblem> gemm_shapes;  // --gemm_shapes; empty: the M = N table
  std::vector<int> sweep_splits;               // --sweep_splits: extra --pdl_timeline configs
  std::vector<int> token_list = {1, 4, 16, 64, 128};  // --tokens: the router rows' counts
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else if (!std::strcmp(argv[i], "--replays") && i + 1 < argc)
      g_replays = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--filter") && i + 1 < argc)
      filter = argv[++i];
    else if (!std::strcmp(argv[i], "--timeline"))
      timeline = true;
    else if (!std::strcmp(argv[i], "--pdl_timeline"))
      pdl_timeline = true;
    else if (!std::strcmp(argv[i], "--gemm_timeline"))
      gemm_timeline = true;
    else if (!std::strcmp(argv[i], "--candidates"))
      candidates = true;
    else if (!std::strcmp(argv[i], "--gemm_cp_async"))
      gemm_cp_async = true;
    else if (!std::strcmp(argv[i], "--gemm_decompose_k"))
      gemm_decompose_k = true;
    else if (!std::strcmp(argv[i], "--host_launch_cost"))
      host_launch_cost = true;
    else if (!std::strcmp(argv[i], "--gemm_tile") && i + 1 < argc &&
             (!std::strcmp(argv[i + 1], "16") || !std::strcmp(argv[i + 1], "32") ||
              !std::strcmp(argv[i + 1], "64") || !std::strcmp(argv[i + 1], "128")))
      gemm_tile = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--gemm_tile") && i + 1 < argc &&
             !std::strcmp(argv[i + 1], "64x128")) {
      gemm_tile = 128;
      gemm_tile_m = 64;
      ++i;
    } else if (!std::strcmp(argv[i], "--gemm_splits") && i + 1 < argc) {
      if (!absl::SimpleAtoi(argv[++i], &gemm_splits) || gemm_splits < 1) {
        std::fprintf(stderr, "router_bench: --gemm_splits: '%s' is not a split count\n", argv[i]);
        return 2;
      }
    } else if (!std::strcmp(argv[i], "--gemm_shapes") && i + 1 < argc) {
      for (absl::string_view shape : absl::StrSplit(argv[++i], ',')) {
        auto parsed = ParseGemmShape(shape);
        if (!parsed.ok()) {
          std::fprintf(stderr, "router_bench: --gemm_shapes: %s\n",
                       std::string(parsed.status().message()).c_str());
          return 2;
        }
        gemm_shapes.push_back(*parsed);
      }
    } else if (!std::strcmp(argv[i], "--tokens") && i + 1 < argc) {
      token_list.clear();
      for (absl::string_view n : absl::StrSplit(argv[++i], ',')) {
        int tokens = 0;
        if (!absl::SimpleAtoi(n, &tokens) || tokens < 1 || tokens > kMaxTokens) {
          std::fprintf(stderr, "router_bench: --tokens: '%s' is not a token count in 1..%d\n",
                       std::string(n).c_str(), kMaxTokens);
          return 2;
        }
        token_list.push_back(tokens);
      }
    } else if (!std::strcmp(argv[i], "--sweep_splits") && i + 1 < argc)
      for (absl::string_view n : absl::StrSplit(argv[++i], ',')) {
        int splits = 0;
        if (!absl::SimpleAtoi(n, &splits) || splits < 1) {
          std::fprintf(stderr, "router_bench: --sweep_splits: '%s' is not a split count\n",
                       std::string(n).c_str());
          return 2;
        }
        sweep_splits.push_back(splits);
      }
    else {
      std::printf(
          "usage: router_bench [--json FILE] [--replays N] [--quick] [--filter SUBSTR[,SUBSTR...]] "
          "[--tokens N[,N...]] [--timeline] [--pdl_timeline [--sweep_splits N,N...]] "
          "[--gemm_timeline] "
          "[--candidates] [--gemm_cp_async] [--gemm_tile 16|32|64|128|64x128] [--gemm_splits N] "
          "[--gemm_shapes MxNxK[,MxNxK...]] [--gemm_decompose_k] "
          "[--host_launch_cost]\n");
      return std::strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  auto info = cuda::ProbeDevice(0);
  if (!info.available) {
    std::fprintf(stderr, "router_bench: no GPU (%s)\n", info.reason.c_str());
    return 1;
  }
  int l2 = 0;
  CHECK_CUDA(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
  auto stream = Must(MakeStream());
  const double copy_gbs = CopyBandwidth(stream.get());
  std::printf("device: %s, %d SMs, L2 %d MB, copy bandwidth %.0f GB/s (read+write)\n",
              info.name.c_str(), info.sm_count, l2 >> 20, copy_gbs);
  auto cublas = Must(cuda::CublasRouter::Create());
  const float empty_us = TimePerCall(
      256, [](int, cudaStream_t s) { CHECK_CUDA(LaunchEmptyKernel(s)); }, stream.get());
  std::vector<Row> rows;

  if (host_launch_cost) {
    PrintHostLaunchCost(info, stream.get());
    return 0;
  }
  if (timeline || pdl_timeline || gemm_timeline) {
    if (timeline) PrintTimelines(info, stream.get());
    if (pdl_timeline)
      PrintPdlTimelines(info, stream.get(), size_t(l2), filter, sweep_splits, candidates);
    if (gemm_timeline)
      PrintGemmTimelines(info, stream.get(), size_t(l2), filter,
                         !gemm_cp_async && cuda::TileGemmTmaSupported());
    return 0;
  }

  // --- The routing epilogue alone (one token), to see its cost apart from the GEMM.
  if (filter.empty() || filter == "epilogue") {
    std::printf("\nepilogue alone, 1 token:\n");
    for (const char* family : {"mixtral", "qwen3_30b", "deepseek_v3", "kimi_k2"}) {
      RouterSpec spec = FindPreset(family).value().spec;
      RouteProblem p{spec, 1, DType::kBF16, DType::kBF16};
      auto logits = Must(DeviceBuffer::Allocate(4 * spec.experts));
      FillRandom(logits.get(), spec.experts, DType::kFP32, 1.0f, 3);
      auto bias = Must(DeviceBuffer::Allocate(4 * spec.experts));
      FillRandom(bias.get(), spec.experts, DType::kFP32, 0.05f, 4);
      auto ids = Must(DeviceBuffer::Allocate(64)), w = Must(DeviceBuffer::Allocate(64));
      RouteArgs args{nullptr,           nullptr,       bias.as<float>(), bias.as<float>(),
                     ids.as<int32_t>(), w.as<float>(), nullptr};
      const float us = TimePerCall(
          256,
          [&](int, cudaStream_t s) {
            CHECK_CUDA(cuda::LaunchRoutingEpilogue(p, logits.as<float>(), args, s));
          },
          stream.get());
      std::printf("  %-12s experts=%3d top_k=%d: %.2f us\n", family, spec.experts, spec.top_k, us);
    }
  }

  // --- Router shapes: every family x tokens ----------------------------------------
  for (const auto& preset : FamilyPresets()) {
    auto wanted = [&](int tokens) {
      return (!quick || tokens == 1 || tokens == 16) &&
             Selected(absl::StrFormat("%s t=%d", preset.name, tokens), filter);
    };
    // Filling a family's layers on the host takes seconds: only for families with a row
    // to run (a filtered A/B run was mostly fills).
    if (std::none_of(std::begin(token_list), std::end(token_list), wanted)) continue;
    const RouterSpec& spec = preset.spec;
    const size_t layer_bytes = size_t(spec.experts) * spec.hidden * 2;
    const int layers = LayersFor(layer_bytes, l2, 16, 2048);
    auto weights = Must(DeviceBuffer::Allocate(layer_bytes * layers));
    FillRandom(weights.get(), size_t(spec.experts) * spec.hidden * layers, DType::kBF16,
               1.0f / std::sqrt(float(spec.hidden)), 7);
    auto bias = Must(DeviceBuffer::Allocate(4 * spec.experts));
    FillRandom(bias.get(), spec.experts, DType::kFP32, 0.05f, 8);
    for (int tokens : token_list) {
      if (!wanted(tokens)) continue;
      RouteProblem p{spec, tokens, DType::kBF16, DType::kBF16};
      auto hidden = Must(DeviceBuffer::Allocate(size_t(tokens) * spec.hidden * 2));
      FillRandom(hidden.get(), size_t(tokens) * spec.hidden, DType::kBF16, 1.0f, 9);
      auto ids = Must(DeviceBuffer::Allocate(4 * tokens * spec.top_k));
      auto w = Must(DeviceBuffer::Allocate(4 * tokens * spec.top_k));
      auto logits = Must(DeviceBuffer::Allocate(4 * size_t(tokens) * spec.experts));
      RouteArgs args{hidden.get(),      weights.get(), bias.as<float>(), bias.as<float>(),
                     ids.as<int32_t>(), w.as<float>(), nullptr};
      cuda::AutotuneOptions tune;
      tune.enabled = true;
      tune.rotate_layers = layers;
      tune.layer_stride_bytes = layer_bytes;
      std::vector<cuda::CandidateTiming> nopdl_timings, pdl_timings;
      if (candidates) tune.timings = &nopdl_timings;
      auto plan = Must(cuda::CudaRouterPlan::Create(p, info.sm_count, tune, &args, stream.get()));
      // The PDL column with the config tuned for PDL launches (configs that tie without PDL
      // differ by ~0.5 us under it); the no-PDL column with the one tuned without.
      tune.pdl = true;
      if (candidates) tune.timings = &pdl_timings;
      auto pdl_plan =
          Must(cuda::CudaRouterPlan::Create(p, info.sm_count, tune, &args, stream.get()));
      auto heuristic = cuda::ChooseDecomposeKConfig(p, info.sm_count);
      auto args_for = [&](int l) {
        RouteArgs a = args;
        a.weight = weights.as<char>() + layer_bytes * l;
        return a;
      };
      Row row;
      row.shape = absl::StrFormat("%s t=%d", preset.name, tokens);
      row.layers = layers;
      row.bytes = layer_bytes + 2.0 * tokens * spec.hidden + 8.0 * tokens * spec.top_k;
      row.fused_us = TimePerCall(
          layers,
          [&](int l, cudaStream_t s) {
            CHECK_CUDA(pdl_plan->Launch(args_for(l), s, /*pdl=*/true));
          },
          stream.get());
      row.fused_nopdl_us = TimePerCall(
          layers,
          [&](int l, cudaStream_t s) { CHECK_CUDA(plan->Launch(args_for(l), s, /*pdl=*/false)); },
          stream.get());
      row.cublas_gemm_us = TimePerCall(
          layers,
          [&](int l, cudaStream_t s) {
            CHECK_CUDA(cublas->Gemm(p, hidden.get(), args_for(l).weight, logits.as<float>(), s));
          },
          stream.get());
      row.cublas_route_us = TimePerCall(
          layers,
          [&](int l, cudaStream_t s) {
            CHECK_CUDA(cublas->Route(p, args_for(l), logits.get(), s));
          },
          stream.get());
      row.empty_us = empty_us;
      const std::string pdl_config = cuda::DescribeDecomposeKConfig(pdl_plan->config()),
                        nopdl_config = cuda::DescribeDecomposeKConfig(plan->config());
      row.config = pdl_config;
      if (pdl_config != nopdl_config) absl::StrAppend(&row.config, " / no PDL ", nopdl_config);
      absl::StrAppend(&row.config, " (heuristic ", cuda::DescribeDecomposeKConfig(heuristic), ")");
      row.candidates = MergeCandidates(nopdl_timings, pdl_timings);
      rows.push_back(row);
    }
  }

  // --- Skinny GEMMs ------------------------------------------------------------------
  if (gemm_shapes.empty())
    for (int mn : {16, 32, 64, 128})
      for (int k : {8192, 32768, 65536, 131072})
        if (!quick || k == 131072) gemm_shapes.push_back({mn, mn, k, DType::kBF16});
  for (const cuda::GemmProblem& p : gemm_shapes) {
    const int m = p.m, n = p.n, k = p.k;
    const std::string name = absl::StrFormat("gemm %dx%dx%d", m, n, k);
    if (!Selected(name, filter)) continue;
    const size_t a_bytes = size_t(m) * k * 2, b_bytes = size_t(n) * k * 2;
    const int layers = LayersFor(a_bytes + b_bytes, l2, 4, 256);
    auto a = Must(DeviceBuffer::Allocate(a_bytes * layers));
    auto b = Must(DeviceBuffer::Allocate(b_bytes * layers));
    FillRandom(a.get(), size_t(m) * k * layers, DType::kBF16, 1.0f, 1);
    FillRandom(b.get(), size_t(n) * k * layers, DType::kBF16, 1.0f, 2);
    auto c = Must(DeviceBuffer::Allocate(4 * size_t(m) * n));
    auto cfg = cuda::ChooseGemmConfig(p, info.sm_count, /*allow_cublas=*/!gemm_decompose_k);
    if (gemm_cp_async) cfg.gemm_tma = false;
    if (gemm_tile != 0) {  // a fresh config: a 16-row row's is the router kernels'
      cfg = cuda::DecomposeKConfig{};
      cfg.gemm_tile = gemm_tile;
      cfg.gemm_tile_m = gemm_tile_m;
      cfg.gemm_tma = cuda::TileGemmTmaSupported() && !gemm_cp_async;
      cfg.k_splits = cuda::TileGemmSplits(m, n, k, gemm_tile, info.sm_count, gemm_tile_m);
    }
    if (gemm_splits != 0 && cfg.gemm_tile != 0)
      cfg.k_splits = ForcedTileGemmSplits(p, cfg, gemm_splits, info.sm_count);
    auto ws = Must(DeviceBuffer::Allocate(cuda::GemmWorkspaceBytes(p, cfg)));
    CHECK_CUDA(cuda::ResetGemmWorkspace(ws.get(), p, cfg, stream.get()));
    RouteProblem rp;  // the cuBLAS call shape: "experts" = n, "tokens" = m
    rp.spec.experts = n;
    rp.spec.hidden = k;
    rp.tokens = m;
    Row row;
    row.shape = name;
    row.layers = layers;
    row.bytes = double(a_bytes + b_bytes) + 4.0 * m * n;
    auto gemm = [&](bool pdl) {
      return TimePerCall(
          layers,
          [&](int l, cudaStream_t s) {
            CHECK_CUDA(cuda::LaunchGemm(p, a.as<char>() + a_bytes * l, b.as<char>() + b_bytes * l,
                                        nullptr, c.as<float>(), cfg, ws.get(), ws.bytes(), s, pdl));
          },
          stream.get());
    };
    // Under PDL as the routing rows (B, the weights' role, rotates with A: every
    // launch streams both from HBM), then plain stream order as cuBLAS runs.
    row.fused_us = gemm(true);
    row.fused_nopdl_us = gemm(false);
    row.cublas_gemm_us = TimePerCall(
        layers,
        [&](int l, cudaStream_t s) {
          CHECK_CUDA(cublas->Gemm(rp, a.as<char>() + a_bytes * l, b.as<char>() + b_bytes * l,
                                  c.as<float>(), s));
        },
        stream.get());
    row.cublas_route_us = 0;
    row.empty_us = empty_us;
    row.config = cuda::DescribeDecomposeKConfig(cfg);
    rows.push_back(row);
  }

  // fused: launched with PDL (the next launch streams its weights while this one reduces
  // and routes), config autotuned under PDL; fused_nopdl: plain stream order, as cuBLAS
  // runs, config autotuned so. `config` names the PDL one, then the other where they
  // differ.
  std::printf("\n%-28s %6s %9s %7s %11s %11s %13s %8s  %s\n", "shape", "layers", "fused_us", "%HBM",
              "fused_nopdl", "cublas_gemm", "cublas+topk", "empty", "config");
  for (const Row& r : rows) {
    const double pct = r.bytes / (r.fused_us * 1e-6) / (copy_gbs * 1e9) * 100.0;
    std::printf("%-28s %6d %9.2f %6.0f%% %11.2f %11.2f %13s %8.2f  %s\n", r.shape.c_str(), r.layers,
                r.fused_us, pct, r.fused_nopdl_us, r.cublas_gemm_us,
                r.cublas_route_us > 0 ? absl::StrFormat("%.2f", r.cublas_route_us).c_str() : "-",
                r.empty_us, r.config.c_str());
  }
  if (candidates) {
    // Indented, so that scripts reading the table rows (router_ab.sh) skip these lines.
    std::printf("\nautotuner candidates, us per call in the tuner's own graph (%s):\n",
                "no PDL, PDL; - not timed in that mode");
    auto us = [](float v) { return v < 0 ? std::string("-") : absl::StrFormat("%.2f", v); };
    for (const Row& r : rows) {
      if (r.candidates.empty()) continue;
      std::printf("  %s\n", r.shape.c_str());
      for (const CandidateRow& c : r.candidates)
        std::printf("    %-36s %8s %8s\n", c.config.c_str(), us(c.nopdl_us).c_str(),
                    us(c.pdl_us).c_str());
    }
  }
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) return 1;
    std::fprintf(f, "{\"device\": \"%s\", \"copy_gbs\": %.1f, \"rows\": [\n", info.name.c_str(),
                 copy_gbs);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f,
                   "  {\"shape\": \"%s\", \"layers\": %d, \"bytes\": %.0f, \"fused_us\": %.3f, "
                   "\"fused_nopdl_us\": %.3f, \"cublas_gemm_us\": %.3f, \"cublas_route_us\": %.3f, "
                   "\"empty_us\": %.3f, \"config\": \"%s\"",
                   r.shape.c_str(), r.layers, r.bytes, r.fused_us, r.fused_nopdl_us,
                   r.cublas_gemm_us, r.cublas_route_us, r.empty_us, r.config.c_str());
      if (!r.candidates.empty()) {  // --candidates; null: not timed in that mode
        std::fprintf(f, ", \"candidates\": [");
        for (size_t j = 0; j < r.candidates.size(); ++j) {
          const CandidateRow& c = r.candidates[j];
          auto num = [](float v) {
            return v < 0 ? std::string("null") : absl::StrFormat("%.3f", v);
          };
          std::fprintf(f, "%s{\"config\": \"%s\", \"us\": %s, \"pdl_us\": %s}", j ? ", " : "",
                       c.config.c_str(), num(c.nopdl_us).c_str(), num(c.pdl_us).c_str());
        }
        std::fprintf(f, "]");
      }
      std::fprintf(f, "}%s\n", i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  return 0;
}

}  // namespace
}  // namespace moe::bench

int main(int argc, char** argv) { return moe::bench::BenchMain(argc, argv); }
