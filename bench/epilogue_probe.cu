// epilogue_probe: where the routing epilogue's cycles go. One warp routes one token of a
// family's shape, `reps` times in a row inside one kernel, stamping clock64: the first
// repetition runs with cold instruction and data caches (as in service, where one CTA
// runs it once per launch), later ones warm. Printed per family: the whole epilogue
// (dispatching over the experts-per-lane width, as the kernels do) and each of its four
// phases; then the dependent-chain latency of the warp collectives it is built from.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <vector>

#include "kernels/router_epilogue.cuh"

namespace moe::cuda {
namespace {

constexpr int kReps = 4;
constexpr int kStages = 4;

template <int P, typename T>
__device__ __forceinline__ void Sink(const T (&v)[P]) {
#pragma unroll
  for (int j = 0; j < P; ++j) asm volatile("" ::"r"(v[j]));
}

__global__ void ProbeWhole(EpilogueParams ep, const float* logits, const float* bias, int32_t* ids,
                           float* w, long long* cycles) {
  long long t = clock64();
  for (int r = 0; r < kReps; ++r) {
    WarpRouteToken(ep, logits, bias, ids, w);
    __syncwarp();
    const long long now = clock64();
    if (threadIdx.x == 0) cycles[r] = now - t;
    t = now;
  }
}

// The four phases timed apart: each phase's result feeds an empty volatile asm before the
// clock is read, so the read cannot move above the work.
template <int P>
__global__ void ProbeStages(EpilogueParams ep, const float* logits, const float* bias, int32_t* ids,
                            float* w, long long* cycles) {
  const int lane = threadIdx.x & 31;
  for (int r = 0; r < kReps; ++r) {
    float l[P], cb[P];
    LoadTokenInputs<P>(ep, logits, bias, l, cb);
#pragma unroll
    for (int j = 0; j < P; ++j) asm volatile("" ::"f"(l[j]), "f"(cb[j]));
    long long t[kStages + 1];
    t[0] = clock64();
    uint32_t key[P];
    const TokenScoring sc = SelectionKeys<P>(ep, l, cb, key);
    Sink(key);
    t[1] = clock64();
    if (ep.n_group > 1) DropUnkeptGroups<P>(ep, key);
    Sink(key);
    t[2] = clock64();
    LaneChoices<P> chosen;
    WarpTopK<P>(ep.top_k, key, l, chosen);
    Sink(chosen.round);
    t[3] = clock64();
    WriteChoices<P>(ep, chosen, sc, ids, w);
    __syncwarp();
    t[4] = clock64();
    if (lane == 0)
      for (int s = 0; s < kStages; ++s) cycles[r * kStages + s] = t[s + 1] - t[s];
  }
}

// Cycles per operation of 64-long dependent chains of one warp's collectives and ALU ops.
__global__ void ChainLatency(uint32_t seed, uint32_t* sink, long long* cycles) {
  uint32_t v = seed + threadIdx.x;
  float f = 1.0f + 1e-3f * threadIdx.x;
  long long t[7];
  t[0] = clock64();
#pragma unroll
  for (int i = 0; i < 64; ++i) v = __reduce_max_sync(kFullMask, v) + threadIdx.x;
  asm volatile("" ::"r"(v));
  t[1] = clock64();
#pragma unroll
  for (int i = 0; i < 64; ++i) v = __shfl_xor_sync(kFullMask, v, 1) + 1u;
  asm volatile("" ::"r"(v));
  t[2] = clock64();
#pragma unroll
  for (int i = 0; i < 64; ++i) v = __ballot_sync(kFullMask, v & 1u) + v;
  asm volatile("" ::"r"(v));
  t[3] = clock64();
#pragma unroll
  for (int i = 0; i < 64; ++i) v = max(v, v >> 1) + 3u;
  asm volatile("" ::"r"(v));
  t[4] = clock64();
#pragma unroll
  for (int i = 0; i < 64; ++i) f = __expf(-f) + 0.5f;
  asm volatile("" ::"f"(f));
  t[5] = clock64();
#pragma unroll
  for (int i = 0; i < 64; ++i) f = __fdividef(1.0f, f + 1.0f);
  asm volatile("" ::"f"(f));
  t[6] = clock64();
  sink[threadIdx.x] = v + __float_as_uint(f);
  if (threadIdx.x == 0)
    for (int i = 0; i < 6; ++i) cycles[i] = t[i + 1] - t[i];
}

template <int P>
void LaunchStages(const EpilogueParams& ep, const float* logits, const float* bias, int32_t* ids,
                  float* w, long long* cycles) {
  ProbeStages<P><<<1, 32>>>(ep, logits, bias, ids, w, cycles);
}

}  // namespace
}  // namespace moe::cuda

