#include "bench/host_launch_cost.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "bench/bench_util.h"
#include "kernels/cuda_router.h"
#include "kernels/decompose_k_gemm_tile.h"

namespace moe::bench {
namespace {

// Median host us of `launch()` over many calls; the stream is drained every few launches
// so that a full launch queue never blocks the call being timed.
double MedianHostUs(const std::function<void()>& launch, cudaStream_t stream) {
  constexpr int kCalls = 400, kDrainEvery = 16;
  std::vector<double> us;
  for (int i = 0; i < kCalls; ++i) {
    if (i % kDrainEvery == 0) CHECK_CUDA(cudaStreamSynchronize(stream));
    const auto start = std::chrono::steady_clock::now();
    launch();
    const auto end = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
  }
  CHECK_CUDA(cudaStreamSynchronize(stream));
  std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
  return us[us.size() / 2];
}

}  // namespace

void PrintHostLaunchCost(const cuda::DeviceInfo& info, cudaStream_t stream) {
  std::printf("\nhost time of one eager launch call (median us; TMA / cp.async stages):\n");
  // The staged router at DeepSeek-V3 t=128 (the heuristic's staged config).
  {
    const RouterSpec spec = FindPreset("deepseek_v3").value().spec;
    const RouteProblem p{spec, 128, DType::kBF16, DType::kBF16};
    auto weights = Must(DeviceBuffer::Allocate(size_t(spec.experts) * spec.hidden * 2));
    auto hidden = Must(DeviceBuffer::Allocate(size_t(p.tokens) * spec.hidden * 2));
    FillRandom(weights.get(), size_t(spec.experts) * spec.hidden, DType::kBF16, 0.01f, 1);
    FillRandom(hidden.get(), size_t(p.tokens) * spec.hidden, DType::kBF16, 1.0f, 2);
    auto bias = Must(DeviceBuffer::Allocate(4 * spec.experts));
    FillRandom(bias.get(), spec.experts, DType::kFP32, 0.05f, 3);
    auto ids = Must(DeviceBuffer::Allocate(4 * p.tokens * spec.top_k));
    auto w = Must(DeviceBuffer::Allocate(4 * p.tokens * spec.top_k));
    const RouteArgs args{hidden.get(),      weights.get(), bias.as<float>(), bias.as<float>(),
                         ids.as<int32_t>(), w.as<float>(), nullptr};
    cuda::DecomposeKConfig config = cuda::ChooseDecomposeKConfig(p, info.sm_count);
    auto ws = Must(DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, config)));
    CHECK_CUDA(cuda::ResetDecomposeKWorkspace(ws.get(), p, config, stream));
    double us[2];
    for (bool cp_async : {false, true}) {
      config.staged_cp_async = cp_async;
      us[cp_async] = MedianHostUs(
          [&] {
            CHECK_CUDA(cuda::LaunchDecomposeKRouter(p, args, config, ws.get(), ws.bytes(), stream,
                                                    /*pdl=*/true));
          },
          stream);
    }
    std::printf("  router deepseek_v3 t=128 (staged=%d S=%d): %.2f / %.2f\n", int(config.staged),
                config.k_splits, us[0], us[1]);
  }
  // The staged-tile GEMM at 64 x 64 x 32768 (64-tiles, PDL with the TMA).
  {
    const cuda::GemmProblem p{64, 64, 32768, DType::kBF16};
    auto a = Must(DeviceBuffer::Allocate(size_t(p.m) * p.k * 2));
    auto b = Must(DeviceBuffer::Allocate(size_t(p.n) * p.k * 2));
    FillRandom(a.get(), size_t(p.m) * p.k, DType::kBF16, 1.0f, 4);
    FillRandom(b.get(), size_t(p.n) * p.k, DType::kBF16, 1.0f, 5);
    auto c = Must(DeviceBuffer::Allocate(4 * size_t(p.m) * p.n));
    cuda::DecomposeKConfig config = cuda::ChooseGemmConfig(p, info.sm_count);
    auto ws = Must(DeviceBuffer::Allocate(cuda::GemmWorkspaceBytes(p, config)));
    CHECK_CUDA(cuda::ResetGemmWorkspace(ws.get(), p, config, stream));
    double us[2];
    for (bool cp_async : {false, true}) {
      config.gemm_tma = !cp_async && cuda::TileGemmTmaSupported();
      us[cp_async] = MedianHostUs(
          [&] {
            CHECK_CUDA(cuda::LaunchDecomposeKGemm(p, a.get(), b.get(), nullptr, c.as<float>(),
                                                  config, ws.get(), stream, /*pdl=*/true));
          },
          stream);
    }
    std::printf("  gemm 64x64x32768 (tile=%d S=%d): %.2f / %.2f\n", config.gemm_tile,
                config.k_splits, us[0], us[1]);
  }
}

}  // namespace moe::bench
