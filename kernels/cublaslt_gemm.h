// The general GEMM's hand-off to cuBLASLt, for the shapes where cuBLAS's own tiling beats
// Decompose-K: an operand of 512 rows or more, both past ~128, or a GEMV-like stream of
// 2048+ rows (GemmTakesCublas in decompose_k_config.cc says which, with the measurements).
//
// C[m, n] = A[m, k]·B[n, k]ᵀ (+ bias[n]), C float32 row-major, fp32 accumulation (fp32
// operands: true fp32, no TF32), by one cublasLtMatmul on the caller's stream with the
// bias folded into its epilogue. Graph-capturable; no allocation per call (the caller's
// workspace holds cuBLAS's split-K partials). Deterministic: the same algorithm for a shape
// every call (cached), so the same bits.
//
// Thread-safety: each thread keeps its own cuBLASLt handle per device and its own cache of
// descriptors and algorithms per shape, so concurrent calls from different threads share
// nothing but need distinct workspaces. cuBLASLt itself is loaded on the first call
// (cublaslt_api.h); where it cannot be, the launch returns cudaErrorSharedObjectInitFailed.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/decompose_k_router.h"

namespace moe::cuda {

// The usable part of a cuBLASLt GEMM's workspace: cuBLAS's recommended 32 MiB for Hopper
// (its split-K algorithms keep partials there; less would exclude them), and the alignment
// it is given at.
inline constexpr size_t kCublasLtUsableWorkspace = size_t(32) << 20;
inline constexpr size_t kCublasLtWorkspaceAlign = 256;

// Bytes of workspace that let cuBLASLt pick from all its algorithms (room to align its
// start included): the same for every shape, what the C ABI asks its callers for; it need
// not be zeroed.
inline constexpr size_t CublasLtGemmWorkspaceBytes() {
  return kCublasLtUsableWorkspace + kCublasLtWorkspaceAlign;
}

// Bytes of workspace the algorithm cuBLASLt's heuristic picks for `problem` on the current
// device asks for (its split-K partials, e.g. 0.4-1.2 MiB for the router GEMMs of DeepSeek-V3
// and Kimi K2 at 129-256 tokens on the H100), plus the alignment room: what a workspace
// owned by one problem's plan needs instead of CublasLtGemmWorkspaceBytes(). Asked for
// operands at cuBLAS's widest alignment and no bias; a launch whose pointers are aligned
// less may get another algorithm, one that fits the workspace it is given.
cudaError_t CublasLtGemmWorkspaceNeed(const GemmProblem& problem, size_t* bytes);

// Launches the GEMM with the best algorithm that fits `workspace_bytes` (from none to
// CublasLtGemmWorkspaceBytes(); the same algorithm every call for a shape, alignment and
// workspace size). A and B 16-byte aligned (as the C ABI demands), C and the bias any float
// alignment. cuBLAS failures come back as the nearest cudaError_t (an algorithm cuBLAS does
// not have for the shape: cudaErrorNotSupported).
cudaError_t LaunchCublasLtGemm(const GemmProblem& problem, const void* a, const void* b,
                               const float* bias, float* c, void* workspace, size_t workspace_bytes,
                               cudaStream_t stream);

}  // namespace moe::cuda
