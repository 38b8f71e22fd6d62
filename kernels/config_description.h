// A Decompose-K config in words, for people: the benchmarks' tables, the server's load log,
// its kernel-info metric and the ModelInfo it answers. One line, no newlines or quotes; two
// configs get the same text exactly when the autotuner counts them as one (SameTunedConfig),
// so timings may be merged by it. Thread-safe.
//
//   "mma nt=1 S=8 polled coop ded 1cta"      one launch: mainloop, 8-token tiles per CTA,
//                                            K splits, the reduction and its launch options
//   "gemm tile=128x64 S=4 tma + epilogue kernel"   route_after_gemm by the tile GEMM
//   "cublasLt gemm + epilogue kernel"               route_after_gemm by cuBLASLt
//   "gemm tile=64 S=8 tma", "cublasLt gemm"         the general GEMM's (ChooseGemmConfig)
#pragma once

#include <string>

#include "kernels/decompose_k_router.h"

namespace moe::cuda {

std::string DescribeDecomposeKConfig(const DecomposeKConfig& config);

}  // namespace moe::cuda
