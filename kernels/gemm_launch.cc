// The general GEMM's dispatch between cuBLASLt and Decompose-K (gemm_launch.h).
#include "kernels/gemm_launch.h"

#include "kernels/cublaslt_gemm.h"

namespace moe::cuda {

cudaError_t LaunchGemm(const GemmProblem& problem, const void* a, const void* b, const float* bias,
                       float* c, const DecomposeKConfig& config, void* workspace,
                       size_t workspace_bytes, cudaStream_t stream, bool pdl) {
  if (config.gemm_cublas)
    return LaunchCublasLtGemm(problem, a, b, bias, c, workspace, workspace_bytes, stream);
  if (workspace_bytes < GemmWorkspaceBytes(problem, config)) return cudaErrorInvalidValue;
  return LaunchDecomposeKGemm(problem, a, b, bias, c, config, workspace, stream, pdl);
}

}  // namespace moe::cuda
