// Decompose-K with the operands staged in shared memory, for batches of 64+ tokens: the
// polled reduction (decompose_k_polled.cu) with a larger CTA tile.
//
// Why: the polled kernel's CTA owns 32 experts x 32 tokens and streams both operands from
// L2 into registers, so at 128 tokens the weights are read once per 32-token chunk and the
// hidden states once per 32-expert block: ~230 KB into each SM for DeepSeek-V3 (5.5 MB of
// operands, ~29 MB across the grid), and the mainloop is bound by what an SM pulls from L2.
// Here a CTA owns 64 experts x 64 tokens, which halves both re-reads.
//
// Grid = (expert tiles · S, token chunks of 64), at most one CTA per SM (CanRouteDecomposeK
// checks it). A CTA copies its split's whole K slice of both operands into shared memory,
// every copy in flight at once (no pipeline: the slice is a few 16 KB stages, and one round
// trip for all of it beats a ring of dependent ones): first the weights (model constants,
// so under Programmatic Dependent Launch they stream while the previous launch finishes),
// then, after griddepcontrol.wait, the hidden states. Two ways to copy, same bits:
// - sm_90+ (StagedParams::tma): one thread issues each stage's operand as one TMA
//   tensor-map box (64 rows x 128 bytes, 128-byte swizzle), all completing on one
//   mbarrier;
// - otherwise: 16-byte cp.async from every thread into the cp.async layout.
// Its 8 warps, 2 along experts x 4 along tokens, each multiply a 32 x 16 block out of
// shared memory on the tensor cores (mma.sync m16n8k16, experts as M, with the router
// kernels' K permutation: a lane's fragment registers are one 16-byte shared load), and
// publish their partial logits as self-validating partials, through shared memory in
// 16-byte stores (PublishFragments: the publish phase of the CTA that publishes last 0.77
// -> 0.52 us at DeepSeek-V3 t=128, H200, bench/NOTES.md session 43). The chunk's routers (one token
// per CTA of the grid row) gather and route them exactly as in the polled kernel
// (decompose_k_polled_router.cuh); a router's logits reuse the stages. With router pairs
// (DecomposeKConfig::staged_router_pairs) a router CTA has two tokens, each routed by half
// of it, and the CTAs past half a full chunk leave after publishing.
//
// Rows past the experts, past the tokens and past K are zero-filled by the copies
// (src-size 0, or the TMA's out-of-bounds fill), so ragged edges need no other care.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "kernels/cuda_check.h"
#include "kernels/cuda_device.h"
#include "kernels/decompose_k_device.cuh"
#include "kernels/decompose_k_polled_router.cuh"
#include "kernels/decompose_k_staged.h"
#include "kernels/one_cta_per_sm.h"
#include "kernels/staged_tile_device.cuh"
#include "kernels/tensor_map.h"
#include "kernels/tma_device.cuh"

