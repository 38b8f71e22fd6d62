#include "kernels/cpu_dot.h"

#include <cstdlib>
#include <cstring>

namespace moe {
namespace {

// Each inner loop is written once (an always-inlined body) and compiled three times, for
// AVX-512, AVX2 + FMA and the baseline; the CPU's features pick one at first use. Not
// target_clones("arch=skylake-avx512", "arch=haswell", ...): GCC's resolver matches those
// by CPU model, so this project's AMD EPYC ran the baseline (SSE2) clone.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define MOE_CPU_DISPATCH 1
#define MOE_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define MOE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define MOE_CPU_DISPATCH 0
#endif
#define MOE_INLINE inline __attribute__((always_inline))

enum class CpuLevel { kBaseline, kAvx2, kAvx512 };

CpuLevel DetectCpuLevel() {
  CpuLevel level = CpuLevel::kBaseline;
#if MOE_CPU_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    level = CpuLevel::kAvx512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    level = CpuLevel::kAvx2;
#endif
  // MOE_CPU_LEVEL=avx2|baseline lowers it (never raises it): the tests run every build of
  // the loops on one machine.
  const char* cap = std::getenv("MOE_CPU_LEVEL");
  if (cap != nullptr && std::strcmp(cap, "baseline") == 0) level = CpuLevel::kBaseline;
  if (cap != nullptr && std::strcmp(cap, "avx2") == 0 && level == CpuLevel::kAvx512)
    level = CpuLevel::kAvx2;
  return level;
}

CpuLevel Level() {
  static const CpuLevel level = DetectCpuLevel();
  return level;
}

// Defines Name(args) calling the body Name##Body compiled for the CPU's level.
#if MOE_CPU_DISPATCH
#define MOE_DISPATCHED(Ret, Name, Params, Args)                         \
  MOE_TARGET_AVX512 Ret Name##Avx512 Params { return Name##Body Args; } \
  MOE_TARGET_AVX2 Ret Name##Avx2 Params { return Name##Body Args; }     \
  Ret Name##Baseline Params { return Name##Body Args; }                 \
  Ret Name##Dispatch Params {                                           \
    switch (Level()) {                                                  \
      case CpuLevel::kAvx512:                                           \
        return Name##Avx512 Args;                                       \
      case CpuLevel::kAvx2:                                             \
        return Name##Avx2 Args;                                         \
      default:                                                          \
        return Name##Baseline Args;                                     \
    }                                                                   \
  }
#else
#define MOE_DISPATCHED(Ret, Name, Params, Args) \
  Ret Name##Dispatch Params { return Name##Body Args; }
#endif

MOE_INLINE void Bf16ToFloatBlockBody(const uint16_t* src, int n, float* dst) {
  for (int i = 0; i < n; ++i) {
    uint32_t bits = uint32_t{src[i]} << 16;
    std::memcpy(&dst[i], &bits, 4);
  }
}
MOE_DISPATCHED(void, Bf16ToFloatBlock, (const uint16_t* src, int n, float* dst), (src, n, dst))

MOE_INLINE float DotFloatBody(const float* a, const float* b, int n) {
  // 16 independent sums let the compiler keep whole vectors of FMAs in flight without
  // reassociating a single sum (which it may not do without -ffast-math).
  float acc[16] = {};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  float sum = 0.0f;
  for (int j = 0; j < 16; ++j) sum += acc[j];
  return sum + tail;
}
MOE_DISPATCHED(float, DotFloat, (const float* a, const float* b, int n), (a, b, n))

// 16 floats as one value: each accumulator of DotFloat4x4 stays in one zmm register (two
// ymm, or four xmm, at the lower levels). Lane j of acc[r][c] is DotFloat's acc[j].
typedef float Float16 __attribute__((vector_size(64)));

MOE_INLINE void DotFloat4x4Body(const float* const (&a)[4], const float* const (&b)[4], int n,
                                float (&out)[4][4]) {
  Float16 acc[4][4] = {};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    Float16 va[4], vb[4];
    for (int r = 0; r < 4; ++r) std::memcpy(&va[r], a[r] + i, sizeof(Float16));
    for (int c = 0; c < 4; ++c) std::memcpy(&vb[c], b[c] + i, sizeof(Float16));
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) acc[r][c] += va[r] * vb[c];
  }
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) {
      float tail = 0.0f;
      for (int q = i; q < n; ++q) tail += a[r][q] * b[c][q];
      float sum = 0.0f;
      for (int j = 0; j < 16; ++j) sum += acc[r][c][j];
      out[r][c] = sum + tail;
    }
}
MOE_DISPATCHED(void, DotFloat4x4,
               (const float* const (&a)[4], const float* const (&b)[4], int n, float (&out)[4][4]),
               (a, b, n, out))

}  // namespace

void ConvertToFloat(const void* src, DType t, size_t offset, int n, float* dst) {
  switch (t) {
    case DType::kBF16:
      Bf16ToFloatBlockDispatch(static_cast<const uint16_t*>(src) + offset, n, dst);
      break;
    case DType::kFP16: {
      const uint16_t* p = static_cast<const uint16_t*>(src) + offset;
      for (int i = 0; i < n; ++i) dst[i] = Fp16ToFloat(p[i]);
      break;
    }
    case DType::kFP32:
      std::memcpy(dst, static_cast<const float*>(src) + offset, sizeof(float) * n);
      break;
  }
}

float DotFloat(const float* a, const float* b, int n) { return DotFloatDispatch(a, b, n); }

void DotFloat4x4(const float* const (&a)[4], const float* const (&b)[4], int n,
                 float (&out)[4][4]) {
  DotFloat4x4Dispatch(a, b, n, out);
}

bool CpuDotPrefersBlocks() { return Level() == CpuLevel::kAvx512; }

const char* CpuDotLevelName() {
  switch (Level()) {
    case CpuLevel::kAvx512:
      return "avx512";
    case CpuLevel::kAvx2:
      return "avx2+fma";
    default:
      return "baseline";
  }
}

}  // namespace moe
