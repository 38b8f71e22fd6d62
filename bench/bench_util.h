// Helpers shared by router_bench's files: a CUDA check that ends the benchmark, StatusOr
// unwrapping, random device fills, and the layer count that keeps weights out of L2.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "kernels/cuda_raii.h"
#include "kernels/dtype.h"

namespace moe::bench {

// A benchmark has no caller to return an error to: it reports where and stops.
#define CHECK_CUDA(expr)                                                                         \
  do {                                                                                           \
    cudaError_t e_ = (expr);                                                                     \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

template <typename T>
T Must(absl::StatusOr<T> v) {
  if (!v.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(v.status().message()).c_str());
    std::exit(1);
  }
  return std::move(v).value();
}

// `count` normal(0, scale) values of dtype `dt` into device memory `dst`.
inline void FillRandom(void* dst, size_t count, DType dt, float scale, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<uint8_t> host(count * DTypeSize(dt));
  for (size_t i = 0; i < count; ++i) StoreFromFloat(host.data(), dt, i, normal(rng));
  CHECK_CUDA(cudaMemcpy(dst, host.data(), host.size(), cudaMemcpyHostToDevice));
}

// The q-quantile (0: min, 0.5: median, 1: max) of `v` by rank; 0 for an empty `v`.
// A staged-tile GEMM's tile as the tables print it: "64", "128", or rows of A x rows of B
// ("64x128") where the tile is not square (TileGemmShape::tile_m).
inline std::string GemmTileLabel(int tile, int tile_m) {
  return tile_m != 0 && tile_m != tile ? absl::StrCat(tile_m, "x", tile) : absl::StrCat(tile);
}

inline double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}
inline double Median(std::vector<double> v) { return Quantile(std::move(v), 0.5); }

// `count` calls of enqueue(i, stream) captured on `stream` into one CUDA graph,
// instantiated and replayed three times to warm up.
inline CudaGraphExec CaptureWarmGraph(int count, cudaStream_t stream,
                                      const std::function<void(int, cudaStream_t)>& enqueue) {
  cudaGraph_t graph;
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < count; ++i) enqueue(i, stream);
  CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
  const CudaGraph owned(graph);
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  CudaGraphExec owned_exec(exec);
  for (int i = 0; i < 3; ++i) CHECK_CUDA(cudaGraphLaunch(exec, stream));
  return owned_exec;
}

// Layers of `layer_bytes` each that together exceed 3x the L2 cache, within the bounds:
// launches rotated over them read their weights from HBM.
inline int LayersFor(size_t layer_bytes, size_t l2_bytes, int min_layers, int max_layers) {
  const size_t need = (3 * l2_bytes + layer_bytes - 1) / layer_bytes;
  return static_cast<int>(std::clamp<size_t>(need, min_layers, max_layers));
}

// Whether a row is selected by --filter: its name contains one of the comma-separated
// substrings, or ends with one written with a trailing '$' ("t=1$": the one-token rows,
// not t=16 or t=128). An empty filter selects every row.
inline bool Selected(const std::string& row, const std::string& filter) {
  if (filter.empty()) return true;
  for (absl::string_view part : absl::StrSplit(filter, ',')) {
    if (part.empty()) continue;
    if (absl::ConsumeSuffix(&part, "$") ? absl::EndsWith(row, part) : absl::StrContains(row, part))
      return true;
  }
  return false;
}

}  // namespace moe::bench