namespace moe::cuda {
namespace {

static_assert(kStagedStageK * 2 == kSwizzledRowBytes, "a stage row is one swizzled row");
static_assert(kStagedTileTokens == 8 * 8, "a chunk is 8 MMA n-tiles");
constexpr int kWarpExperts = 32;  // 2 MMA m-tiles
constexpr int kWarpTokens = 16;   // 2 MMA n-tiles
static_assert(kWarps * kWarpExperts * kWarpTokens == kStagedTileExperts * kStagedTileTokens,
              "the warps cover the tile");
static_assert(kStagedPublishBytes == size_t(kWarps) * kWarpTokens * kStagedPublishRowFloats * 4 &&
                  kStagedPublishRowFloats >= kWarpExperts,
              "each warp's outgoing partials have their rows");

// Copies `rows` rows (from `first_row` of a [row_count, K] operand) of this split's stages
// into stage rows [smem_row, smem_row + 64), zero-filled past the operand's edges.
template <typename T>
__device__ __forceinline__ void StageRows(uint8_t* stages, int smem_row, const void* operand,
                                          int first_row, int row_count, int K, int stage_begin,
                                          int count) {
  constexpr int kChunks = kSwizzledRowBytes / 16;  // 16-byte copies a row
  constexpr int kRows = 64;
  for (int idx = threadIdx.x; idx < count * kRows * kChunks; idx += kThreads) {
    const int s = idx / (kRows * kChunks), r = idx / kChunks % kRows, chunk = idx % kChunks;
    const int row = first_row + r, k = (stage_begin + s) * kStagedStageK + 8 * chunk;
    const bool in = row < row_count && k < K;
    const char* src =
        static_cast<const char*>(operand) + (in ? (size_t(row) * K + k) * sizeof(T) : 0);
    CpAsync16<false>(stages + s * kStagedStageBytes + ChunkOffset(smem_row + r, chunk), src, in);
  }
}

// The launch's parameters: the kernels' common ones and, for the TMA copies, the operands'
// tensor maps (EncodeSwizzledRowsMap, boxes of 64 rows).
struct StagedParams {
  KernelParams p;
  CUtensorMap map_w, map_x;
  int tma;  // stages copied by the TMA (sm_90+ only; the maps are valid)
};

// The warp's 32 x 16 block of partial logits over the staged slice.
template <typename T, bool kTma>
__device__ __forceinline__ void MultiplyStages(const uint8_t* stages, int count,
                                               float (&acc)[2][2][4]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int expert_row = (warp & 1) * kWarpExperts;
  const int token_row = kStagedTileExperts + (warp >> 1) * kWarpTokens;
  for (int s = 0; s < count; ++s) {
    const uint8_t* buf = stages + s * kStagedStageBytes;
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // the stage's two 32-wide K steps
      uint4 a[4];                  // expert rows g, g+8, g+16, g+24 of the warp's 32
#pragma unroll
      for (int r = 0; r < 4; ++r)
        a[r] = LoadShared16(
            buf + StagedChunkOffset<kTma>(expert_row + StagedRow<kTma>(g) + 8 * r, 4 * h + t));
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        const uint4 b = LoadShared16(
            buf + StagedChunkOffset<kTma>(token_row + nt * 8 + StagedRow<kTma>(g), 4 * h + t));
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          const uint4 lo = a[2 * mt], hi = a[2 * mt + 1];
          Mma<T>(acc[mt][nt], lo.x, hi.x, lo.y, hi.y, b.x, b.y);
          Mma<T>(acc[mt][nt], lo.z, hi.z, lo.w, hi.w, b.z, b.w);
        }
      }
    }
  }
}

// Publishes the warp's partial logits (real experts and tokens only). The fragments go to
// the warp's rows of shared memory first, [token][expert] (`publish`: 16 rows of
// kStagedPublishRowFloats, after every warp is done with the stages), and leave as 16-byte
// stores of four experts of a token: 4 a lane instead of 16 scalar stores from the
// fragments. acc[mt][nt][r] is expert mt·16 + g (+8 for r >= 2), token nt·8 + 2t (+1 for
// odd r), each of g and 2t (+1) through StagedRow.
template <bool kTma>
__device__ __forceinline__ void PublishFragments(const KernelParams& p, const float (&acc)[2][2][4],
                                                 float* publish, int expert_tile, int split, int z,
                                                 int valid) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  // Row stride 40: lanes (g, t) of one fragment register write banks 8t + g's expert, all 32
  // distinct.
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int e = mt * 16 + StagedRow<kTma>(g) + (r >= 2 ? 8 : 0);
        const int n = nt * 8 + StagedRow<kTma>(2 * t + (r & 1));
        publish[n * kStagedPublishRowFloats + e] = __uint_as_float(PolledBits(acc[mt][nt][r]));
      }
  __syncwarp();
  const int epad = p.m_blocks * kBlockExperts;
  float* base = p.partials + (size_t(z) * p.k_splits + split) * kStagedTileTokens * epad;
  const int quad = lane & 7;  // experts 4·quad .. 4·quad + 3 of the warp's 32
  const int e = expert_tile * kStagedTileExperts + (warp & 1) * kWarpExperts + 4 * quad;
  const int n0 = (warp >> 1) * kWarpTokens;
