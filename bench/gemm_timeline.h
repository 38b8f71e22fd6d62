// router_bench --gemm_timeline: where a staged-tile GEMM launch's time goes, from the
// phase stamps of decompose_k_gemm_tile.h, launch after launch in a graph.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "kernels/cuda_device.h"

namespace moe::bench {

// The large skinny GEMMs, each tile size: per launch in a graph of launches over rotating
// operands (read from HBM, as router_bench times them), each phase's spread over the CTAs
// in us from the launch's first CTA start, the gap from the previous launch's end, and
// the stream rate a CTA reached; the 64-tile rows also under PDL. `filter` selects rows as
// router_bench's --filter does; `tma`: stages loaded by the TMA (TileGemmShape::tma), else by
// cp.async.
void PrintGemmTimelines(const cuda::DeviceInfo& info, cudaStream_t stream, size_t l2_bytes,
                        const std::string& filter, bool tma);

}  // namespace moe::bench
