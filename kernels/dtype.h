// Element types of hidden states and router weights, and exact host conversions.
// Header-only, stateless, thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/strings/string_view.h"

namespace moe {

enum class DType : int { kBF16 = 0, kFP16 = 1, kFP32 = 2 };

inline constexpr size_t DTypeSize(DType t) { return t == DType::kFP32 ? 4 : 2; }

// The exponent bits of one value of type t: it is a NaN or an infinity exactly when they
// are all ones (the finite checks test bits, not converted floats).
inline constexpr uint32_t ExponentMask(DType t) {
  return t == DType::kBF16 ? 0x7f80u : t == DType::kFP16 ? 0x7c00u : 0x7f800000u;
}

inline constexpr absl::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kBF16:
      return "bf16";
    case DType::kFP16:
      return "fp16";
    case DType::kFP32:
      return "fp32";
  }
  return "unknown";
}

inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t FloatToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float Bf16ToFloat(uint16_t h) { return BitsToFloat(uint32_t{h} << 16); }

// Round to nearest even; NaN stays NaN.
inline uint16_t FloatToBf16(float f) {
  uint32_t u = FloatToBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float Fp16ToFloat(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return BitsToFloat(sign | 0x7f800000u | (mant << 13));  // inf / nan
  if (exp == 0) {
    if (mant == 0) return BitsToFloat(sign);
    // Subnormal: value = mant * 2^-24.
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return BitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
}

// Round to nearest even, overflow to infinity.
inline uint16_t FloatToFp16(float f) {
  uint32_t u = FloatToBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return sign | 0x7e00u;
  if (u >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: inf
  if (u < 0x38800000u) {                        // below the smallest normal: subnormal
    float v = BitsToFloat(u);
    // Scale so that one fp16 subnormal ulp (2^-24) is 1, round to nearest even.
    float scaled = v * 16777216.0f;
    uint32_t m = static_cast<uint32_t>(scaled);
    float rem = scaled - static_cast<float>(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return sign | static_cast<uint16_t>(m);
  }
  uint32_t rounded = u + 0xfffu + ((u >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded - 0x38000000u) >> 13);
}

// Reads element i of a raw little-endian array of type t as float. Any alignment: raw
// buffers (request bytes, files) need not be aligned to the element size.
inline float LoadAsFloat(const void* data, DType t, size_t i) {
  const auto* at = static_cast<const unsigned char*>(data) + i * DTypeSize(t);
  switch (t) {
    case DType::kBF16:
    case DType::kFP16: {
      uint16_t h;
      std::memcpy(&h, at, 2);
      return t == DType::kBF16 ? Bf16ToFloat(h) : Fp16ToFloat(h);
    }
    case DType::kFP32: {
      float f;
      std::memcpy(&f, at, 4);
      return f;
    }
  }
  return 0.0f;
}

// Writes v as type t into element i of a raw array (any alignment).
inline void StoreFromFloat(void* data, DType t, size_t i, float v) {
  auto* at = static_cast<unsigned char*>(data) + i * DTypeSize(t);
  switch (t) {
    case DType::kBF16:
    case DType::kFP16: {
      const uint16_t h = t == DType::kBF16 ? FloatToBf16(v) : FloatToFp16(v);
      std::memcpy(at, &h, 2);
      break;
    }
    case DType::kFP32:
      std::memcpy(at, &v, 4);
      break;
  }
}

}  // namespace moe
