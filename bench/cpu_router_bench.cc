// cpu_router_bench: throughput of the CPU backend (Decompose-K over threads, fused
// epilogue) per family and token count. Weights rotate over enough layers to exceed the
// last-level cache; median of many runs after a warm-up. Prints a table.
//
//   cpu_router_bench [--threads N] [--runs N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu_dot.h"
#include "kernels/cpu_router.h"
#include "server/demo_models.h"

namespace moe {
namespace {

int BenchMain(int argc, char** argv) {
  int threads = 0, runs = 30;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--runs") && i + 1 < argc)
      runs = std::atoi(argv[++i]);
    else {
      std::printf("usage: cpu_router_bench [--threads N] [--runs N]\n");
      return std::strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  CpuRouter router(threads);
  std::printf("CPU backend, %d threads, %s loops\n%-18s %6s %10s %10s %12s\n", router.threads(),
              CpuDotLevelName(), "family", "tokens", "median_us", "weight_GB/s", "tokens/s");
  for (const char* family : {"deepseek_v3", "qwen3_30b", "mixtral", "gpt_oss_20b"}) {
    const RouterSpec spec = FindPreset(family).value().spec;
    const size_t layer_bytes = size_t(spec.experts) * spec.hidden * 2;
    const int layers = static_cast<int>(std::clamp<size_t>((256u << 20) / layer_bytes, 2, 64));
    RouterModel model = MakeSyntheticModel(spec, layers, DType::kBF16, 3, family);
    for (int tokens : {1, 16, 64, 256}) {
      RouteProblem p{spec, tokens, DType::kBF16, DType::kBF16};
      std::vector<uint8_t> hidden(size_t(tokens) * spec.hidden * 2);
      for (size_t i = 0; i < hidden.size() / 2; ++i)
        StoreFromFloat(hidden.data(), DType::kBF16, i, std::sin(0.1f * i));
      std::vector<int32_t> ids(size_t(tokens) * spec.top_k);
      std::vector<float> weights(ids.size());
      std::vector<uint8_t> ws(router.WorkspaceBytes(p));
      std::vector<double> us;
      for (int r = 0; r < runs + 3; ++r) {
        const RouterLayer& l = model.layers[r % layers];
        RouteArgs args{hidden.data(),
                       l.weight.data(),
                       l.router_bias.empty() ? nullptr : l.router_bias.data(),
                       l.correction_bias.empty() ? nullptr : l.correction_bias.data(),
                       ids.data(),
                       weights.data(),
                       nullptr};
        const auto start = std::chrono::steady_clock::now();
        auto status = router.Route(p, args, ws.data(), ws.size());
        const auto stop = std::chrono::steady_clock::now();
        if (!status.ok()) {
          std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
          return 1;
        }
        if (r >= 3) us.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
      }
      std::sort(us.begin(), us.end());
      const double med = us[us.size() / 2];
      std::printf("%-18s %6d %10.1f %10.2f %12.0f\n", family, tokens, med, layer_bytes / med / 1e3,
                  tokens / med * 1e6);
    }
  }
  return 0;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) { return moe::BenchMain(argc, argv); }