#pragma unroll
  for (int i = 0; i < kWarpTokens / 4; ++i) {  // 4 token rows a store, 8 lanes a row
    const int row = 4 * i + (lane >> 3), n = n0 + row;
    if (n >= valid || e >= p.experts) continue;
    const uint4 bits =
        *reinterpret_cast<const uint4*>(publish + row * kStagedPublishRowFloats + 4 * quad);
    float* slot = base + size_t(n) * epad + e;
    if (e + 4 <= p.experts) {
      StorePolledBits4(slot, bits);
    } else {  // the last experts: slots past them stay empty
      const uint32_t b[4] = {bits.x, bits.y, bits.z, bits.w};
      for (int j = 0; j < 4 && e + j < p.experts; ++j) StorePolledBits(slot + j, b[j]);
    }
  }
}

// The TMA copies (sm_90+ only): thread 0 initialises `landed` and issues the weights'
// boxes of the split's stages, all completing on `landed`...
__device__ __forceinline__ void StageWeightsByTma(const StagedParams& sp, uint8_t* stages,
                                                  uint64_t* landed, int expert_tile,
                                                  int stage_begin, int count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (threadIdx.x != 0) return;
  MbarrierInit(landed, 1);
  FenceMbarrierInit();
  PrefetchTensorMap(&sp.map_w);
  PrefetchTensorMap(&sp.map_x);
  MbarrierArriveExpectTx(landed, unsigned(count * kStagedStageBytes));
  for (int s = 0; s < count; ++s)
    TmaLoad2d(stages + s * kStagedStageBytes, &sp.map_w, (stage_begin + s) * kStagedStageK,
              expert_tile * kStagedTileExperts, landed);
#endif
}

// ...and, after griddepcontrol.wait, the hidden states' boxes.
__device__ __forceinline__ void StageHiddenStatesByTma(const StagedParams& sp, uint8_t* stages,
                                                       uint64_t* landed, int z, int stage_begin,
                                                       int count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (threadIdx.x != 0) return;
  constexpr int kTokenRowsOffset = kStagedTileExperts * kSwizzledRowBytes;
  FenceProxyAsyncGlobal();  // the previous kernel may have written them
  for (int s = 0; s < count; ++s)
    TmaLoad2d(stages + s * kStagedStageBytes + kTokenRowsOffset, &sp.map_x,
              (stage_begin + s) * kStagedStageK, z * kStagedTileTokens, landed);
#endif
}

// A router pair's second scratch (RouteRouterPair) in the dynamic shared memory, after its
// two tokens' logits; every launch has at least kStagedPublishBytes of it.
constexpr size_t kRouterPairScratchOffset = 2 * kThreads * sizeof(float);
static_assert(kRouterPairScratchOffset % 16 == 0 &&
                  kRouterPairScratchOffset + sizeof(CtaRouteScratch) <= kStagedPublishBytes,
              "a router pair's second scratch fits beside its logits");