int main() {
  using namespace moe;
  using namespace moe::cuda;
  float *logits, *bias, *w;
  int32_t* ids;
  long long* cycles;
  uint32_t* sink;
  cudaMalloc(&logits, 4 * kMaxExperts);
  cudaMalloc(&bias, 4 * kMaxExperts);
  cudaMalloc(&ids, 64);
  cudaMalloc(&w, 64);
  cudaMalloc(&cycles, 8 * kReps * kStages);
  cudaMalloc(&sink, 4 * 32);
  std::vector<float> host(kMaxExperts);
  for (int e = 0; e < kMaxExperts; ++e) host[e] = float((e * 7919) % 1000) / 500.0f - 1.0f;
  cudaMemcpy(logits, host.data(), 4 * kMaxExperts, cudaMemcpyHostToDevice);
  cudaMemset(bias, 0, 4 * kMaxExperts);
  std::printf("%-14s %10s %10s | warm cycles by phase: %8s %8s %8s %8s\n", "family", "cold_cyc",
              "warm_cyc", "keys", "groups", "top_k", "weights");
  for (const char* family : {"mixtral", "qwen3_30b", "gpt_oss_120b", "deepseek_v3", "kimi_k2"}) {
    const RouterSpec spec = FindPreset(family).value().spec;
    const EpilogueParams ep = MakeEpilogueParams(spec);
    long long whole[kReps], stages[kReps * kStages];
    ProbeWhole<<<1, 32>>>(ep, logits, bias, ids, w, cycles);
    if (cudaMemcpy(whole, cycles, sizeof whole, cudaMemcpyDeviceToHost) != cudaSuccess) return 1;
    switch (ExpertsPerLane(spec.experts)) {
      case 1:
        LaunchStages<1>(ep, logits, bias, ids, w, cycles);
        break;
      case 4:
        LaunchStages<4>(ep, logits, bias, ids, w, cycles);
        break;
      case 8:
        LaunchStages<8>(ep, logits, bias, ids, w, cycles);
        break;
      default:
        LaunchStages<16>(ep, logits, bias, ids, w, cycles);
    }
    if (cudaMemcpy(stages, cycles, sizeof stages, cudaMemcpyDeviceToHost) != cudaSuccess) return 1;
    const long long* warm = stages + (kReps - 1) * kStages;
    std::printf("%-14s %10lld %10lld | %29lld %8lld %8lld %8lld\n", family, whole[0],
                whole[kReps - 1], warm[0], warm[1], warm[2], warm[3]);
  }
  long long chain[6];
  ChainLatency<<<1, 32>>>(1u, sink, cycles);
  if (cudaMemcpy(chain, cycles, sizeof chain, cudaMemcpyDeviceToHost) != cudaSuccess) return 1;
  std::printf("\ncycles per op, 64-long dependent chains of one warp:\n");
  const char* names[] = {"redux.max + iadd",    "shfl.bfly + iadd",    "vote.ballot + iadd",
                         "imax + shift + iadd", "ex2 (__expf) + fadd", "rcp (__fdividef) + fadd"};
  for (int i = 0; i < 6; ++i) std::printf("  %-24s %6.1f\n", names[i], chain[i] / 64.0);
  return 0;
}
