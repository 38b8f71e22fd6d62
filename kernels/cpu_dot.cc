#include "kernels/cpu_dot.h"

#include <cstring>

namespace moe {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define MOE_MULTIVERSION \
  __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define MOE_MULTIVERSION
#endif

MOE_MULTIVERSION
static void Bf16ToFloatBlock(const uint16_t* src, int n, float* dst) {
  for (int i = 0; i < n; ++i) {
    uint32_t bits = uint32_t{src[i]} << 16;
    std::memcpy(&dst[i], &bits, 4);
  }
}

void ConvertToFloat(const void* src, DType t, size_t offset, int n, float* dst) {
  switch (t) {
    case DType::kBF16:
      Bf16ToFloatBlock(static_cast<const uint16_t*>(src) + offset, n, dst);
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

MOE_MULTIVERSION
float DotFloat(const float* a, const float* b, int n) {
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

}  // namespace moe
