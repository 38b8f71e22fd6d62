// Vectorised inner loops of the CPU backend. Each is compiled for several x86 levels
// (AVX-512, AVX2+FMA, baseline) and picked at load time by the CPU's features.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"

namespace moe {

// Converts n elements of type t starting at element `offset` of `src` to float.
void ConvertToFloat(const void* src, DType t, size_t offset, int n, float* dst);

// sum_i a[i] * b[i] in float, with 16 independent partial sums.
float DotFloat(const float* a, const float* b, int n);

}  // namespace moe
