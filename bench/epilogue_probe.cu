// epilogue_probe: where the routing epilogue's cycles go. One warp routes one token of a
// family's shape, `reps` times in a row inside one kernel, stamping clock64: the first
// repetition runs with cold instruction and data caches (as in service, where one CTA
// runs it once per launch), later ones warm. Printed per family: the whole epilogue
// (dispatching over the experts-per-lane width, as the kernels do) and each of its four
// phases; then the dependent-chain latency of the warp collectives it is built from.
// Then CtaRouteToken, the one-token router CTA's epilogue of the polled kernel, alone on
// one SM and warm: per family its cycles and its sub-phases (EpiloguePhase marks). With
// `--ncu FAMILY` it only runs a long warm loop of CtaRouteToken for that family, for a
// profiler's PC sampling (ncu --set full, source page): where a warm CTA epilogue stalls.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>
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
  long long t[10];
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
  // match.any with 1, 8 and 32 distinct values in the warp (`zero` is 0, unknown to the
  // compiler, so each step waits on the one before).
  const uint32_t zero = seed >> 31, lane = threadIdx.x & 31;
#pragma unroll
  for (int i = 0; i < 64; ++i) v += __match_any_sync(kFullMask, v & zero);
  asm volatile("" ::"r"(v));
  t[7] = clock64();
#pragma unroll
  for (int i = 0; i < 64; ++i) v += __match_any_sync(kFullMask, (v & zero) + lane / 4);
  asm volatile("" ::"r"(v));
  t[8] = clock64();
#pragma unroll
  for (int i = 0; i < 64; ++i) v += __match_any_sync(kFullMask, (v & zero) + lane);
  asm volatile("" ::"r"(v));
  t[9] = clock64();
  sink[threadIdx.x] = v + __float_as_uint(f);
  if (threadIdx.x == 0)
    for (int i = 0; i < 9; ++i) cycles[i] = t[i + 1] - t[i];
}

// CtaRouteToken `reps` times in a row by kCtaWarps warps, logits and correction bias in
// shared memory as in the polled kernel's router CTA. With `cycles`: per repetition thread
// 0's clock64 at the start, at the three sub-phase marks (0: not a phase of this spec) and
// after the closing CTA barrier (kCtaStamps values a repetition).
constexpr int kCtaWarps = 8;
constexpr int kCtaStamps = 2 + kEpiPhases;

template <int P>
__global__ void __launch_bounds__(kCtaWarps * 32)
    ProbeCta(EpilogueParams ep, const float* logits, const float* bias, int32_t* ids, float* w,
             int reps, long long* cycles) {
  __shared__ float shared_logits[kMaxExperts], shared_bias[kMaxExperts];
  __shared__ CtaRouteScratch scratch;
  __shared__ unsigned long long marks[2 * kEpiPhases];
  for (int e = threadIdx.x; e < ep.experts; e += blockDim.x) {
    shared_logits[e] = logits[e];
    shared_bias[e] = bias[e];
  }
  for (int r = 0; r < reps; ++r) {
    if (threadIdx.x < 2 * kEpiPhases) marks[threadIdx.x] = 0;
    __syncthreads();
    const long long start = clock64();
    CtaRouteToken<P>(ep, shared_logits, shared_bias, scratch, kCtaWarps, ids, w,
                     cycles ? marks : nullptr);
    __syncthreads();
    const long long end = clock64();
    if (cycles != nullptr && threadIdx.x == 0) {
      long long* out = cycles + size_t(r) * kCtaStamps;
      out[0] = start;
      for (int ph = 0; ph < kEpiPhases; ++ph) out[1 + ph] = (long long)marks[2 * ph + 1];
      out[1 + kEpiPhases] = end;
    }
  }
}

void LaunchCta(const EpilogueParams& ep, const float* logits, const float* bias, int32_t* ids,
               float* w, int reps, long long* cycles) {
  switch (ExpertsPerLane(ep.experts)) {
    case 1:
      return ProbeCta<1><<<1, kCtaWarps * 32>>>(ep, logits, bias, ids, w, reps, cycles);
    case 2:
      return ProbeCta<2><<<1, kCtaWarps * 32>>>(ep, logits, bias, ids, w, reps, cycles);
    case 4:
      return ProbeCta<4><<<1, kCtaWarps * 32>>>(ep, logits, bias, ids, w, reps, cycles);
    case 8:
      return ProbeCta<8><<<1, kCtaWarps * 32>>>(ep, logits, bias, ids, w, reps, cycles);
    default:
      return ProbeCta<16><<<1, kCtaWarps * 32>>>(ep, logits, bias, ids, w, reps, cycles);
  }
}

