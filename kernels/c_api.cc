// The C ABI over the fused router and the Decompose-K GEMM (see moe_kernels.h).
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "kernels/build_version.h"
#include "kernels/config_description.h"
#include "kernels/cuda_device.h"
#include "kernels/decompose_k_router.h"
#include "kernels/gemm_launch.h"
#include "kernels/moe_kernels.h"

namespace {

thread_local std::string last_error;

int Fail(int code, std::string message) {
  last_error = std::move(message);
  return code;
}

// The calling thread's current device, the one its stream and pointers belong to: a process
// may drive several, with different SM counts (the heuristic's grid and the workspace it
// asks for follow the SMs; a persistent grid sized for more SMs than the device has would
// not fit). Probed once per ordinal; the table and its lock are never destroyed, as calls
// may come at exit.
const moe::cuda::DeviceInfo& Device() {
  int ordinal = 0;
  if (cudaGetDevice(&ordinal) != cudaSuccess) {
    cudaGetLastError();  // no driver or device: ProbeDevice(0) says which
    ordinal = 0;
  }
  static auto* const mu = new std::mutex;
  static auto* const probed = new std::map<int, moe::cuda::DeviceInfo>;
  std::lock_guard<std::mutex> lock(*mu);
  auto it = probed->find(ordinal);
  if (it == probed->end()) it = probed->emplace(ordinal, moe::cuda::ProbeDevice(ordinal)).first;
  return it->second;
}

int SmCount() { return Device().available ? Device().sm_count : 1; }

// moe_route_config and moe_gemm_config describe what would run on the device: without
// one there is nothing to describe (the heuristic would size a grid for one SM).
bool DeviceOrFail() {
  if (Device().available) return true;
  Fail(MOE_CUDA_ERROR, "no usable CUDA device: " + Device().reason);
  return false;
}

bool ValidDType(int d) { return d >= MOE_BF16 && d <= MOE_FP32; }

// The kernels read operands in 16-byte vectors (and the GEMM's TMA maps need 16-byte
// bases), and store partials into the workspace in 16-byte vectors (the staged router, the
// tile GEMM): a misaligned pointer would fault on the device and poison the caller's
// context. Checked before anything touches the device. Null passes here; the null and
// size checks name it.
int CheckAligned16(const void* p, const char* field) {
  if (reinterpret_cast<uintptr_t>(p) % 16 == 0) return MOE_OK;
  return Fail(MOE_INVALID_ARGUMENT, std::string(field) + ": not 16-byte aligned");
}

// moe_route's and moe_route_config's checks of what ToProblem converts (an enum out of
// range would be no Scoring or DType at all).
int CheckRouteCall(const moe_router_spec* spec, int hidden_dtype, int weight_dtype) {
  if (spec == nullptr) return Fail(MOE_INVALID_ARGUMENT, "spec: null");
  if (!ValidDType(hidden_dtype)) return Fail(MOE_INVALID_ARGUMENT, "hidden_dtype: invalid");
  if (!ValidDType(weight_dtype)) return Fail(MOE_INVALID_ARGUMENT, "weight_dtype: invalid");
  if (spec->scoring < 0 || spec->scoring > 2) return Fail(MOE_INVALID_ARGUMENT, "scoring: invalid");
  if (spec->order < 0 || spec->order > 1) return Fail(MOE_INVALID_ARGUMENT, "order: invalid");
  return MOE_OK;
}

moe::RouteProblem ToProblem(const moe_router_spec& s, int tokens, int hd, int wd) {
  moe::RouteProblem p;
  p.spec.family = "c_api";
  p.spec.hidden = s.hidden;
  p.spec.experts = s.experts;
  p.spec.top_k = s.top_k;
  p.spec.scoring = static_cast<moe::Scoring>(s.scoring);
  p.spec.order = static_cast<moe::RoutingOrder>(s.order);
  p.spec.has_router_bias = s.has_router_bias != 0;
  p.spec.has_correction_bias = s.has_correction_bias != 0;
  p.spec.n_group = s.n_group;
  p.spec.topk_group = s.topk_group;
  p.spec.group_score_topk = s.group_score_topk;
  p.spec.renormalize = s.renormalize != 0;
  p.spec.scaling_factor = s.scaling_factor;
  p.tokens = tokens;
  p.hidden_dtype = static_cast<moe::DType>(hd);
  p.weight_dtype = static_cast<moe::DType>(wd);
  return p;
}

}  // namespace

