// The fused Decompose-K router kernel: one launch turns hidden states into expert ids and
// weights (a route_after_gemm config, for large batches no one-launch config holds, launches
// a GEMM and then the epilogue kernel). Host API in the CUTLASS style; no allocation, no
// synchronisation, stream ordered and CUDA-graph capturable.
//
//   DecomposeKConfig cfg = ChooseDecomposeKConfig(problem, sm_count);
//   size_t bytes = DecomposeKWorkspaceBytes(problem, cfg);
//   ResetDecomposeKWorkspace(ws, problem, cfg, stream);   // once, after allocation
//   LaunchDecomposeKRouter(problem, args, cfg, ws, bytes, stream);  // any number of times
//
// The workspace holds arrival counters that the kernel resets itself, so launches (and
// graph replays) need no reset in between. One workspace serves one launch at a time.
// Thread-safety: the functions are stateless; concurrent launches need distinct
// workspaces.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"
#include "kernels/route_args.h"

namespace moe::cuda {

enum class Mainloop : int {
  kTensorCore = 0,  // mma.sync m16n8k16 (bf16/fp16 with equal hidden and weight dtypes)
  kFma = 1,         // CUDA-core FMA, any dtype pair
};

struct DecomposeKConfig {
  Mainloop mainloop = Mainloop::kTensorCore;
  int token_tiles = 1;  // n-tiles of 8 tokens per CTA: 1, 2 or 4
  int k_splits = 1;     // S: CTAs that share one expert block's K range
  // 0: the S CTAs reduce through global memory and an arrival counter. 1..16: they form
  // a thread-block cluster of this size (== k_splits) and reduce through distributed
  // shared memory (sm_90+, tensor-core mainloop). Routing with token_tiles 1 and at most
  // 128 experts (4 expert blocks), a cluster instead spans every expert block (m_blocks ·
  // k_splits CTAs, at most 16) and its rank 0 routes from shared memory, the others
  // pushing their partials there (decompose_k_cluster.cu).
  int cluster = 0;
  // With cluster == 0: every CTA publishes self-validating partials and a router CTA per
  // token polls them (decompose_k_polled.cu). Tensor-core mainloop, at most one CTA per
  // SM, a router's tokens x experts <= 8192.
  bool polled = false;
  // Polled only: launched cooperatively also when launched with PDL. Without PDL a polled
  // launch is always cooperative (its grid guaranteed resident). Under PDL the cooperative
  // launch measured faster on some shapes and slower on others (its secondary may not start
  // until SMs free up), so the autotuner times both.
  bool pdl_cooperative = false;
  // Polled, not staged, only: under PDL the launch asks for dynamic shared memory past half
  // an SM's (it uses none), so one CTA fits a SM and CTAs of the next launches cannot share
  // an SM with this one's while it runs (the staged launches always do so under PDL).
  // Faster on most decode rows, slower on some grids, so the autotuner times both
  // (decompose_k_polled.cu). Ignored without PDL.
  bool pdl_one_cta_per_sm = false;
  // Polled only: the routers are CTAs of their own (one per token of a chunk, ahead of the
  // mainloop CTAs) instead of the first mainloop CTAs. With no weights to stream, a router
  // warms its instruction and constant caches with a dry run of the epilogue while the
  // mainloop CTAs (and under PDL the previous launch) run, so the real epilogue runs warm.
  bool dedicated_routers = false;
  // Polled only: CTAs of 64 experts x 64 tokens that stage their split's K slice of both
  // operands in shared memory (decompose_k_staged.cu) instead of the 32 x 8·token_tiles
  // CTAs streaming into registers: fewer re-reads of each operand at 64+ tokens.
  // token_tiles is unused; no dedicated routers.
  bool staged = false;
  // Staged only: the stages copied by cp.async even where the TMA could copy them (sm_90+,
  // 16-byte aligned operands; decompose_k_staged.cu). Same bits; for tests and benchmarks.
  bool staged_cp_async = false;
  // Staged only: each router CTA gathers two of the chunk's tokens and routes them with four
  // warps each (router pairs), so that in a full chunk's row half the CTAs leave once they
  // have published and free their SMs for the next launch while the others route. Routers
  // of at most 256 experts whose spec one CTA routes token by token (RouterPairsRoute in
  // decompose_k_staged.h); same bits as the routers of one token.
  bool staged_router_pairs = false;
  // Routing in two launches instead of one: the router GEMM by the general GEMM's staged-tile
  // kernel (gemm_tile 64 or 128, gemm_tile_m, k_splits and gemm_tma, as a GEMM config) or by
  // cuBLASLt (gemm_cublas) into fp32 logits in the workspace, then the routing epilogue as a
  // kernel of its own
  // (routing_epilogue_kernel.h), under PDL behind the GEMM when the launch is. The other
  // fields stay at their defaults. For the batches no one-launch config holds well: routers
  // of 256+ experts at 129-256 tokens, whose staged 64 x 64 tiles cannot all be resident
  // (DeepSeek-V3 at 256 tokens would need 160 CTAs), so the one-launch kernels read the
  // weights once per 8-32 tokens (bench/NOTES.md session 68). An autotuner candidate.
  bool route_after_gemm = false;
  // The general GEMM only (and route_after_gemm): 64 or 128 runs the staged-tile kernel
  // (decompose_k_gemm_tile.cu) with this CTA tile edge and k_splits; 0 the router kernels'
  // machinery.
  int gemm_tile = 0;
  // With gemm_tile = 128: rows of A a CTA tile covers, 0 for 128 or 64 (TileGemmShape::tile_m).
  int gemm_tile_m = 0;
  // With gemm_tile: stages loaded by the TMA (TileGemmShape::tma); ChooseGemmConfig sets it
  // on sm_90+. H200: 0.6-1.6 us faster on the large-K rows (bench/NOTES.md session 38).
  bool gemm_tma = false;
  // The general GEMM only: the whole GEMM is one cublasLtMatmul (cublaslt_gemm.h), for the
  // shapes where cuBLAS's own tiling beats Decompose-K; the fields above are unused.
  bool gemm_cublas = false;
};

// What the config rules and the heuristic need to know of a device: its multiprocessors
// (a polled grid must be resident at once: at most one CTA each) and whether it runs
// thread-block clusters (sm_90+).
struct DecomposeKDevice {
  int sm_count = 0;
  bool clusters = false;
  // Whether cuBLASLt can be loaded (cublaslt_api.h): route_after_gemm configs by cuBLASLt's
  // GEMM are valid only then.
  bool cublaslt = false;
};

// The current device's (zero SMs and no clusters without one) and the process's cuBLASLt
// (loaded on the first call); `sm_count` > 0 stands for its SM count (the count a plan or the
// C ABI was given).
DecomposeKDevice CurrentDecomposeKDevice(int sm_count = 0);

// The default heuristic: for up to 128 tokens on the tensor cores the polled reduction with
// about one CTA per SM (up to 64 tokens with dedicated routers; staged tiles for large
// tokens x experts); otherwise enough CTAs to cover the SMs twice, one K step per warp at
// least.
// Up to 128 tokens, routers of up to 128 experts whose weights a cluster of at most 16
// CTAs loads in one pass take the cluster whose rank 0 routes (sm_90+; with more than 32
// experts only past 8 tokens, with more than 64 only past 16 and at 17-64 tokens only
// where the two-tile config below does not fit, and where the grid fits the SMs), unless
// allow_rank_zero_routes is false.
// allow_polled = false: the best arrival-counter or cluster config (an autotuner family).
// Up to 16 tokens the polled split count is cut to the larger of PolledOnePassSplits and a
// quarter of the rule's (then raised to PolledShortPassSplits' where two tiles' grid takes
// at most half the SMs), and at 17-64 tokens two token tiles take PolledShortPassSplits'
// count, or as many splits as fit; cut_decode_splits = false keeps the rule's own count and
// token tiling (the centre of the autotuner's split candidates). Polled configs launch one
// CTA per SM under PDL (pdl_one_cta_per_sm; up to 16 tokens where they have dedicated
// routers), cooperatively up to 16 tokens and at 17-64 where the grid fits beside a router a
// token, plainly elsewhere, with a split or more added up to 64 tokens where the grid would
// otherwise start each launch at its predecessor's wait release with at most four launches
// resident (PdlLaunchStartsAtWaitRelease). A problem CheckRouteProblem refuses gets the
// default config (CanRouteDecomposeK then names the problem's bad field).
DecomposeKConfig ChooseDecomposeKConfig(const RouteProblem& problem, int sm_count,
                                        bool allow_polled = true, bool cut_decode_splits = true,
                                        bool allow_rank_zero_routes = true);

// The same heuristic for a described device; asks the CUDA runtime nothing, so that its
// choices can be checked for any device size without a GPU (decompose_k_config_test).
// ChooseDecomposeKConfig is this with {sm_count, the current device's clusters}.
DecomposeKConfig ChooseDecomposeKConfigFor(const RouteProblem& problem,
                                           const DecomposeKDevice& device, bool allow_polled = true,
                                           bool cut_decode_splits = true,
                                           bool allow_rank_zero_routes = true);

// The polled reduction's config for `token_tiles` (split count by its rule), at any token
// count: an autotuner candidate where the heuristic chose another reduction. Check it with
// CanRouteDecomposeK (the grid must fit the device).
DecomposeKConfig ChoosePolledConfig(const RouteProblem& problem, int sm_count, int token_tiles);

// The fewest splits with which every warp of a polled config with `token_tiles` loads its
// whole K range of weights in one unrolled pass of the mainloop, so under Programmatic
// Dependent Launch all of it before the wait; fewer splits need a second pass after it.
// An autotuner candidate: on the H200 the one-token rows were fastest at or near it
// (Mixtral, in the tuner's own timing under PDL: 4 splits 2.55 us, the heuristic's 32
// 3.78). The heuristic takes it only as a floor: without PDL fewer splits are not faster
// everywhere (Qwen3-30B t=1: 2 splits 5.32 us, 8 splits 4.70).
int PolledOnePassSplits(const RouteProblem& problem, int token_tiles);

// The fewest splits with which every warp of a two-token-tile polled config has at most two
// K steps, so that the launch takes the instance with a pass of 2 steps (shorter-lived
// weight registers, no steps of zeros). An autotuner candidate from 9 tokens.
int PolledShortPassSplits(const RouteProblem& problem);

// The staged polled config (DecomposeKConfig::staged): about one CTA per SM, every split
// at least one stage and at most kStagedMaxStages (check it with CanRouteDecomposeK). An
// autotuner candidate; `splits` > 0 asks for that split count instead.
DecomposeKConfig ChooseStagedConfig(const RouteProblem& problem, int sm_count, int splits = 0);

// A route_after_gemm config: the staged-tile GEMM with a `tile` (64 or 128) x `tile_m` (0:
// square, or 64 with 128) tile at the GEMM heuristic's split count for `device` (its split
// CTAs at most one an SM), the TMA on sm_90+ (device.clusters). An autotuner candidate from
// 64 tokens, and the heuristic's config where no one-launch config fits (ChooseDecomposeKConfig).
// Check it with CanRouteDecomposeKOn (a device of fewer SMs than output tiles cannot run it).
DecomposeKConfig ChooseRouteAfterGemmConfig(const RouteProblem& problem,
                                            const DecomposeKDevice& device, int tile,
                                            int tile_m = 0);

// A route_after_gemm config whose GEMM is one cublasLtMatmul (cuBLASLt loaded on first use:
// cublaslt_api.h; valid on devices whose description says it loads). An autotuner candidate
// from 128 tokens and the heuristic's two-launch config where cuBLASLt loads; its workspace
// holds the logits and then cuBLASLt's (RouteAfterCublasLtOffset).
DecomposeKConfig ChooseRouteAfterCublasLtConfig();

// A polled config with dedicated routers, a split fewer at a time until its grid fits
// `sm_count` SMs (at one split it may still not fit: check with CanRouteDecomposeK). The
// heuristic's and the autotuner's one way to add them.
DecomposeKConfig WithDedicatedRouters(const RouteProblem& problem, const DecomposeKConfig& config,
                                      int sm_count);

// Whether back-to-back PDL launches of a grid of `grid_ctas` CTAs, one CTA a slot of
// `cta_slots` (the SMs, for one CTA per SM), `router_ctas` of which still route after the
// others have published and left, start each launch at the moment its predecessor's
// griddepcontrol.wait is released. As many launches as fit whole are resident at once;
// the next one starts when enough slots are free. That is when the oldest one's mainloop
// CTAs leave, unless the slots left over by the resident launches are fewer than its
// routers: then it starts only when those routers finish, which is the very moment the
// next-oldest launch's wait is released. H200 (bench/NOTES.md, session 37): cooperative
// one-CTA-per-SM DeepSeek-V3 grids in that state (64 and 66 CTAs) gathered their partials
// ~0.8 us late (4.14 / 4.16 us a call), their neighbours (58, 60, 72 CTAs) did not (3.44 -
// 3.55). The heuristic steers clear of it where at most four launches are resident
// (ChooseDecomposeKConfig).
bool PdlLaunchStartsAtWaitRelease(int grid_ctas, int router_ctas, int cta_slots);

// Checks the problem and the config (e.g. tensor cores need equal 16-bit dtypes) for the
// current device.
absl::Status CanRouteDecomposeK(const RouteProblem& problem, const DecomposeKConfig& config);

// The same checks for a described device (no CUDA runtime call).
absl::Status CanRouteDecomposeKOn(const RouteProblem& problem, const DecomposeKConfig& config,
                                  const DecomposeKDevice& device);

size_t DecomposeKWorkspaceBytes(const RouteProblem& problem, const DecomposeKConfig& config);

// A config routing after cuBLASLt's GEMM keeps the logits at the workspace's start and
// gives cuBLASLt the rest from this offset, however much that is: DecomposeKWorkspaceBytes
// leaves it the 32 MiB that lets it choose from all its algorithms, a CudaRouterPlan what
// its algorithm asks for (CublasLtGemmWorkspaceNeed), and with none past the logits it
// takes an algorithm that needs none.
inline size_t RouteAfterCublasLtOffset(const RouteProblem& problem) {
  return (sizeof(float) * size_t(problem.tokens) * problem.spec.experts + 255) / 256 * 256;
}

// The least workspace a launch of `config` takes (LaunchDecomposeKRouter refuses less):
// DecomposeKWorkspaceBytes, or RouteAfterCublasLtOffset for a route after cuBLASLt's GEMM.
size_t DecomposeKLeastWorkspaceBytes(const RouteProblem& problem, const DecomposeKConfig& config);

// The workspace's prefix that must be zero before a launch (counters, polled partial
// slots); every launch leaves it zero again. The rest is scratch.
size_t DecomposeKZeroedBytes(const RouteProblem& problem, const DecomposeKConfig& config);

cudaError_t ResetDecomposeKWorkspace(void* workspace, const RouteProblem& problem,
                                     const DecomposeKConfig& config, cudaStream_t stream);

// Whether a polled or staged launch of `config` on `stream` is cooperative: always without
// PDL; under PDL where the config says so (pdl_cooperative), and also from a stream whose
// priority is not the default: a plain launch relies on grids of one priority reaching the
// SMs in launch order (decompose_k_polled.cu says why), which a higher-priority grid
// overtakes.
bool LaunchesCooperatively(const DecomposeKConfig& config, bool pdl, cudaStream_t stream);

// Launches the kernel (with Programmatic Dependent Launch when `pdl` is set: the kernel
// prefetches weights before waiting for the previous kernel in the stream). `workspace`
// holds `workspace_bytes`: at least DecomposeKWorkspaceBytes(problem, config), except that
// a route_after_gemm config through cuBLASLt needs only its logits
// (RouteAfterCublasLtOffset) and gives cuBLASLt whatever lies past them (a plan holds what
// its algorithm asks for). Less: cudaErrorInvalidValue, nothing launched.
cudaError_t LaunchDecomposeKRouter(const RouteProblem& problem, const RouteArgs& args,
                                   const DecomposeKConfig& config, void* workspace,
                                   size_t workspace_bytes, cudaStream_t stream, bool pdl = false);

// Diagnostics: the same launch, with every CTA's thread 0 writing (globaltimer ns,
// clock64) pairs at its phase boundaries into `timeline`, which holds TimelineEntries()
// zero-filled uint64s laid out [z][cta][slot][2]; a slot a CTA does not pass stays zero.
// For router_bench.
enum TimelineSlot : int {
  kStampStart,     // the CTA started (under PDL: while the previous launch still runs)
  kStampMainloop,  // its partial products are in shared memory
  kStampReduced,   // its split reduction is done / its partials are published
  kStampArrived,   // the router CTA has every partial of its tokens
  kStampRouted,    // the router CTA has written its tokens' ids and weights
  kStampWaited,    // a dedicated router CTA passed griddepcontrol.wait (polled kernel)
  // A one-token router CTA's epilogue (CtaRouteToken's EpiloguePhase, in that order): its
  // column warps are done, the kept groups are known, the choices are ranked.
  kStampEpiColumns,
  kStampEpiGroups,
  kStampEpiRanked,
  kStampSm,  // not a time: (the SM the CTA ran on + 1, 0), written with kStampStart
  kTimelineSlots
};
size_t TimelineEntries(const RouteProblem& problem, const DecomposeKConfig& config);
cudaError_t LaunchDecomposeKRouterWithTimeline(const RouteProblem& problem, const RouteArgs& args,
                                               const DecomposeKConfig& config, void* workspace,
                                               size_t workspace_bytes, cudaStream_t stream,
                                               bool pdl, unsigned long long* timeline);

// The general skinny GEMM on the same machinery: C[M,N] = A[M,K]·B[N,K]ᵀ (+ bias[N]),
// fp32 output, row-major. M plays the tokens, N the experts.
struct GemmProblem {
  int m = 0, n = 0, k = 0;
  DType dtype = DType::kBF16;  // of A and B
};
absl::Status CanGemmDecomposeK(const GemmProblem& problem);
// What the GEMM's heuristic needs to know of a device: its SMs (a split grid is resident
// at once) and whether it runs the TMA (sm_90+: the few-row tiles, TMA stages).
struct GemmDevice {
  int sm_count = 0;
  bool tma = false;
};
// The GEMM's config: cuBLASLt where GemmTakesCublas (unless allow_cublas is false: the
// best Decompose-K config, for tests and benchmarks), else the staged tiles (the few-row
// ones where the TMA runs) or the router kernels.
DecomposeKConfig ChooseGemmConfig(const GemmProblem& problem, const GemmDevice& device,
                                  bool allow_cublas = true);
// The same for the current device's TMA (TileGemmTmaSupported) and `sm_count` SMs.
DecomposeKConfig ChooseGemmConfig(const GemmProblem& problem, int sm_count,
                                  bool allow_cublas = true);
// Whether cuBLAS beats Decompose-K on the shape (decompose_k_config.cc has the measurements).
bool GemmTakesCublas(const GemmProblem& problem);
size_t GemmWorkspaceBytes(const GemmProblem& problem, const DecomposeKConfig& config);
cudaError_t ResetGemmWorkspace(void* workspace, const GemmProblem& problem,
                               const DecomposeKConfig& config, cudaStream_t stream);
// With `pdl`: launched with Programmatic Dependent Launch. B (the weights' role) must not be
// written by the kernel just before on the stream: it is read before griddepcontrol.wait;
// A, the bias, the workspace and C only after it. A gemm_cublas config is LaunchGemm's
// (gemm_launch.h): here it gets cudaErrorInvalidValue.
cudaError_t LaunchDecomposeKGemm(const GemmProblem& problem, const void* a, const void* b,
                                 const float* bias, float* c, const DecomposeKConfig& config,
                                 void* workspace, cudaStream_t stream, bool pdl = false);

}  // namespace moe::cuda
