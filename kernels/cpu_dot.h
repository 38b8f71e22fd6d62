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

// The 4 x 4 dot products out[r][c] = DotFloat(a[r], b[c], n), each bit-identical to
// DotFloat's (the same 16 lane sums, the same final order), but with every a and b vector
// loaded once per 16 multiply-adds instead of once per one: four tokens against four
// experts, so a token's result does not depend on the tokens batched with it.
void DotFloat4x4(const float* const (&a)[4], const float* const (&b)[4], int n, float (&out)[4][4]);

// Whether DotFloat4x4 beats sixteen DotFloat calls here: at the AVX-512 level (its 16
// accumulators fill 16 of 32 zmm registers). With AVX2 they would need 32 of 16 ymm
// registers and spill: measured on an AMD EPYC, DeepSeek-V3 at 256 tokens 32.5 ms blocked
// against ~20 one pair at a time.
bool CpuDotPrefersBlocks();

// The instruction level the loops above run at on this CPU: "avx512", "avx2+fma" or
// "baseline" (for benchmark reports). The environment variable MOE_CPU_LEVEL=avx2 or
// baseline lowers it, never raises it.
const char* CpuDotLevelName();

}  // namespace moe
