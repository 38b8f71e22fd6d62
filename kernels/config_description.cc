#include "kernels/config_description.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moe::cuda {

std::string DescribeDecomposeKConfig(const DecomposeKConfig& k) {
  if (k.route_after_gemm && k.gemm_cublas) return "cublasLt gemm + epilogue kernel";
  if (k.route_after_gemm)
    return absl::StrFormat("gemm tile=%d%s S=%d%s + epilogue kernel", k.gemm_tile,
                           k.gemm_tile_m ? absl::StrCat("x", k.gemm_tile_m) : "", k.k_splits,
                           k.gemm_tma ? " tma" : "");
  // The reduction: a cluster's distributed shared memory, the polled partials (staged or
  // streamed tiles), or the arrival counter's last CTA.
  const char* reduction = k.cluster  ? "cluster"
                          : k.staged ? "staged"
                          : k.polled ? "polled"
                                     : "counter";
  return absl::StrFormat("%s nt=%d S=%d %s%s%s%s%s",
                         k.mainloop == Mainloop::kTensorCore ? "mma" : "fma", k.token_tiles,
                         k.k_splits, reduction, k.staged_router_pairs ? " pairs" : "",
                         k.pdl_cooperative ? " coop" : "", k.dedicated_routers ? " ded" : "",
                         k.pdl_one_cta_per_sm ? " 1cta" : "");
}

}  // namespace moe::cuda
