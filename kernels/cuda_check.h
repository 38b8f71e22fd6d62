// Checked CUDA calls. CUDA_RETURN_IF_ERROR(expr) returns the cudaError_t of a failing
// runtime call from a function returning cudaError_t; CUDA_STATUS(expr) turns a
// cudaError_t into an absl::Status naming the call. Header-only; thread-safe.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#define CUDA_RETURN_IF_ERROR(expr)                          \
  do {                                                      \
    const cudaError_t moe_cuda_err_ = (expr);               \
    if (moe_cuda_err_ != cudaSuccess) return moe_cuda_err_; \
  } while (0)

namespace moe {

inline absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(what, ": ", cudaGetErrorName(err), ": ", cudaGetErrorString(err)));
}

}  // namespace moe

#define CUDA_STATUS(expr) ::moe::CudaStatus((expr), #expr)
#define CUDA_RETURN_STATUS_IF_ERROR(expr)                \
  do {                                                   \
    ::absl::Status moe_cuda_status_ = CUDA_STATUS(expr); \
    if (!moe_cuda_status_.ok()) return moe_cuda_status_; \
  } while (0)
