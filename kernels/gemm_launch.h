// The general GEMM's one launch call: C[M,N] = A[M,K]·B[N,K]ᵀ (+ bias[N]) with the config
// ChooseGemmConfig gave, cuBLASLt (cublaslt_gemm.h, loaded on first use) where it hands the
// shape to cuBLAS, Decompose-K (LaunchDecomposeKGemm) otherwise. Also the GEMM of a
// route_after_gemm router config (decompose_k_router.cu).
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/decompose_k_router.h"

namespace moe::cuda {

// As LaunchDecomposeKGemm, `workspace` of `workspace_bytes`: at least
// GemmWorkspaceBytes(problem, config) for the Decompose-K configs (less:
// cudaErrorInvalidValue); cuBLASLt takes the best algorithm that fits whatever it is given.
// With `pdl` the Decompose-K kernels launch with Programmatic Dependent Launch (B must then
// not be written by the kernel before); cuBLAS launches in plain stream order either way,
// which only forgoes the early start.
cudaError_t LaunchGemm(const GemmProblem& problem, const void* a, const void* b, const float* bias,
                       float* c, const DecomposeKConfig& config, void* workspace,
                       size_t workspace_bytes, cudaStream_t stream, bool pdl = false);

}  // namespace moe::cuda
