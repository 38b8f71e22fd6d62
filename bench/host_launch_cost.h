// router_bench --host_launch_cost: what an eager caller's thread spends enqueuing one launch
// of the kernels whose stages the TMA copies (the staged router, the staged-tile GEMM),
// with the TMA and with cp.async. A TMA launch encodes its operands' tensor maps on the
// host every time (cuTensorMapEncodeTiled); a graph replay pays that once, at capture.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda_device.h"

namespace moe::bench {

// Prints, per kernel and copy path, the median host microseconds of one launch call.
void PrintHostLaunchCost(const cuda::DeviceInfo& info, cudaStream_t stream);

}  // namespace moe::bench
