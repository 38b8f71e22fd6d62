// The CPU backend: the router GEMM with Decompose-K across threads and the routing
// epilogue fused into the reduction. Same API shape as the CUDA kernel:
// CanRoute(problem) -> Status, WorkspaceBytes(problem), Route(problem, args, workspace).
// Thread-safe: Route may be called concurrently with distinct workspaces.
#pragma once

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "kernels/route_args.h"
#include "kernels/thread_pool.h"

namespace moe {

// How the CPU splits one problem: K into `k_splits` chunks and the experts into blocks
// of `expert_block`; each (chunk, block) pair is one task.
struct CpuSplit {
  int k_splits = 1;
  int expert_block = 16;
};

class CpuRouter {
 public:
  // threads == 0: one per hardware thread.
  explicit CpuRouter(int threads = 0);

  static absl::Status CanRoute(const RouteProblem& problem);
  CpuSplit ChooseSplit(const RouteProblem& problem) const;
  size_t WorkspaceBytes(const RouteProblem& problem) const;

  // Computes ids, weights (and logits if requested). Hidden states must be finite:
  // the caller validates them (see CheckFinite).
  absl::Status Route(const RouteProblem& problem, const RouteArgs& args, void* workspace,
                     size_t workspace_bytes);

  int threads() const { return pool_->size(); }

 private:
  std::unique_ptr<ThreadPool> pool_;
};

// INVALID_ARGUMENT naming `field` and the first non-finite element, or OK.
absl::Status CheckFinite(const void* data, DType dtype, size_t count, const char* field);

}  // namespace moe