// The CTA epilogue's cold and warm cycles per family, and the warm sub-phases.
int PrintCtaEpilogues(const float* logits, const float* bias, int32_t* ids, float* w,
                      long long* cycles) {
  std::printf(
      "\nCtaRouteToken, one CTA of %d warps alone on an SM (clock64 cycles; warm: the "
      "last of %d repetitions)\n%-14s %8s %8s | warm: %8s %8s %8s %8s\n",
      kCtaWarps, kReps, "family", "cold", "warm", "columns", "groups", "ranking", "weights");
  for (const char* family :
       {"mixtral", "gpt_oss_20b", "qwen3_30b", "gpt_oss_120b", "deepseek_v3", "kimi_k2"}) {
    const EpilogueParams ep = MakeEpilogueParams(FindPreset(family).value().spec);
    if (!CtaRouteTokenApplies(ep)) continue;
    LaunchCta(ep, logits, bias, ids, w, kReps, cycles);
    long long c[kReps * kCtaStamps];
    if (cudaMemcpy(c, cycles, sizeof c, cudaMemcpyDeviceToHost) != cudaSuccess) return 1;
    const long long* warm = c + (kReps - 1) * kCtaStamps;
    long long phase[kEpiPhases + 1], last = warm[0];
    for (int ph = 0; ph <= kEpiPhases; ++ph) {  // a phase not passed (mark 0) counts 0
      const long long at = warm[1 + ph];
      phase[ph] = at == 0 ? 0 : at - last;
      last = at == 0 ? last : at;
    }
    std::printf("%-14s %8lld %8lld | %14lld %8lld %8lld %8lld\n", family, c[kCtaStamps - 1] - c[0],
                warm[kCtaStamps - 1] - warm[0], phase[0], phase[1], phase[2], phase[3]);
  }
  return 0;
}

template <int P>
void LaunchStages(const EpilogueParams& ep, const float* logits, const float* bias, int32_t* ids,
                  float* w, long long* cycles) {
  ProbeStages<P><<<1, 32>>>(ep, logits, bias, ids, w, cycles);
}

}  // namespace
}  // namespace moe::cuda

int main(int argc, char** argv) {
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
  cudaMalloc(&cycles, sizeof(long long) * kReps * (kStages > kCtaStamps ? kStages : kCtaStamps));
  cudaMalloc(&sink, 4 * 32);
  std::vector<float> host(kMaxExperts);
  for (int e = 0; e < kMaxExperts; ++e) host[e] = float((e * 7919) % 1000) / 500.0f - 1.0f;
  cudaMemcpy(logits, host.data(), 4 * kMaxExperts, cudaMemcpyHostToDevice);
  cudaMemset(bias, 0, 4 * kMaxExperts);
  if (argc == 3 && std::string(argv[1]) == "--ncu") {  // one long warm loop to sample
    const auto preset = FindPreset(argv[2]);
    if (!preset.ok()) {
      std::fprintf(stderr, "epilogue_probe: unknown family %s\n", argv[2]);
      return 2;
    }
    LaunchCta(MakeEpilogueParams(preset->spec), logits, bias, ids, w, 20000, nullptr);
    return cudaDeviceSynchronize() == cudaSuccess ? 0 : 1;
  }
  if (argc != 1) {
    std::fprintf(stderr, "usage: epilogue_probe [--ncu FAMILY]\n");
    return 2;
  }
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
  long long chain[9];
  ChainLatency<<<1, 32>>>(1u, sink, cycles);
  if (cudaMemcpy(chain, cycles, sizeof chain, cudaMemcpyDeviceToHost) != cudaSuccess) return 1;
  std::printf("\ncycles per op, 64-long dependent chains of one warp:\n");
  const char* names[] = {"redux.max + iadd",    "shfl.bfly + iadd",    "vote.ballot + iadd",
                         "imax + shift + iadd", "ex2 (__expf) + fadd", "rcp (__fdividef) + fadd",
                         "match.any, 1 value",  "match.any, 8 values", "match.any, 32 values"};
  for (int i = 0; i < 9; ++i) std::printf("  %-24s %6.1f\n", names[i], chain[i] / 64.0);
  return PrintCtaEpilogues(logits, bias, ids, w, cycles);
}
