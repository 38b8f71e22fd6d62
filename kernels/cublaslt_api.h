// cuBLASLt's entry points, loaded with dlopen on first use instead of linked. The server
// routes after cuBLASLt's GEMM (DecomposeKConfig::route_after_gemm with gemm_cublas), and a
// binary that links libcublasLt gets its 94 KB of static TLS taken out of every thread's
// stack: civetweb's 100 KB worker stacks then failed to start (bench/NOTES.md session 56).
// Loaded after start-up, the library's TLS is allocated per thread on first use instead.
#pragma once

#include <cublasLt.h>

namespace moe::cuda {

struct CublasLtApi {
  decltype(&cublasLtCreate) create;
  decltype(&cublasLtDestroy) destroy;
  decltype(&cublasLtMatmul) matmul;
  decltype(&cublasLtMatmulAlgoGetHeuristic) algo_get_heuristic;
  decltype(&cublasLtMatmulDescCreate) desc_create;
  decltype(&cublasLtMatmulDescDestroy) desc_destroy;
  decltype(&cublasLtMatmulDescSetAttribute) desc_set_attribute;
  decltype(&cublasLtMatmulPreferenceCreate) preference_create;
  decltype(&cublasLtMatmulPreferenceDestroy) preference_destroy;
  decltype(&cublasLtMatmulPreferenceSetAttribute) preference_set_attribute;
  decltype(&cublasLtMatrixLayoutCreate) layout_create;
  decltype(&cublasLtMatrixLayoutDestroy) layout_destroy;
};

// The process's cuBLASLt (libcublasLt.so.<the major version built against>, found as the
// dynamic loader finds libraries), loaded once; null where it cannot be loaded or lacks an
// entry point. Thread-safe.
const CublasLtApi* LoadCublasLt();

}  // namespace moe::cuda
