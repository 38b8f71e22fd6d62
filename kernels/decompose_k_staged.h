// Internal: the staged router kernel's launcher and limits (decompose_k_staged.cu), used by
// decompose_k_router.cu's dispatch, layout and config checks.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/statusor.h"
#include "kernels/router_spec.h"

namespace moe::cuda {

struct KernelParams;

// A CTA's tile: 64 experts x 64 tokens (a chunk), over one split's K slice.
inline constexpr int kStagedTileExperts = 64;
inline constexpr int kStagedTileTokens = 64;
// K is staged in stages of 64 elements; a stage holds both operands' rows: 16 KB.
inline constexpr int kStagedStageK = 64;
inline constexpr size_t kStagedStageBytes = size_t(kStagedTileExperts + kStagedTileTokens) * 128;
// A split's whole K slice is staged at once: at most this many stages (192 KB).
inline constexpr int kStagedMaxStages = 12;

// After the multiply each warp lays its 32 x 16 partial logits out as 16 token rows of 40
// floats (32 experts and a pad that keeps the fragment writes conflict-free), to publish
// them with 16-byte stores.
inline constexpr int kStagedPublishRowFloats = 40;
inline constexpr size_t kStagedPublishBytes = size_t(8) * 16 * kStagedPublishRowFloats * 4;

// Dynamic shared memory of a launch: the split's stages, then the warps' partials on their
// way out, then the router's logits.
inline size_t StagedDynamicSmemBytes(int stages_per_split, int router_logits) {
  const size_t stages = size_t(stages_per_split) * kStagedStageBytes;
  const size_t logits = size_t(router_logits) * sizeof(float);
  const size_t most = stages > logits ? stages : logits;
  return most > kStagedPublishBytes ? most : kStagedPublishBytes;
}

// grid.x = expert tiles * k_splits, grid.y = token chunks of 64. Cooperative when !pdl or
// `pdl_cooperative`, as the polled kernel. `tma`: the stages copied by the TMA, honoured on
// an sm_90+ device with 16-byte aligned operands (tensor-map bases); otherwise, or without
// it, by cp.async. Same bits either way.
// `router_pairs`: DecomposeKConfig::staged_router_pairs (at most 256 experts).
cudaError_t LaunchStagedKernel(bool bf16, dim3 grid, const KernelParams& params,
                               size_t dynamic_smem, cudaStream_t stream, bool pdl,
                               bool pdl_cooperative, bool tma, bool router_pairs);

// Whether the router pairs (DecomposeKConfig::staged_router_pairs) can route this spec: at
// most 256 experts, and a spec one CTA routes token by token (no softmax over the scores
// before the top-k, groups of whole columns if any: the epilogue's CtaRouteTokenApplies).
bool RouterPairsRoute(const RouterSpec& spec);

// CTAs of the staged kernel (bf16 or fp16; the instance for more than 256 experts or the
// other) that fit on one SM of this device when a launch needs `dynamic_smem` bytes, as
// LaunchStagedKernel launches it: under PDL one, whatever the stages (the launch asks for
// more than half an SM's shared memory; decompose_k_staged.cu says why).
absl::StatusOr<int> StagedCtasPerSm(bool bf16, bool wide_experts, size_t dynamic_smem, bool pdl,
                                    bool router_pairs = false);

}  // namespace moe::cuda
