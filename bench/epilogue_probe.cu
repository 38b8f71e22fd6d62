// epilogue_probe: where the routing epilogue's cycles go. One warp routes one token of a
// family's shape, `reps` times in a row inside one kernel, stamping clock64 after each
// repetition: the first repetition runs with cold instruction and data caches (as in
// service, where the last CTA runs it once), later ones warm. Two builds of the same
// epilogue: dispatching over every experts-per-lane width at run time (what the router
// kernels do) and a single width fixed at compile time (smaller code).
#include <cuda_runtime_api.h>

#include <cstdio>
#include <vector>

#include "kernels/router_epilogue.cuh"

namespace moe::cuda {
namespace {

template <int P>
__global__ void ProbeFixed(EpilogueParams ep, const float* logits, const float* bias, int32_t* ids,
                           float* w, long long* cycles, int reps) {
  __shared__ float scratch[kMaxExperts];
  long long t = clock64();
  for (int r = 0; r < reps; ++r) {
    WarpRouteTokenP<P>(ep, logits, scratch, bias, ids, w);
    __syncwarp();
    const long long now = clock64();
    if (threadIdx.x == 0) cycles[r] = now - t;
    t = now;
  }
}

__global__ void ProbeDispatch(EpilogueParams ep, const float* logits, const float* bias,
                              int32_t* ids, float* w, long long* cycles, int reps) {
  __shared__ float scratch[kMaxExperts];
  long long t = clock64();
  for (int r = 0; r < reps; ++r) {
    WarpRouteToken(ep, logits, scratch, bias, ids, w);
    __syncwarp();
    const long long now = clock64();
    if (threadIdx.x == 0) cycles[r] = now - t;
    t = now;
  }
}

}  // namespace
}  // namespace moe::cuda

int main() {
  using namespace moe;
  using namespace moe::cuda;
  constexpr int kReps = 4;
  float *logits, *bias, *w;
  int32_t* ids;
  long long* cycles;
  cudaMalloc(&logits, 4 * kMaxExperts);
  cudaMalloc(&bias, 4 * kMaxExperts);
  cudaMalloc(&ids, 64);
  cudaMalloc(&w, 64);
  cudaMalloc(&cycles, 8 * kReps);
  std::vector<float> host(kMaxExperts);
  for (int e = 0; e < kMaxExperts; ++e) host[e] = float((e * 7919) % 1000) / 500.0f - 1.0f;
  cudaMemcpy(logits, host.data(), 4 * kMaxExperts, cudaMemcpyHostToDevice);
  cudaMemset(bias, 0, 4 * kMaxExperts);
  std::printf("%-14s %-9s %10s %10s %10s\n", "family", "build", "cold_cyc", "warm_cyc", "ratio");
  for (const char* family : {"mixtral", "qwen3_30b", "deepseek_v3", "kimi_k2"}) {
    const RouterSpec spec = FindPreset(family).value().spec;
    const EpilogueParams ep = MakeEpilogueParams(spec);
    for (int build = 0; build < 2; ++build) {
      if (build == 0) {
        ProbeDispatch<<<1, 32>>>(ep, logits, bias, ids, w, cycles, kReps);
      } else if (spec.experts <= 32) {
        ProbeFixed<1><<<1, 32>>>(ep, logits, bias, ids, w, cycles, kReps);
      } else if (spec.experts <= 128) {
        ProbeFixed<4><<<1, 32>>>(ep, logits, bias, ids, w, cycles, kReps);
      } else if (spec.experts <= 256) {
        ProbeFixed<8><<<1, 32>>>(ep, logits, bias, ids, w, cycles, kReps);
      } else {
        ProbeFixed<16><<<1, 32>>>(ep, logits, bias, ids, w, cycles, kReps);
      }
      long long c[kReps];
      if (cudaMemcpy(c, cycles, sizeof c, cudaMemcpyDeviceToHost) != cudaSuccess) return 1;
      std::printf("%-14s %-9s %10lld %10lld %10.1f\n", family, build ? "fixed" : "dispatch", c[0],
                  c[kReps - 1], double(c[0]) / c[kReps - 1]);
    }
  }
  return 0;
}
