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

// Defines Name##Dispatch(args) calling the body Name##Body<level> compiled for the CPU's
// level (a body may differ per level, as DotFloat4x4's block shape does). Params and Args
// are parenthesised lists, Ret a type: none can take parentheses of their own.
// NOLINTBEGIN(bugprone-macro-parentheses)
#if MOE_CPU_DISPATCH
#define MOE_DISPATCHED(Ret, Name, Params, Args)                                            \
  MOE_TARGET_AVX512 Ret Name##Avx512 Params { return Name##Body<CpuLevel::kAvx512> Args; } \
  MOE_TARGET_AVX2 Ret Name##Avx2 Params { return Name##Body<CpuLevel::kAvx2> Args; }       \
  Ret Name##Baseline Params { return Name##Body<CpuLevel::kBaseline> Args; }               \
  Ret Name##Dispatch Params {                                                              \
    switch (Level()) {                                                                     \
      case CpuLevel::kAvx512:                                                              \
        return Name##Avx512 Args;                                                          \
      case CpuLevel::kAvx2:                                                                \
        return Name##Avx2 Args;                                                            \
      default:                                                                             \
        return Name##Baseline Args;                                                        \
    }                                                                                      \
  }
#else
#define MOE_DISPATCHED(Ret, Name, Params, Args) \
  Ret Name##Dispatch Params { return Name##Body<CpuLevel::kBaseline> Args; }
#endif
// NOLINTEND(bugprone-macro-parentheses)

template <CpuLevel>
MOE_INLINE void Bf16ToFloatBlockBody(const uint16_t* src, int n, float* dst) {
  for (int i = 0; i < n; ++i) {
    uint32_t bits = uint32_t{src[i]} << 16;
    std::memcpy(&dst[i], &bits, 4);
  }
}
MOE_DISPATCHED(void, Bf16ToFloatBlock, (const uint16_t* src, int n, float* dst), (src, n, dst))

// tail + x * y as every loop here takes its scalar tail: one fused multiply-add where the
// level has FMA, a multiply then an add where it has not. Written out, not left to the
// compiler: GCC contracted DotFloat's 7-element tail at AVX2 differently from
// DotFloatBf16's (in about one run in four the last bit differed, and CI caught it).
// The vector levels (AVX2 + FMA, AVX-512) fuse; the vector bodies below run only there.
template <bool kFused>
MOE_INLINE float TailMulAdd(float tail, float x, float y) {
  if constexpr (kFused) {
    return __builtin_fmaf(x, y, tail);
  } else {
    const float product = x * y;  // rounded on its own: the baseline has no FMA to fuse with
    return tail + product;
  }
}
constexpr bool HasFma(CpuLevel level) { return level != CpuLevel::kBaseline; }

// DotFloat's arithmetic, once: sum_i a[i] * b(i), where b(i) reads element i of the other
// operand and `step(i)` runs before each 16-element step (DotFloatBf16's prefetch).
template <CpuLevel L, typename B, typename Step>
MOE_INLINE float DotLoop(const float* a, B b, Step step, int n) {
  // 16 independent sums let the compiler keep whole vectors of FMAs in flight without
  // reassociating a single sum (which it may not do without -ffast-math).
  float acc[16] = {};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    step(i);
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b(i + j);
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail = TailMulAdd<HasFma(L)>(tail, a[i], b(i));
  float sum = 0.0f;
  for (int j = 0; j < 16; ++j) sum += acc[j];
  return sum + tail;
}

template <CpuLevel L>
MOE_INLINE float DotFloatBody(const float* a, const float* b, int n) {
  return DotLoop<L>(
      a, [b](int i) { return b[i]; }, [](int) {}, n);
}
MOE_DISPATCHED(float, DotFloat, (const float* a, const float* b, int n), (a, b, n))

// Native vectors of 16 and 8 floats. An accumulator is 16 lanes in 16 / W vectors of W:
// lane j of acc[r][c] is DotFloat's acc[j].
typedef float Float16 __attribute__((vector_size(64)));
typedef float Float8 __attribute__((vector_size(32)));

// out[r0 + r][c0 + c] = DotFloat(a[r0 + r], b[c0 + c], n) for an R x C block, to the bit;
// each vector of a and b is loaded once per C (R) multiply-adds. The loops over the block
// must be unrolled for the accumulators to live in registers: without the pragmas GCC
// kept them in memory (an AVX2 2 x 2 block took 7.7 us for 16 dots of 1024, one pair at a
// time 2.1; with them 0.6 against 1.1).
template <typename V, int R, int C>
MOE_INLINE void DotBlockBody(const float* const (&a)[4], const float* const (&b)[4], int n, int r0,
                             int c0, float (&out)[4][4]) {
  constexpr int W = sizeof(V) / sizeof(float), L = 16 / W;
  V acc[R][C][L] = {};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    V va[R][L], vb[C][L];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int l = 0; l < L; ++l) std::memcpy(&va[r][l], a[r0 + r] + i + l * W, sizeof(V));
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c)
#pragma GCC unroll 16
      for (int l = 0; l < L; ++l) std::memcpy(&vb[c][l], b[c0 + c] + i + l * W, sizeof(V));
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int c = 0; c < C; ++c)
#pragma GCC unroll 16
        for (int l = 0; l < L; ++l) acc[r][c][l] += va[r][l] * vb[c][l];
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float tail = 0.0f;
      for (int q = i; q < n; ++q) tail = TailMulAdd<true>(tail, a[r0 + r][q], b[c0 + c][q]);
      float sum = 0.0f;
      for (int j = 0; j < 16; ++j) sum += acc[r][c][j / W][j % W];
      out[r0 + r][c0 + c] = sum + tail;
    }
}