// Two CTAs per SM where the stages leave room (<= 128 registers a thread): one of this
// launch, one of the next launch already staging its weights under PDL.
//
// kRouterPairs (DecomposeKConfig::staged_router_pairs; at most 256 experts): a router CTA
// owns two tokens of the chunk (TokensOfRouterPair) and each half of it routes one, so in a
// full chunk's row half the CTAs leave once they have published and their SMs take CTAs of
// the next launch while this one gathers and routes. An instance of its own, so that the
// other instances' code and registers stay as they were measured.
template <typename T, bool kWideExperts, bool kRouterPairs>
__global__ void __launch_bounds__(kThreads, 2)
    DecomposeKStagedKernel(const __grid_constant__ StagedParams sp) {
  static_assert(!(kRouterPairs && kWideExperts), "router pairs route at most 256 experts");
  extern __shared__ __align__(128) uint8_t dynamic_smem[];
  __shared__ PolledRouterShared router;
  __shared__ alignas(8) uint64_t landed;  // the TMA copies' mbarrier
  const KernelParams& p = sp.p;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const bool tma = sp.tma != 0;
#else
  constexpr bool tma = false;
#endif
  // The TMA's swizzled stages start kSwizzleAlignment-aligned (LaunchDynamicSmem allocates the
  // slack).
  uint8_t* const stages =
      tma ? dynamic_smem + ((kSwizzleAlignment - SharedAddress(dynamic_smem) % kSwizzleAlignment) %
                            kSwizzleAlignment)
          : dynamic_smem;
  float* const publish =
      reinterpret_cast<float*>(stages) + (threadIdx.x / 32) * kWarpTokens * kStagedPublishRowFloats;
  const int z = blockIdx.y;
  const int valid = min(kStagedTileTokens, p.tokens - z * kStagedTileTokens);
  const int expert_tiles =
      (p.m_blocks * kBlockExperts + kStagedTileExperts - 1) / kStagedTileExperts;
  const int expert_tile = int(blockIdx.x) % expert_tiles, split = int(blockIdx.x) / expert_tiles;
  const int total_stages = (p.K + kStagedStageK - 1) / kStagedStageK;
  const int stage_begin = split * p.stages_per_split;
  const int count = max(0, min(p.stages_per_split, total_stages - stage_begin));
  AllowDependentLaunch();
  Stamp(p, kStampStart);
  const RouterTokens mine = kRouterPairs ? TokensOfRouterPair(valid) : TokensOfRouter(valid);
  const bool is_router = mine.first < mine.last;
  float acc[2][2][4] = {};
  if (tma) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    StageWeightsByTma(sp, stages, &landed, expert_tile, stage_begin, count);
    if (is_router) StageBiases(p, router);
    WaitForPrerequisiteGrid();  // hidden states may be written by the previous kernel
    StageHiddenStatesByTma(sp, stages, &landed, z, stage_begin, count);
    __syncthreads();  // `landed` is initialised
    MbarrierWait(&landed, 0);
    MultiplyStages<T, true>(stages, count, acc);
    Stamp(p, kStampMainloop);
    __syncthreads();  // every warp is done with the stages: they hold the outgoing partials
    PublishFragments<true>(p, acc, publish, expert_tile, split, z, valid);
#endif
  } else {
    StageRows<T>(stages, 0, p.w, expert_tile * kStagedTileExperts, p.experts, p.K, stage_begin,
                 count);
    CpAsyncCommit();
    if (is_router) StageBiases(p, router);
    WaitForPrerequisiteGrid();  // hidden states may be written by the previous kernel
    StageRows<T>(stages, kStagedTileExperts, p.x, z * kStagedTileTokens, p.tokens, p.K, stage_begin,
                 count);
    CpAsyncCommit();
    CpAsyncWait<0>();
    __syncthreads();  // every thread's copies have landed
    MultiplyStages<T, false>(stages, count, acc);
    Stamp(p, kStampMainloop);
    __syncthreads();  // every warp is done with the stages: they hold the outgoing partials
    PublishFragments<false>(p, acc, publish, expert_tile, split, z, valid);
  }
  Stamp(p, kStampReduced);
  if (!is_router) return;
  __syncthreads();  // every warp is done with the stages: they become the router's logits
  float* logits = reinterpret_cast<float*>(stages);
  if constexpr (kRouterPairs) {
    GatherRouterPair<kStagedTileTokens>(p, router, logits, z, mine);
    __syncthreads();
    Stamp(p, kStampArrived);
    RouteRouterPair<kStagedTileTokens>(
        p, router, *reinterpret_cast<CtaRouteScratch*>(stages + kRouterPairScratchOffset), logits,
        z, mine);
  } else {
    GatherChunkLogits<kStagedTileTokens, kWideExperts>(p, router, logits, z, mine);
    __syncthreads();
    Stamp(p, kStampArrived);
    RouteChunkTokens<kStagedTileTokens, kWideExperts>(p, router, logits, z, mine, /*dry=*/false);
  }
  __syncthreads();
  Stamp(p, kStampRouted);
}

