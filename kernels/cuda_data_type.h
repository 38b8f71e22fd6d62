// The CUDA library data type (cuBLAS, cuBLASLt) of an operand dtype. Header-only.
#pragma once

#include <library_types.h>

#include "kernels/dtype.h"

namespace moe::cuda {

inline cudaDataType_t ToCudaDataType(DType t) {
  switch (t) {
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kFP16:
      return CUDA_R_16F;
    case DType::kFP32:
      return CUDA_R_32F;
  }
  return CUDA_R_32F;
}

}  // namespace moe::cuda