extern "C" {

int moe_router_preset(const char* family, moe_router_spec* spec) {
  if (family == nullptr || spec == nullptr) return Fail(MOE_INVALID_ARGUMENT, "null argument");
  auto preset = moe::FindPreset(family);
  if (!preset.ok()) return Fail(MOE_INVALID_ARGUMENT, std::string(preset.status().message()));
  const moe::RouterSpec& s = preset->spec;
  *spec = {s.hidden,
           s.experts,
           s.top_k,
           int(s.scoring),
           int(s.order),
           s.has_router_bias,
           s.has_correction_bias,
           s.n_group,
           s.topk_group,
           s.group_score_topk,
           s.renormalize,
           s.scaling_factor};
  return MOE_OK;
}

size_t moe_route_workspace_bytes(const moe_router_spec* spec, int tokens, int hidden_dtype,
                                 int weight_dtype) {
  if (spec == nullptr || !ValidDType(hidden_dtype) || !ValidDType(weight_dtype)) return 0;
  auto p = ToProblem(*spec, tokens, hidden_dtype, weight_dtype);
  if (!moe::CheckRouteProblem(p).ok()) return 0;
  return moe::cuda::DecomposeKWorkspaceBytes(p, moe::cuda::ChooseDecomposeKConfig(p, SmCount()));
}

int moe_route(const moe_router_spec* spec, int tokens, int hidden_dtype, int weight_dtype,
              const void* hidden, const void* weight, const float* router_bias,
              const float* correction_bias, int32_t* expert_ids, float* expert_weights,
              float* logits, void* workspace, size_t workspace_bytes, void* stream) {
  return moe_route_ex(spec, tokens, hidden_dtype, weight_dtype, hidden, weight, router_bias,
                      correction_bias, expert_ids, expert_weights, logits, workspace,
                      workspace_bytes, stream, 0);
}

int moe_route_ex(const moe_router_spec* spec, int tokens, int hidden_dtype, int weight_dtype,
                 const void* hidden, const void* weight, const float* router_bias,
                 const float* correction_bias, int32_t* expert_ids, float* expert_weights,
                 float* logits, void* workspace, size_t workspace_bytes, void* stream,
                 unsigned flags) {
  if ((flags & ~unsigned(MOE_ROUTE_PDL)) != 0)
    return Fail(MOE_INVALID_ARGUMENT, "flags: unknown bits (MOE_ROUTE_PDL is the only flag)");
  if (CheckRouteCall(spec, hidden_dtype, weight_dtype) != MOE_OK) return MOE_INVALID_ARGUMENT;
  if (CheckAligned16(hidden, "hidden") != MOE_OK || CheckAligned16(weight, "weight") != MOE_OK ||
      CheckAligned16(workspace, "workspace") != MOE_OK)
    return MOE_INVALID_ARGUMENT;
  auto p = ToProblem(*spec, tokens, hidden_dtype, weight_dtype);
  const auto config = moe::cuda::ChooseDecomposeKConfig(p, SmCount());
  auto status = moe::cuda::CanRouteDecomposeK(p, config);
  if (!status.ok()) return Fail(MOE_INVALID_ARGUMENT, std::string(status.message()));
  moe::RouteArgs args{hidden,     weight,         router_bias, correction_bias,
                      expert_ids, expert_weights, logits};
  status = moe::CheckRouteArgs(p, args);
  if (!status.ok()) return Fail(MOE_INVALID_ARGUMENT, std::string(status.message()));
  // What moe_route_workspace_bytes gives, or less where the launch can use less (a route
  // after cuBLASLt's GEMM: its logits, cuBLASLt taking an algorithm that fits the rest).
  if (workspace == nullptr || workspace_bytes < moe::cuda::DecomposeKLeastWorkspaceBytes(p, config))
    return Fail(MOE_INVALID_ARGUMENT, "workspace: smaller than moe_route_workspace_bytes()");
  const cudaError_t err = moe::cuda::LaunchDecomposeKRouter(
      p, args, config, workspace, workspace_bytes, static_cast<cudaStream_t>(stream),
      /*pdl=*/(flags & MOE_ROUTE_PDL) != 0);
  if (err != cudaSuccess) return Fail(MOE_CUDA_ERROR, cudaGetErrorString(err));
  return MOE_OK;
}

size_t moe_gemm_workspace_bytes(int m, int n, int k, int dtype) {
  if (!ValidDType(dtype)) return 0;
  moe::cuda::GemmProblem p{m, n, k, static_cast<moe::DType>(dtype)};
  if (!moe::cuda::CanGemmDecomposeK(p).ok()) return 0;
  return moe::cuda::GemmWorkspaceBytes(p, moe::cuda::ChooseGemmConfig(p, SmCount()));
}

int moe_gemm(int m, int n, int k, int dtype, const void* a, const void* b, const float* bias,
             float* c, void* workspace, size_t workspace_bytes, void* stream) {
  return moe_gemm_ex(m, n, k, dtype, a, b, bias, c, workspace, workspace_bytes, stream, 0);
}

int moe_gemm_ex(int m, int n, int k, int dtype, const void* a, const void* b, const float* bias,
                float* c, void* workspace, size_t workspace_bytes, void* stream, unsigned flags) {
  if ((flags & ~unsigned(MOE_GEMM_PDL)) != 0)
    return Fail(MOE_INVALID_ARGUMENT, "flags: unknown bits (MOE_GEMM_PDL is the only flag)");
  if (!ValidDType(dtype)) return Fail(MOE_INVALID_ARGUMENT, "dtype: invalid");
  if (a == nullptr || b == nullptr || c == nullptr)
    return Fail(MOE_INVALID_ARGUMENT, "a, b, c: null pointer");
  if (CheckAligned16(a, "a") != MOE_OK || CheckAligned16(b, "b") != MOE_OK ||
      CheckAligned16(workspace, "workspace") != MOE_OK)
    return MOE_INVALID_ARGUMENT;
  moe::cuda::GemmProblem p{m, n, k, static_cast<moe::DType>(dtype)};
  auto status = moe::cuda::CanGemmDecomposeK(p);
  if (!status.ok()) return Fail(MOE_INVALID_ARGUMENT, std::string(status.message()));
  const auto config = moe::cuda::ChooseGemmConfig(p, SmCount());
  if (workspace == nullptr || workspace_bytes < moe::cuda::GemmWorkspaceBytes(p, config))
    return Fail(MOE_INVALID_ARGUMENT, "workspace: smaller than moe_gemm_workspace_bytes()");
  const cudaError_t err =
      moe::cuda::LaunchGemm(p, a, b, bias, c, config, workspace, workspace_bytes,
                            static_cast<cudaStream_t>(stream), (flags & MOE_GEMM_PDL) != 0);
  if (err != cudaSuccess) return Fail(MOE_CUDA_ERROR, cudaGetErrorString(err));
  return MOE_OK;
}

const char* moe_route_config(const moe_router_spec* spec, int tokens, int hidden_dtype,
                             int weight_dtype) {
  thread_local std::string text;
  if (CheckRouteCall(spec, hidden_dtype, weight_dtype) != MOE_OK) return nullptr;
  const auto p = ToProblem(*spec, tokens, hidden_dtype, weight_dtype);
  if (auto status = moe::CheckRouteProblem(p); !status.ok()) {
    Fail(MOE_INVALID_ARGUMENT, std::string(status.message()));
    return nullptr;
  }
  if (!DeviceOrFail()) return nullptr;
  const auto config = moe::cuda::ChooseDecomposeKConfig(p, SmCount());
  if (auto status = moe::cuda::CanRouteDecomposeK(p, config); !status.ok()) {
    Fail(MOE_INVALID_ARGUMENT, std::string(status.message()));
    return nullptr;
  }
  text = moe::cuda::DescribeDecomposeKConfig(config);
  return text.c_str();
}

const char* moe_gemm_config(int m, int n, int k, int dtype) {
  thread_local std::string text;
  if (!ValidDType(dtype)) {
    Fail(MOE_INVALID_ARGUMENT, "dtype: invalid");
    return nullptr;
  }
  const moe::cuda::GemmProblem p{m, n, k, static_cast<moe::DType>(dtype)};
  if (auto status = moe::cuda::CanGemmDecomposeK(p); !status.ok()) {
    Fail(MOE_INVALID_ARGUMENT, std::string(status.message()));
    return nullptr;
  }
  if (!DeviceOrFail()) return nullptr;
  text = moe::cuda::DescribeDecomposeKConfig(moe::cuda::ChooseGemmConfig(p, SmCount()));
  return text.c_str();
}

const char* moe_last_error(void) { return last_error.c_str(); }

const char* moe_version(void) {
  static const std::string line = moe::VersionLine("moe_kernels");
  return line.c_str();
}

}  // extern "C"
