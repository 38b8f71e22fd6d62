// cuBLASLt loaded on first use (cublaslt_api.h).
#include "kernels/cublaslt_api.h"

#include <dlfcn.h>

namespace moe::cuda {
namespace {

#define MOE_STRINGIFY_(x) #x
#define MOE_STRINGIFY(x) MOE_STRINGIFY_(x)
constexpr const char* kLibrary = "libcublasLt.so." MOE_STRINGIFY(CUBLAS_VER_MAJOR);

template <typename F>
bool Resolve(void* library, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(dlsym(library, name));
  return *fn != nullptr;
}

const CublasLtApi* Load() {
  // Never closed: its handles live in thread-local caches until their threads end.
  void* library = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) return nullptr;
  static CublasLtApi api;
  const bool ok =
      Resolve(library, "cublasLtCreate", &api.create) &&
      Resolve(library, "cublasLtDestroy", &api.destroy) &&
      Resolve(library, "cublasLtMatmul", &api.matmul) &&
      Resolve(library, "cublasLtMatmulAlgoGetHeuristic", &api.algo_get_heuristic) &&
      Resolve(library, "cublasLtMatmulDescCreate", &api.desc_create) &&
      Resolve(library, "cublasLtMatmulDescDestroy", &api.desc_destroy) &&
      Resolve(library, "cublasLtMatmulDescSetAttribute", &api.desc_set_attribute) &&
      Resolve(library, "cublasLtMatmulPreferenceCreate", &api.preference_create) &&
      Resolve(library, "cublasLtMatmulPreferenceDestroy", &api.preference_destroy) &&
      Resolve(library, "cublasLtMatmulPreferenceSetAttribute", &api.preference_set_attribute) &&
      Resolve(library, "cublasLtMatrixLayoutCreate", &api.layout_create) &&
      Resolve(library, "cublasLtMatrixLayoutDestroy", &api.layout_destroy);
  return ok ? &api : nullptr;
}

}  // namespace

const CublasLtApi* LoadCublasLt() {
  static const CublasLtApi* const api = Load();
  return api;
}

}  // namespace moe::cuda
