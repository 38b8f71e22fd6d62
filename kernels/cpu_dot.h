// Vectorised inner loops of the CPU backend. Each is compiled for several x86 levels
// (AVX-512, AVX2+FMA, baseline) and picked at first use by the CPU's features.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"

namespace moe {

// Converts n elements of type t starting at element `offset` of `src` to float.
void ConvertToFloat(const void* src, DType t, size_t offset, int n, float* dst);

// sum_i a[i] * b[i] in float, with 16 independent partial sums.
float DotFloat(const float* a, const float* b, int n);

// DotFloat(a, b, n) with b in bf16, each element converted as it is read: the same value to
// the bit as DotFloat on the converted row, without the converted copy. b, the weight row a
// small batch streams from memory, is also prefetched 2 KB ahead in software (cpu_dot.cc
// has the measurement).
float DotFloatBf16(const float* a, const uint16_t* b, int n);

// The 4 x 4 dot products out[r][c] = DotFloat(a[r], b[c], n), each bit-identical to
// DotFloat's (the same 16 lane sums, the same final order), but with each vector of a and
// b loaded once for several multiply-adds (AVX-512: 8 loads per 16, DotFloat 2 per 1):
// four tokens against four experts, so a token's result does not depend on the tokens
// batched with it.
void DotFloat4x4(const float* const (&a)[4], const float* const (&b)[4], int n, float (&out)[4][4]);

// Whether DotFloat4x4 beats sixteen DotFloat calls here: with AVX-512 (one 4 x 4 block)
// and with AVX2 (four 2 x 2 blocks), not at the baseline level. Measured on an AMD EPYC,
// DeepSeek-V3 at 256 tokens: AVX-512 ~20 -> 7.3 ms, AVX2 22-28 -> 12-15 ms.
bool CpuDotPrefersBlocks();

// The instruction level the loops above run at on this CPU: "avx512", "avx2+fma" or
// "baseline" (for benchmark reports). The environment variable MOE_CPU_LEVEL=avx2 or
// baseline lowers it, never raises it.
const char* CpuDotLevelName();

}  // namespace moe
