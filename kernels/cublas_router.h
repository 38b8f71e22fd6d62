// The cuBLAS baseline: logits with cublasGemmEx (fp32 accumulation) into a workspace,
// then the same routing epilogue as the fused kernel in a second kernel (one warp per
// token). The honest peer in every benchmark and a fallback backend.
// Thread-safety: a CublasRouter owns a cuBLAS handle; use one per thread or stream.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/route_args.h"
#include "kernels/routing_epilogue_kernel.h"  // LaunchRoutingEpilogue, its second kernel

namespace moe::cuda {

class CublasRouter {
 public:
  static absl::StatusOr<std::unique_ptr<CublasRouter>> Create();
  ~CublasRouter();

  static absl::Status CanRoute(const RouteProblem& problem);
  static size_t WorkspaceBytes(const RouteProblem& problem);

  // GEMM only (logits [tokens, experts] fp32, no bias) into `logits`.
  cudaError_t Gemm(const RouteProblem& problem, const void* hidden, const void* weight,
                   float* logits, cudaStream_t stream);
  // GEMM + bias + routing epilogue.
  cudaError_t Route(const RouteProblem& problem, const RouteArgs& args, void* workspace,
                    cudaStream_t stream);

 private:
  CublasRouter() = default;
  void* handle_ = nullptr;  // cublasHandle_t
};

}  // namespace moe::cuda
