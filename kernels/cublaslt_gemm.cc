// cublasLtMatmul for the general GEMM's large shapes (see cublaslt_gemm.h).
#include "kernels/cublaslt_gemm.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <type_traits>

#include "kernels/cublaslt_api.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_data_type.h"

namespace moe::cuda {
namespace {

// Distinct shapes a thread keeps plans for; past it the cache starts afresh (a caller
// sweeping shapes pays the ~10-30 us heuristic query again, nothing else).
constexpr size_t kMaxPlans = 512;

cudaError_t ToCudaError(cublasStatus_t st) {
  switch (st) {
    case CUBLAS_STATUS_SUCCESS:
      return cudaSuccess;
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return cudaErrorInitializationError;
    case CUBLAS_STATUS_ALLOC_FAILED:
      return cudaErrorMemoryAllocation;
    case CUBLAS_STATUS_INVALID_VALUE:
      return cudaErrorInvalidValue;
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return cudaErrorNoKernelImageForDevice;
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return cudaErrorLaunchFailure;
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return cudaErrorNotSupported;
    default:
      return cudaErrorUnknown;
  }
}

#define CUBLAS_RETURN_IF_ERROR(expr)                                                 \
  do {                                                                               \
    const cublasStatus_t moe_cublas_st_ = (expr);                                    \
    if (moe_cublas_st_ != CUBLAS_STATUS_SUCCESS) return ToCudaError(moe_cublas_st_); \
  } while (0)

// RAII owners of cuBLASLt's host objects.
struct LtHandleRelease {
  void operator()(cublasLtHandle_t h) const { LoadCublasLt()->destroy(h); }
};
struct MatmulDescRelease {
  void operator()(cublasLtMatmulDesc_t d) const { LoadCublasLt()->desc_destroy(d); }
};
struct LayoutRelease {
  void operator()(cublasLtMatrixLayout_t l) const { LoadCublasLt()->layout_destroy(l); }
};
struct PreferenceRelease {
  void operator()(cublasLtMatmulPreference_t p) const { LoadCublasLt()->preference_destroy(p); }
};
using LtHandle = std::unique_ptr<std::remove_pointer_t<cublasLtHandle_t>, LtHandleRelease>;
using MatmulDesc = std::unique_ptr<std::remove_pointer_t<cublasLtMatmulDesc_t>, MatmulDescRelease>;
using Layout = std::unique_ptr<std::remove_pointer_t<cublasLtMatrixLayout_t>, LayoutRelease>;
using Preference =
    std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>, PreferenceRelease>;

// The largest power of two up to 256 that divides the address: the heuristic must only
// offer algorithms that work at the pointers' real alignment.
uint32_t AlignmentOf(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = kCublasLtWorkspaceAlign;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

// What an algorithm depends on: the device, the shape, the dtype and the pointers'
// alignments, the bias's 0 where there is none (no bias epilogue), and the workspace usable.
using PlanKey =
    std::tuple<int, int, int, int, int, uint32_t, uint32_t, uint32_t, uint32_t, uint64_t>;

// One shape's descriptors and the algorithm cuBLAS's heuristic picked for it. In cuBLAS's
// column-major terms the row-major C[m, n] is D[n, m] = Bᵀ·A over column-major B[k, n]
// (transposed) and A[k, m], so the bias runs along D's rows.
struct Plan {
  MatmulDesc op;
  Layout b_layout, a_layout, d_layout;
  cublasLtMatmulAlgo_t algo;
  size_t algo_workspace = 0;  // what that algorithm asks of the workspace
};

cudaError_t MakePlan(const CublasLtApi& lt, cublasLtHandle_t handle, const GemmProblem& p,
                     const void* a, const void* b, const float* bias, float* c,
                     size_t usable_workspace, Plan* plan) {
  const cudaDataType_t dt = ToCudaDataType(p.dtype);
  cublasLtMatmulDesc_t op;
  CUBLAS_RETURN_IF_ERROR(lt.desc_create(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  plan->op.reset(op);
  const cublasOperation_t transpose = CUBLAS_OP_T, none = CUBLAS_OP_N;
  CUBLAS_RETURN_IF_ERROR(
      lt.desc_set_attribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
  CUBLAS_RETURN_IF_ERROR(
      lt.desc_set_attribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)));
  if (bias != nullptr) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_32F;
    CUBLAS_RETURN_IF_ERROR(
        lt.desc_set_attribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    CUBLAS_RETURN_IF_ERROR(lt.desc_set_attribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                 &bias_type, sizeof(bias_type)));
    // The heuristic reads the bias pointer's alignment from it.
    CUBLAS_RETURN_IF_ERROR(
        lt.desc_set_attribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  cublasLtMatrixLayout_t layout;
  CUBLAS_RETURN_IF_ERROR(lt.layout_create(&layout, dt, p.k, p.n, p.k));
  plan->b_layout.reset(layout);
  CUBLAS_RETURN_IF_ERROR(lt.layout_create(&layout, dt, p.k, p.m, p.k));
  plan->a_layout.reset(layout);
  CUBLAS_RETURN_IF_ERROR(lt.layout_create(&layout, CUDA_R_32F, p.n, p.m, p.n));
  plan->d_layout.reset(layout);

  cublasLtMatmulPreference_t raw_pref;
  CUBLAS_RETURN_IF_ERROR(lt.preference_create(&raw_pref));
  const Preference pref(raw_pref);
  const uint64_t max_workspace = usable_workspace;
  CUBLAS_RETURN_IF_ERROR(lt.preference_set_attribute(
      raw_pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_workspace, sizeof(max_workspace)));
  const uint32_t align_b = AlignmentOf(b), align_a = AlignmentOf(a), align_c = AlignmentOf(c);
  CUBLAS_RETURN_IF_ERROR(lt.preference_set_attribute(
      raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_b, sizeof(align_b)));
  CUBLAS_RETURN_IF_ERROR(lt.preference_set_attribute(
      raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_a, sizeof(align_a)));
  CUBLAS_RETURN_IF_ERROR(lt.preference_set_attribute(
      raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(align_c)));
  CUBLAS_RETURN_IF_ERROR(lt.preference_set_attribute(
      raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof(align_c)));

  cublasLtMatmulHeuristicResult_t result = {};
  int found = 0;
  CUBLAS_RETURN_IF_ERROR(lt.algo_get_heuristic(handle, op, plan->b_layout.get(),
                                               plan->a_layout.get(), plan->d_layout.get(),
                                               plan->d_layout.get(), raw_pref, 1, &result, &found));
  if (found == 0) return cudaErrorNotSupported;
  plan->algo = result.algo;
  plan->algo_workspace = result.workspaceSize;
  return cudaSuccess;
}

// This thread's cuBLASLt handles (one per device) and plans.
struct ThreadState {
  std::map<int, LtHandle> handles;
  std::map<PlanKey, Plan> plans;
};

ThreadState& State() {
  thread_local ThreadState state;
  return state;
}

// This thread's cuBLASLt handle for the current device (made on first use), and the device.
cudaError_t ThreadHandle(const CublasLtApi& lt, cublasLtHandle_t* handle, int* device) {
  CUDA_RETURN_IF_ERROR(cudaGetDevice(device));
  LtHandle& h = State().handles[*device];
  if (!h) {
    cublasLtHandle_t raw;
    CUBLAS_RETURN_IF_ERROR(lt.create(&raw));
    h.reset(raw);
  }
  *handle = h.get();
  return cudaSuccess;
}

}  // namespace

cudaError_t CublasLtGemmWorkspaceNeed(const GemmProblem& p, size_t* bytes) {
  const CublasLtApi* api = LoadCublasLt();
  if (api == nullptr) return cudaErrorSharedObjectInitFailed;
  cublasLtHandle_t handle;
  int device = 0;
  CUDA_RETURN_IF_ERROR(ThreadHandle(*api, &handle, &device));
  // An address at cuBLAS's widest alignment stands for the operands: the heuristic reads
  // only their alignment, never their memory.
  alignas(kCublasLtWorkspaceAlign) static float stand_in[kCublasLtWorkspaceAlign / sizeof(float)];
  float* const aligned = stand_in;
  Plan plan;
  CUDA_RETURN_IF_ERROR(MakePlan(*api, handle, p, aligned, aligned, nullptr, aligned,
                                kCublasLtUsableWorkspace, &plan));
  *bytes = plan.algo_workspace + kCublasLtWorkspaceAlign;
  return cudaSuccess;
}

cudaError_t LaunchCublasLtGemm(const GemmProblem& p, const void* a, const void* b,
                               const float* bias, float* c, void* workspace, size_t workspace_bytes,
                               cudaStream_t stream) {
  if (workspace == nullptr && workspace_bytes != 0) return cudaErrorInvalidValue;
  const CublasLtApi* api = LoadCublasLt();
  if (api == nullptr) return cudaErrorSharedObjectInitFailed;  // no libcublasLt to load
  const CublasLtApi& lt = *api;
  cublasLtHandle_t handle;
  int device = 0;
  CUDA_RETURN_IF_ERROR(ThreadHandle(lt, &handle, &device));
  ThreadState& state = State();
  // The workspace's start rounded up to cuBLAS's alignment, and what is left past it.
  const size_t pad =
      (kCublasLtWorkspaceAlign - reinterpret_cast<uintptr_t>(workspace) % kCublasLtWorkspaceAlign) %
      kCublasLtWorkspaceAlign;
  const uint64_t usable =
      workspace_bytes > pad ? std::min(workspace_bytes - pad, kCublasLtUsableWorkspace) : 0;
  void* aligned = usable > 0 ? static_cast<char*>(workspace) + pad : nullptr;
  const PlanKey key{device,
                    p.m,
                    p.n,
                    p.k,
                    int(p.dtype),
                    AlignmentOf(a),
                    AlignmentOf(b),
                    AlignmentOf(c),
                    bias != nullptr ? AlignmentOf(bias) : 0u,
                    usable};
  auto it = state.plans.find(key);
  if (it == state.plans.end()) {
    if (state.plans.size() >= kMaxPlans) state.plans.clear();
    Plan plan;
    CUDA_RETURN_IF_ERROR(MakePlan(lt, handle, p, a, b, bias, c, usable, &plan));
    it = state.plans.emplace(key, std::move(plan)).first;
  }
  Plan& plan = it->second;
  if (bias != nullptr)
    CUBLAS_RETURN_IF_ERROR(lt.desc_set_attribute(plan.op.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                 &bias, sizeof(bias)));
  const float one = 1.0f, zero = 0.0f;
  CUBLAS_RETURN_IF_ERROR(lt.matmul(handle, plan.op.get(), &one, b, plan.b_layout.get(), a,
                                   plan.a_layout.get(), &zero, c, plan.d_layout.get(), c,
                                   plan.d_layout.get(), &plan.algo, aligned, usable, stream));
  return cudaSuccess;
}

}  // namespace moe::cuda
