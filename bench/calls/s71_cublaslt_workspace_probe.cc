// Session 71 scratch probe (not built by CMake): how much of the 32 MiB workspace cuBLASLt's
// heuristic asks for on the GEMMs this project hands it (kernels/cublaslt_gemm.cc's plan:
// D[n, m] = Bᵀ·A, bf16 operands, fp32 compute and output, 256-byte aligned pointers, no bias),
// and what its first five algorithms would need. Build:
//   g++ -O2 -I/usr/local/cuda/include s71_cublaslt_workspace_probe.cc \
//       -L/usr/local/cuda/lib64 -lcublasLt -lcudart -o cublaslt_workspace_probe
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

#define CHECK(x)                                           \
  do {                                                     \
    if ((x) != CUBLAS_STATUS_SUCCESS) {                    \
      std::printf("%s failed at line %d\n", #x, __LINE__); \
      return;                                              \
    }                                                      \
  } while (0)

void Probe(cublasLtHandle_t h, int m, int n, int k) {
  cublasLtMatmulDesc_t op;
  CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t t = CUBLAS_OP_T, none = CUBLAS_OP_N;
  CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t)));
  CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)));
  cublasLtMatrixLayout_t b, a, d;
  CHECK(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, k, n, k));
  CHECK(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, k, m, k));
  CHECK(cublasLtMatrixLayoutCreate(&d, CUDA_R_32F, n, m, n));
  cublasLtMatmulPreference_t pref;
  CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t max_ws = uint64_t(32) << 20;
  CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &max_ws, sizeof(max_ws)));
  cublasLtMatmulHeuristicResult_t r[5] = {};
  int found = 0;
  CHECK(cublasLtMatmulAlgoGetHeuristic(h, op, b, a, d, d, pref, 5, r, &found));
  std::printf("%5d x %5d x %6d:", m, n, k);
  for (int i = 0; i < found; ++i)
    std::printf(" %s%zu", i == 0 ? "[first] " : "", r[i].workspaceSize);
  std::printf(" bytes");
  // Call 2: with only what the first algorithm asks for (a plan's workspace since session
  // 71), and with none, is the first algorithm the same one?
  for (uint64_t limit : {uint64_t(r[0].workspaceSize), uint64_t(0)}) {
    CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                               &limit, sizeof(limit)));
    cublasLtMatmulHeuristicResult_t again = {};
    int n_again = 0;
    CHECK(cublasLtMatmulAlgoGetHeuristic(h, op, b, a, d, d, pref, 1, &again, &n_again));
    std::printf("; limit %zu: %s", size_t(limit),
                n_again == 0                                                    ? "none"
                : std::memcmp(&again.algo, &r[0].algo, sizeof(again.algo)) == 0 ? "same algo"
                                                                                : "another algo");
  }
  std::printf("\n");
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(b);
  cublasLtMatrixLayoutDestroy(a);
  cublasLtMatrixLayoutDestroy(d);
  cublasLtMatmulDescDestroy(op);
}

int main() {
  cublasLtHandle_t h;
  if (cublasLtCreate(&h) != CUBLAS_STATUS_SUCCESS) return 1;
  // Routing after the GEMM: DeepSeek-V3 (256 experts) and Kimi K2 (384) at 129-256 tokens.
  for (int tokens : {129, 192, 256}) {
    Probe(h, tokens, 256, 7168);
    Probe(h, tokens, 384, 7168);
  }
  // The general GEMM's cuBLASLt shapes (GemmTakesCublas).
  const int shapes[][3] = {{300, 700, 2048},    {16, 1024, 8192},  {1024, 1024, 32768},
                           {8, 1024, 65536},    {512, 16, 131072}, {256, 256, 131072},
                           {1024, 4096, 131072}};
  for (const auto& s : shapes) Probe(h, s[0], s[1], s[2]);
  cublasLtDestroy(h);
  return 0;
}