// How far ahead DotFloatBf16 prefetches its bf16 row: 2 KB. A standalone 2-thread bf16 row
// stream (fused convert and FMA, 235 MB of rows) on the project's Xeon VM: 9.8-11.2 GB/s
// without software prefetch, 11.4-12.8 with it 2 KB ahead (512 B and 1 KB ahead gave less;
// one thread 6.2 -> 9.1).
constexpr int kBf16PrefetchElements = 1024;

// Half: W bf16 values; Word: the W 32-bit patterns they widen to.
typedef uint16_t Half16 __attribute__((vector_size(32)));
typedef uint32_t Word16 __attribute__((vector_size(64)));
typedef uint16_t Half8 __attribute__((vector_size(16)));
typedef uint32_t Word8 __attribute__((vector_size(32)));

// DotFloat(a, b converted to float, n) to the bit, b converted in registers: with vectors,
// the 1 x 1 case of DotBlockBody (whose lanes are DotFloat's, by the CpuDot tests) with b's
// vectors widened from bf16; at the baseline (no FMA, so each multiply and add rounds on
// its own however the compiler vectorises) DotFloat's own loop, DotLoop. Not DotLoop at
// every level: GCC vectorised half its lanes at AVX2 and left the other half as scalar
// multiplies and adds, not fused, one rounding more than DotFloat's.
template <typename V, typename Half, typename Word>
MOE_INLINE float DotBf16VectorBody(const float* a, const uint16_t* b, int n) {
  constexpr int W = sizeof(V) / sizeof(float), L = 16 / W;
  static_assert(sizeof(Half) == 2 * W && sizeof(Word) == sizeof(V), "W lanes each");
  V acc[L] = {};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    __builtin_prefetch(b + i + kBf16PrefetchElements);  // never faults, also past the end
#pragma GCC unroll 16
    for (int l = 0; l < L; ++l) {
      V va, vb;
      Half h;
      std::memcpy(&va, a + i + l * W, sizeof(V));
      std::memcpy(&h, b + i + l * W, sizeof(Half));
      const Word bits = __builtin_convertvector(h, Word) << 16;
      std::memcpy(&vb, &bits, sizeof(V));
      acc[l] += va * vb;
    }
  }
  float tail = 0.0f;
  for (int q = i; q < n; ++q) tail = TailMulAdd<true>(tail, a[q], Bf16ToFloat(b[q]));
  float sum = 0.0f;
  for (int j = 0; j < 16; ++j) sum += acc[j / W][j % W];
  return sum + tail;
}

template <CpuLevel L>
MOE_INLINE float DotFloatBf16Body(const float* a, const uint16_t* b, int n) {
  if constexpr (L == CpuLevel::kAvx512) {
    return DotBf16VectorBody<Float16, Half16, Word16>(a, b, n);
  } else if constexpr (L == CpuLevel::kAvx2) {
    return DotBf16VectorBody<Float8, Half8, Word8>(a, b, n);
  } else {
    return DotLoop<L>(
        a, [b](int i) { return Bf16ToFloat(b[i]); },
        [b](int i) { __builtin_prefetch(b + i + kBf16PrefetchElements); }, n);
  }
}
MOE_DISPATCHED(float, DotFloatBf16, (const float* a, const uint16_t* b, int n), (a, b, n))

// The 4 x 4 block in the shape the level's registers hold: AVX-512 one 4 x 4 block (16 of
// the 32 zmm registers hold the accumulators), AVX2 four 2 x 2 blocks (8 of 16 ymm), the
// baseline one pair at a time.
template <CpuLevel L>
MOE_INLINE void DotFloat4x4Body(const float* const (&a)[4], const float* const (&b)[4], int n,
                                float (&out)[4][4]) {
  if constexpr (L == CpuLevel::kAvx512) {
    DotBlockBody<Float16, 4, 4>(a, b, n, 0, 0, out);
  } else if constexpr (L == CpuLevel::kAvx2) {
    for (int r0 = 0; r0 < 4; r0 += 2)
      for (int c0 = 0; c0 < 4; c0 += 2) DotBlockBody<Float8, 2, 2>(a, b, n, r0, c0, out);
  } else {
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) out[r][c] = DotFloatBody<L>(a[r], b[c], n);
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

float DotFloatBf16(const float* a, const uint16_t* b, int n) {
  return DotFloatBf16Dispatch(a, b, n);
}

void DotFloat4x4(const float* const (&a)[4], const float* const (&b)[4], int n,
                 float (&out)[4][4]) {
  DotFloat4x4Dispatch(a, b, n, out);
}

bool CpuDotPrefersBlocks() { return Level() != CpuLevel::kBaseline; }

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
