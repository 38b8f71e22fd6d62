// cuBLAS GEMM + the routing-epilogue kernel (routing_epilogue_kernel.h): the baseline backend.
#include <cublas_v2.h>

#include "absl/strings/str_cat.h"
#include "kernels/cublas_router.h"
#include "kernels/cuda_data_type.h"
#include "kernels/routing_epilogue_kernel.h"

namespace moe::cuda {

absl::StatusOr<std::unique_ptr<CublasRouter>> CublasRouter::Create() {
  std::unique_ptr<CublasRouter> r(new CublasRouter());
  cublasHandle_t h;
  const cublasStatus_t st = cublasCreate(&h);
  if (st != CUBLAS_STATUS_SUCCESS)
    return absl::InternalError(absl::StrCat("cublasCreate failed: ", int(st)));
  r->handle_ = h;
  return r;
}

CublasRouter::~CublasRouter() {
  if (handle_) cublasDestroy(static_cast<cublasHandle_t>(handle_));
}

absl::Status CublasRouter::CanRoute(const RouteProblem& problem) {
  auto s = CheckRouteProblem(problem);
  if (!s.ok()) return s;
  if (problem.hidden_dtype != problem.weight_dtype)
    return absl::InvalidArgumentError(
        "dtype: the cuBLAS baseline needs equal hidden and weight dtypes");
  return absl::OkStatus();
}

size_t CublasRouter::WorkspaceBytes(const RouteProblem& p) {
  return sizeof(float) * size_t(p.tokens) * p.spec.experts;
}

cudaError_t CublasRouter::Gemm(const RouteProblem& p, const void* hidden, const void* weight,
                               float* logits, cudaStream_t stream) {
  auto h = static_cast<cublasHandle_t>(handle_);
  if (cublasSetStream(h, stream) != CUBLAS_STATUS_SUCCESS) return cudaErrorUnknown;
  const float alpha = 1.0f, beta = 0.0f;
  const int E = p.spec.experts, T = p.tokens, K = p.spec.hidden;
  // Column-major view: C[E x T] = W^T(E x K, stored K x E) * X(K x T, stored [T, K]).
  const cublasStatus_t st =
      cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, E, T, K, &alpha, weight,
                   ToCudaDataType(p.weight_dtype), K, hidden, ToCudaDataType(p.hidden_dtype), K,
                   &beta, logits, CUDA_R_32F, E, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  return st == CUBLAS_STATUS_SUCCESS ? cudaSuccess : cudaErrorUnknown;
}

cudaError_t CublasRouter::Route(const RouteProblem& problem, const RouteArgs& args, void* workspace,
                                cudaStream_t stream) {
  float* logits = static_cast<float*>(workspace);
  const cudaError_t err = Gemm(problem, args.hidden, args.weight, logits, stream);
  if (err != cudaSuccess) return err;
  return LaunchRoutingEpilogue(problem, logits, args, stream);
}

}  // namespace moe::cuda