// The TMA copies align the stages in the kernel (kSwizzleAlignment): every launch asks for
// that slack (the cp.async ones too, so both take the same room on an SM).
constexpr size_t kMaxDynamicSmem = kStagedMaxStages * kStagedStageBytes + kSwizzleAlignment;

// Past the 48 KB default: opt in once per instance, to the most a launch may ask for (not
// a stream operation, so also legal while a graph is being captured).
template <typename T, bool kWideExperts, bool kRouterPairs>
cudaError_t OptIn() {
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(DecomposeKStagedKernel<T, kWideExperts, kRouterPairs>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, int(kMaxDynamicSmem));
  return opt_in;
}

// The dynamic shared memory past which two CTAs of an instance no longer fit on an SM of
// the device it first runs on (0 where the device cannot say; read once, as OptIn). Under
// PDL a launch asks for at least this much: with two CTAs a SM (splits of at most 6 stages,
// 96 KB, where an SM has 228 KB), CTAs of the next launches sat beside this one's from ~30
// us ahead and its routers' gather took 3.6-6.4 us instead of ~1.5. H200, per call under
// PDL (bench/NOTES.md session 35): GLM-4.5 t=128 at 16 splits 12.27 -> 8.45 us, 14 splits
// 12.24 -> 8.76, 20 splits 13.75 -> 9.05; Kimi K2 t=64 at 19 splits 14.24 -> 9.13; configs
// of 7 stages or more (one CTA a SM already) within +-0.04.
template <typename T, bool kWideExperts, bool kRouterPairs>
size_t StagedOneCtaPerSmDynamicSmem() {
  static const size_t bytes =
      OneCtaPerSmDynamicSmem(DecomposeKStagedKernel<T, kWideExperts, kRouterPairs>);
  return bytes;
}

// The dynamic shared memory a launch asks for: what it needs with the alignment slack, and
// under PDL at least StagedOneCtaPerSmDynamicSmem (where that is within the opt-in limit).
template <typename T, bool kWideExperts, bool kRouterPairs>
size_t LaunchDynamicSmem(size_t needed, bool pdl) {
  needed += kSwizzleAlignment;
  if (!pdl) return needed;
  const size_t one_cta = StagedOneCtaPerSmDynamicSmem<T, kWideExperts, kRouterPairs>();
  return one_cta <= kMaxDynamicSmem && one_cta > needed ? one_cta : needed;
}

// An instance for routers of more than 256 experts and one for the rest
// (WithExpertsPerLaneOf).
template <typename T, bool kWideExperts, bool kRouterPairs>
cudaError_t LaunchTyped(dim3 grid, const StagedParams& params, size_t dynamic_smem,
                        cudaStream_t stream, bool pdl, bool cooperative) {
  const cudaError_t opt_in = OptIn<T, kWideExperts, kRouterPairs>();
  if (opt_in != cudaSuccess) return opt_in;
  return Launch(DecomposeKStagedKernel<T, kWideExperts, kRouterPairs>, grid, params, stream, pdl,
                /*cluster=*/0, cooperative,
                LaunchDynamicSmem<T, kWideExperts, kRouterPairs>(dynamic_smem, pdl));
}

