// The workspace layout of a Decompose-K router launch (decompose_k_layout.h) and the
// public workspace and timeline sizes built on it.
#include "kernels/decompose_k_layout.h"

#include "kernels/cublaslt_gemm.h"
#include "kernels/decompose_k_router.h"

namespace moe::cuda {
namespace {

using Shape = DecomposeKShape;
using Layout = DecomposeKLayout;

// Two-level split arrival (see ReduceSplits) past 24 splits, in groups of about sqrt(S) so
// that both levels sum about as many partials.
int SplitGroupSize(const DecomposeKConfig& c) {
  if (c.polled || c.cluster != 0 || c.k_splits <= 24) return 0;
  int g = 1;
  while (g * g < c.k_splits) ++g;
  return g;
}

}  // namespace

Layout MakeLayout(const Shape& s, const DecomposeKConfig& c) {
  Layout l;
  l.m_blocks = ExpertBlocks(s);
  l.chunk = ChunkTokens(c);
  l.z_chunks = (s.tokens + l.chunk - 1) / l.chunk;
  l.total_steps = (s.K + kStepK - 1) / kStepK;
  const int warps = c.k_splits * kWarps;
  l.steps_per_warp = (l.total_steps + warps - 1) / warps;
  l.split_group = SplitGroupSize(c);
  l.groups = l.split_group > 0 ? (c.k_splits + l.split_group - 1) / l.split_group : 1;
  auto align = [](size_t n) { return (n + 255) / 256 * 256; };
  const size_t zm = size_t(l.z_chunks) * l.m_blocks;
  l.group_counters_offset = sizeof(unsigned) * (zm + l.z_chunks);
  const size_t group_counters = l.split_group > 0 ? zm * l.groups : 0;
  l.counters_bytes = align(l.group_counters_offset + sizeof(unsigned) * group_counters);
  l.partials_offset = l.counters_bytes;
  // Partials: [z][m][s][32][chunk] (arrival counters) or [z][s][chunk][m * 32] (polled);
  // the same size.
  l.partials_bytes = (c.k_splits > 1 && c.cluster == 0) || c.polled
                         ? align(sizeof(float) * size_t(l.z_chunks) * l.m_blocks * c.k_splits *
                                 kBlockExperts * l.chunk)
                         : 0;
  l.group_partials_offset = l.partials_offset + l.partials_bytes;
  l.group_partials_bytes =
      l.split_group > 0 ? align(sizeof(float) * zm * l.groups * kBlockExperts * l.chunk) : 0;
  l.logits_offset = l.group_partials_offset + l.group_partials_bytes;
  l.logits_bytes = align(sizeof(float) * size_t(l.z_chunks) * l.chunk * l.m_blocks * kBlockExperts);
  l.total = l.logits_offset + l.logits_bytes;
  l.zeroed_bytes = c.polled ? l.logits_offset : l.counters_bytes;
  return l;
}

size_t DecomposeKWorkspaceBytes(const RouteProblem& problem, const DecomposeKConfig& config) {
  if (config.route_after_gemm && config.gemm_cublas)
    return RouteAfterCublasLtOffset(problem) + CublasLtGemmWorkspaceBytes();
  if (config.route_after_gemm)
    return RouteAfterGemmLogitsOffset(problem, config) +
           sizeof(float) * size_t(problem.tokens) * problem.spec.experts;
  return MakeLayout(RouteShape(problem), config).total;
}

size_t DecomposeKLeastWorkspaceBytes(const RouteProblem& problem, const DecomposeKConfig& config) {
  return config.route_after_gemm && config.gemm_cublas ? RouteAfterCublasLtOffset(problem)
                                                       : DecomposeKWorkspaceBytes(problem, config);
}

size_t DecomposeKZeroedBytes(const RouteProblem& problem, const DecomposeKConfig& config) {
  if (config.route_after_gemm)
    return config.gemm_cublas ? 0  // cuBLAS's workspace is scratch
                              : TileGemmZeroedBytes(TileShape(RouterGemmProblem(problem), config));
  return MakeLayout(RouteShape(problem), config).zeroed_bytes;
}

size_t TimelineEntries(const RouteProblem& problem, const DecomposeKConfig& config) {
  if (config.route_after_gemm) return 0;  // no timeline: two kernels, neither stamps
  const Shape s = RouteShape(problem);
  const Layout l = MakeLayout(s, config);
  return size_t(GridCtas(s, config, l)) * kTimelineSlots * 2;
}

size_t GemmWorkspaceBytes(const GemmProblem& problem, const DecomposeKConfig& config) {
  if (config.gemm_cublas) return CublasLtGemmWorkspaceBytes();
  if (config.gemm_tile != 0) return TileGemmWorkspaceBytes(TileShape(problem, config));
  return MakeLayout(GemmShape(problem), config).total;
}

}  // namespace moe::cuda
