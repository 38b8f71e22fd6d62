// router_bench's diagnostics: where a fused router launch's time goes, from the phase
// stamps the kernels write when asked (LaunchDecomposeKRouterWithTimeline).
#pragma once

#include <cuda_runtime_api.h>

#include <string>
#include <vector>

#include "kernels/cuda_device.h"

namespace moe::bench {

// One eager launch at a time (no PDL): each phase's end from the first CTA's start, for a
// few shapes and every reduction path.
void PrintTimelines(const cuda::DeviceInfo& info, cudaStream_t stream);

// Launches as router_bench's PDL column runs them (a graph of back-to-back launches over
// rotating layers, each with PDL, the autotuned PDL config and the heuristic's): each phase
// of launch i from the end of launch i - 1, the part of a call that PDL cannot hide.
// `filter` selects shapes as router_bench's --filter does, from a default list and any shape
// it names in full ("glm4_moe t=14": any family, any token count). `sweep_splits` (--sweep_splits):
// also the heuristic's polled or staged config at each of these split counts, launched
// plainly and cooperatively, where it can run (staged: where no split is left empty).
// `tuner_candidates` (--candidates): also the autotuner's fastest candidates for each shape,
// as it timed them in its own graph (to see how far apart its close calls are).
void PrintPdlTimelines(const cuda::DeviceInfo& info, cudaStream_t stream, size_t l2_bytes,
                       const std::string& filter, const std::vector<int>& sweep_splits = {},
                       bool tuner_candidates = false);

}  // namespace moe::bench