template <typename T, bool kWideExperts, bool kRouterPairs>
absl::StatusOr<int> CtasPerSm(size_t dynamic_smem, bool pdl) {
  CUDA_RETURN_STATUS_IF_ERROR((OptIn<T, kWideExperts, kRouterPairs>()));
  int ctas = 0;
  CUDA_RETURN_STATUS_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &ctas, DecomposeKStagedKernel<T, kWideExperts, kRouterPairs>, kThreads,
      LaunchDynamicSmem<T, kWideExperts, kRouterPairs>(dynamic_smem, pdl)));
  return ctas;
}

template <typename T>
struct Type {
  using type = T;
};

// Calls f(Type<T>{}, std::bool_constant<kWideExperts>{}, std::bool_constant<kRouterPairs>{})
// for the kernel instance of bf16 or fp16 operands, routers of more than 256 experts or not,
// and router pairs or not (never with wide experts: the host's checks refuse those).
template <typename F>
auto WithInstance(bool bf16, bool wide_experts, bool router_pairs, F&& f) {
  using No = std::false_type;
  using Yes = std::true_type;
  if (bf16) {
    if (router_pairs) return f(Type<__nv_bfloat16>{}, No{}, Yes{});
    return wide_experts ? f(Type<__nv_bfloat16>{}, Yes{}, No{})
                        : f(Type<__nv_bfloat16>{}, No{}, No{});
  }
  if (router_pairs) return f(Type<__half>{}, No{}, Yes{});
  return wide_experts ? f(Type<__half>{}, Yes{}, No{}) : f(Type<__half>{}, No{}, No{});
}

}  // namespace

bool RouterPairsRoute(const RouterSpec& spec) {
  return spec.experts <= kThreads && CtaRouteTokenApplies(MakeEpilogueParams(spec));
}

absl::StatusOr<int> StagedCtasPerSm(bool bf16, bool wide_experts, size_t dynamic_smem, bool pdl,
                                    bool router_pairs) {
  if (router_pairs && wide_experts)
    return absl::InvalidArgumentError("staged router pairs route at most 256 experts");
  return WithInstance(bf16, wide_experts, router_pairs, [&](auto type, auto wide, auto pairs) {
    return CtasPerSm<typename decltype(type)::type, decltype(wide)::value, decltype(pairs)::value>(
        dynamic_smem, pdl);
  });
}

cudaError_t LaunchStagedKernel(bool bf16, dim3 grid, const KernelParams& params,
                               size_t dynamic_smem, cudaStream_t stream, bool pdl,
                               bool pdl_cooperative, bool tma, bool router_pairs) {
  if (router_pairs && WideExperts(params.experts)) return cudaErrorInvalidValue;
  tma = tma && CurrentDeviceIsSm90OrNewer() && TensorMapAligned(params.w) &&
        TensorMapAligned(params.x);
  StagedParams sp = {};
  sp.p = params;
  sp.tma = tma;
  if (tma) {
    // No L2 promotion: a split's stages are a contiguous range (as the 64-tile GEMM's,
    // which measured faster without it, bench/NOTES.md session 38).
    const cudaError_t w_map = EncodeSwizzledRowsMap(&sp.map_w, params.w, params.experts, params.K,
                                                    kStagedTileExperts, /*promote_256=*/false);
    if (w_map != cudaSuccess) return w_map;
    const cudaError_t x_map = EncodeSwizzledRowsMap(&sp.map_x, params.x, params.tokens, params.K,
                                                    kStagedTileTokens, /*promote_256=*/false);
    if (x_map != cudaSuccess) return x_map;
  }
  // Cooperative as the polled kernel (decompose_k_polled.cu says why).
  const bool cooperative = !pdl || pdl_cooperative;
  return WithInstance(bf16, WideExperts(params.experts), router_pairs,
                      [&](auto type, auto wide, auto pairs) {
                        return LaunchTyped<typename decltype(type)::type, decltype(wide)::value,
                                           decltype(pairs)::value>(grid, sp, dynamic_smem, stream,
                                                                   pdl, cooperative);
                      });
}

}  // namespace moe::cuda
