#include "kernels/config_description.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moe::cuda {

std::string DescribeDecomposeKConfig(const DecomposeKConfig& k) {
  // cuBLASLt's GEMM or the staged-tile GEMM: the general GEMM's configs, and with
  // route_after_gemm the router's first launch of two.
  const char* then_route = k.route_after_gemm ? " + epilogue kernel" : "";
  if (k.gemm_cublas) return absl::StrCat("cublasLt gemm", then_route);
  if (k.gemm_tile != 0)
    return absl::StrFormat("gemm tile=%d%s S=%d%s%s", k.gemm_tile,
                           k.gemm_tile_m ? absl::StrCat("x", k.gemm_tile_m) : "", k.k_splits,
                           k.gemm_tma ? " tma" : "", then_route);
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
