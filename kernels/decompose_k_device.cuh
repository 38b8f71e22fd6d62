// Device building blocks of the Decompose-K kernels (decompose_k_router.cu: arrival
// counters in global memory; decompose_k_cluster.cu: thread-block clusters;
// decompose_k_polled.cu: one router CTA polling self-validating partials): parameters,
// shared-memory layout, the two mainloops, the reduction and epilogue phases, the launch
// helper. Included by those .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cuda/atomic>

#include "kernels/decompose_k_layout.h"
#include "kernels/decompose_k_router.h"
#include "kernels/launch_attributes.h"
#include "kernels/pdl_device.cuh"
#include "kernels/router_epilogue.cuh"
#include "kernels/router_spec.h"

namespace moe::cuda {

// kWarps, kThreads, kBlockExperts, kStepK, kMaxChunk, TensorCoreUnrollSteps: the launch
// geometry the host's config rules share (decompose_k_layout.h).

struct KernelParams {
  const void* w;  // [experts, K]
  const void* x;  // [tokens, K]
  int tokens, K, experts;
  int m_blocks, k_splits, steps_per_warp, total_steps;
  int stages_per_split;  // staged (decompose_k_staged.cu): 64-element K stages a split
  int router_ctas;       // polled: dedicated router CTAs ahead of the mainloop CTAs (0: none)
  int warm_routers;      // dedicated routers: a dry run of the epilogue first (under PDL)
  const float* router_bias;
  const float* correction_bias;
  float* partials;     // [z][m][s][32][chunk]
  float* logits_ws;    // [z * chunk][m_blocks * 32]
  unsigned* counters;  // [z * m_blocks] level 1, then [z] level 2
  // Many splits (arrival counters only): the splits of an (m-block, chunk) arrive in groups
  // of split_group (0: one group of all); the last of a group sums the group's partials
  // into group_partials [z][m][group][32][chunk], counted by group_counters [z][m][group].
  int split_group;
  float* group_partials;
  unsigned* group_counters;
  int32_t* ids;
  float* weights;
  float* logits_out;  // optional [tokens, experts]; the GEMM's C
  int gemm_mode;      // 1: write C = logits (+bias) and stop
  EpilogueParams ep;
  unsigned long long* timeline;  // diagnostics: per-CTA phase stamps, or null
};

// [warp][expert][token]; the row is padded by one float so that a warp reading one token
// of 32 experts, or writing its MMA fragments, does not hit one bank 32 times.
using WarpPartials = float[kWarps][kBlockExperts][kMaxChunk + 1];
// The polled router CTA keeps a whole chunk's logits, [token][expert], in shared memory.
constexpr int kPolledChunkLogits = kWarps * kBlockExperts * kMaxChunk;

union SharedStorage {
  WarpPartials reduce;                         // per-warp accumulators
  float epilogue_logits[kWarps][kMaxExperts];  // a token's logits per routing warp
  float chunk_logits[kPolledChunkLogits];      // polled router CTA
};

// Self-validating partials (decompose_k_polled.cu). A zero-filled workspace slot is
// "empty"; a producer never stores the all-zero bit pattern (+0.0 is stored as -0.0, equal
// in every sum), so a consumer polls a slot until it is non-zero, and empties it after
// reading. Relaxed GPU-scope accesses: single-copy atomic, never served stale from L1.
__device__ __forceinline__ uint32_t PolledBits(float v) {
  const uint32_t u = __float_as_uint(v);
  return u == 0u ? 0x80000000u : u;
}
__device__ __forceinline__ void StorePolledBits(float* slot, uint32_t u) {
  asm volatile("st.relaxed.gpu.global.b32 [%0], %1;" ::"l"(slot), "r"(u) : "memory");
}
__device__ __forceinline__ void StorePolled(float* slot, float v) {
  StorePolledBits(slot, PolledBits(v));
}
// Four slots at once (16-byte aligned), each already PolledBits: a vector access is four
// single-copy atomic element accesses, so a consumer polling one slot sees its value whole.
__device__ __forceinline__ void StorePolledBits4(float* slot, uint4 u) {
  asm volatile("st.relaxed.gpu.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(slot), "r"(u.x),
               "r"(u.y), "r"(u.z), "r"(u.w)
               : "memory");
}
__device__ __forceinline__ uint32_t LoadPolledBits(const float* slot) {
  uint32_t u;
  asm volatile("ld.relaxed.gpu.global.b32 %0, [%1];" : "=r"(u) : "l"(slot) : "memory");
  return u;
}
__device__ __forceinline__ void EmptyPolled(float* slot) {
  asm volatile("st.relaxed.gpu.global.b32 [%0], %1;" ::"l"(slot), "r"(0u) : "memory");
}

template <typename T>
__device__ __forceinline__ void Mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                    uint32_t a3, uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void Mma<__nv_bfloat16>(float (&c)[4], uint32_t a0, uint32_t a1,
                                                   uint32_t a2, uint32_t a3, uint32_t b0,
                                                   uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void Mma<__half>(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                            uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// 16 bytes of row `row` at column k, or zeros past the edges. Weights are read once:
// bypass L1 (ld.global.nc with no L1 allocation would be the same here).
__device__ __forceinline__ uint4 LoadRow16(const void* base, int row, int rows, int k, int K,
                                           int elem_bytes) {
  if (row >= rows || k >= K) return make_uint4(0, 0, 0, 0);
  const char* p = static_cast<const char*>(base) + (size_t(row) * K + k) * elem_bytes;
  return __ldg(reinterpret_cast<const uint4*>(p));
}

// Two token tiles: a pass's hidden states go through shared memory (cp.async, 16 bytes a
// lane, K step and tile), so that all of them are in flight at once right after
// griddepcontrol.wait. Loaded into registers, ptxas issued them in two or three batches,
// each after an MMA waiting for the batch before (a pass of 4 K steps keeps 64 registers of
// weights, 32 of hidden states and 16 accumulators live under a 128-register cap;
// scripts/sass.py --after-wait): an L2 round trip a batch (bench/NOTES.md session 48).
// From shared memory a later batch costs a shared-memory load instead.
__host__ __device__ constexpr bool StagesTokensInShared(int token_tiles) {
  return token_tiles == 2;
}

// 16 bytes from global to shared memory, bypassing L1; zeros where !in (nothing is read).
__device__ __forceinline__ void CopyAsync16(void* smem_dst, const void* src, bool in) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src),
               "r"(in ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void WaitAsyncCopies() {
  asm volatile("cp.async.wait_all;" ::: "memory");
}

// Tensor-core mainloop: accumulates this warp's K range into acc[m-tile][n-tile][4].
// `stage` (16-byte aligned: the kernels declare their shared memory alignas(16)): with two
// token tiles, this warp's slice stages the hidden states (it is free until
// StoreAccumulators, which follows a __syncwarp here). kUnroll: K steps a pass
// (TensorCorePassSteps; a kernel instance with fewer than TensorCoreUnrollSteps(NT) is
// launched only where each warp's K range fits one such pass).
template <typename T, int NT, int kUnroll = TensorCoreUnrollSteps(NT)>
__device__ __forceinline__ void TensorCoreMainloop(const KernelParams& p, int m_block, int split,
                                                   int token_base, float (&acc)[2][NT][4],
                                                   WarpPartials& stage) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int global_warp = split * kWarps + warp;
  const int step_begin = global_warp * p.steps_per_warp;
  const int step_end = min(step_begin + p.steps_per_warp, p.total_steps);
  const int row0 = m_block * kBlockExperts + g;
  bool waited = false;
  for (int step = step_begin; step < step_end || !waited; step += kUnroll) {
    uint4 a[kUnroll][4];
    uint4 b[kUnroll][NT];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int k = (step + u) * kStepK + 8 * t;
      const bool in = step + u < step_end;
#pragma unroll
      for (int r = 0; r < 4; ++r)  // rows g, g+8, g+16, g+24 of the block
        a[u][r] = in ? LoadRow16(p.w, row0 + 8 * r, p.experts, k, p.K, sizeof(T))
                     : make_uint4(0, 0, 0, 0);
    }
    if (!waited) {  // hidden states may be written by the previous kernel
      WaitForPrerequisiteGrid();
      waited = true;
      if (step >= step_end) break;
    }
    if constexpr (StagesTokensInShared(NT)) {
      uint4* slots = reinterpret_cast<uint4*>(&stage[warp][0][0]);  // [u][n][lane]
      static_assert(sizeof(stage[0]) >= kUnroll * NT * 32 * sizeof(uint4), "a warp's slice");
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int k = (step + u) * kStepK + 8 * t;
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          const int row = token_base + 8 * n + g;
          const bool in = step + u < step_end && row < p.tokens && k < p.K;
          CopyAsync16(
              slots + (u * NT + n) * 32 + lane,
              in ? static_cast<const char*>(p.x) + (size_t(row) * p.K + k) * sizeof(T) : p.x, in);
        }
      }
      WaitAsyncCopies();  // each lane reads back only its own slots
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int n = 0; n < NT; ++n) b[u][n] = slots[(u * NT + n) * 32 + lane];
    } else {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int k = (step + u) * kStepK + 8 * t;
        const bool in = step + u < step_end;
#pragma unroll
        for (int n = 0; n < NT; ++n)
          b[u][n] = in ? LoadRow16(p.x, token_base + 8 * n + g, p.tokens, k, p.K, sizeof(T))
                       : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const uint4 lo = a[u][2 * mt], hi = a[u][2 * mt + 1];  // rows g and g+8 of m-tile
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          Mma<T>(acc[mt][n], lo.x, hi.x, lo.y, hi.y, b[u][n].x, b[u][n].y);
          Mma<T>(acc[mt][n], lo.z, hi.z, lo.w, hi.w, b[u][n].z, b[u][n].w);
        }
      }
    }
  }
  if constexpr (StagesTokensInShared(NT)) __syncwarp();  // the slice is StoreAccumulators' next
}

template <typename T>
__device__ __forceinline__ void Load8(const T* p, float (&v)[8]);
template <>
__device__ __forceinline__ void Load8<float>(const float* p, float (&v)[8]) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(p));
  const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  v[0] = a.x;
  v[1] = a.y;
  v[2] = a.z;
  v[3] = a.w;
  v[4] = b.x;
  v[5] = b.y;
  v[6] = b.z;
  v[7] = b.w;
}
template <>
__device__ __forceinline__ void Load8<__nv_bfloat16>(const __nv_bfloat16* p, float (&v)[8]) {
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = __uint_as_float(w[i] << 16);
    v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
template <>
__device__ __forceinline__ void Load8<__half>(const __half* p, float (&v)[8]) {
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}

// FMA mainloop for any dtype pair, 8 tokens per CTA: writes the warp's partial sums of its
// K range straight into shared memory.
template <typename TX, typename TW>
__device__ __forceinline__ void FmaMainloop(const KernelParams& p, int m_block, int split,
                                            int token_base, SharedStorage& smem) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int global_warp = split * kWarps + warp;
  const int k_begin = global_warp * p.steps_per_warp * kStepK;
  const int k_end = min(k_begin + p.steps_per_warp * kStepK, p.K);
  WaitForPrerequisiteGrid();
  for (int el = 0; el < kBlockExperts; ++el) {
    const int e = m_block * kBlockExperts + el;
    float acc[8] = {};
    if (e < p.experts) {
      for (int k = k_begin + 8 * lane; k < k_end; k += 256) {
        float w[8];
        Load8(static_cast<const TW*>(p.w) + size_t(e) * p.K + k, w);
#pragma unroll
        for (int n = 0; n < 8; ++n) {
          const int tok = token_base + n;
          if (tok >= p.tokens) break;
          float x[8];
          Load8(static_cast<const TX*>(p.x) + size_t(tok) * p.K + k, x);
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[n] = fmaf(x[i], w[i], acc[n]);
        }
      }
    }
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      const float s = WarpSum(acc[n]);
      if (lane == 0) smem.reduce[warp][el][n] = s;
    }
  }
}

// Diagnostics: phase stamps per CTA (TimelineSlot, decompose_k_router.h), [cta][slot][2] =
// (globaltimer ns, clock64), written by thread 0 when the launch asked for a timeline
// (never in service). TimelineEntry: this CTA's entry for `slot` (p.timeline not null).
__device__ __forceinline__ unsigned long long* TimelineEntry(const KernelParams& p, int slot) {
  return p.timeline + ((size_t(blockIdx.y) * gridDim.x + blockIdx.x) * kTimelineSlots + slot) * 2;
}
__device__ __forceinline__ void Stamp(const KernelParams& p, int slot) {
  if (p.timeline == nullptr || threadIdx.x != 0) return;
  unsigned long long* out = TimelineEntry(p, slot);
  out[0] = GlobalTimerNs();
  out[1] = clock64();
  if (slot == kStampStart) {  // where it runs: which CTAs share an SM (router_bench)
    unsigned sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    TimelineEntry(p, kStampSm)[0] = sm + 1ull;
  }
}

// Adds the router bias to this block's logits in logits_ws and writes the optional logits
// output (the GEMM's C).
template <int kChunk>
__device__ void AddBiasAndPublish(const KernelParams& p, int m_block, int z) {
  const int epad = p.m_blocks * kBlockExperts;
  for (int i = threadIdx.x; i < kBlockExperts * kChunk; i += kThreads) {
    const int n = i / kBlockExperts, el = i % kBlockExperts;
    const int tok = z * kChunk + n, e = m_block * kBlockExperts + el;
    if (tok >= p.tokens || e >= p.experts) continue;
    float* slot = p.logits_ws + (size_t(z) * kChunk + n) * epad + e;
    const float v = __ldcg(slot) + (p.router_bias ? p.router_bias[e] : 0.0f);
    *slot = v;
    if (p.logits_out) p.logits_out[size_t(tok) * p.experts + e] = v;
  }
}

// Publishes this CTA's global writes and counts it in; true (in every thread) for the
// arrival that makes `expected`. That last CTA resets the counter for the next launch
// and may then read what every earlier arrival wrote.
//
// Ordering without a full fence: the CTA barrier orders every thread's writes before
// thread 0's release-RMW at GPU scope (release is cumulative over what thread 0 has
// observed, including through the barrier); the last arrival's RMW also acquires, and
// the barrier after it passes that on to the CTA's other threads.
__device__ inline bool ArriveLast(unsigned* counter, unsigned expected) {
  __shared__ bool is_last;
  __syncthreads();
  if (threadIdx.x == 0) {
    ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> count(*counter);
    is_last = count.fetch_add(1u, ::cuda::memory_order_acq_rel) == expected - 1;
    if (is_last) count.store(0u, ::cuda::memory_order_relaxed);
  }
  __syncthreads();
  return is_last;
}

// The routing epilogue for one chunk's tokens (logits in logits_ws): a warp per token.
template <int kChunk>
__device__ void RouteChunk(const KernelParams& p, SharedStorage& smem, int z) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int epad = p.m_blocks * kBlockExperts;
  for (int n = warp; n < kChunk; n += kWarps) {
    const int tok = z * kChunk + n;
    if (tok >= p.tokens) break;
    float* lg = smem.epilogue_logits[warp];
    for (int e = lane; e < p.experts; e += 32)
      lg[e] = __ldcg(p.logits_ws + (size_t(z) * kChunk + n) * epad + e);
    __syncwarp();
    WarpRouteToken(p.ep, lg, p.correction_bias, p.ids + size_t(tok) * p.ep.top_k,
                   p.weights + size_t(tok) * p.ep.top_k);
    __syncwarp();
  }
}

// Writes a warp's MMA accumulators into its slice of smem.reduce ([expert][token]).
template <int NT>
__device__ __forceinline__ void StoreAccumulators(WarpPartials& reduce,
                                                  const float (&acc)[2][NT][4]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      reduce[warp][mt * 16 + g][n * 8 + 2 * t] = acc[mt][n][0];
      reduce[warp][mt * 16 + g][n * 8 + 2 * t + 1] = acc[mt][n][1];
      reduce[warp][mt * 16 + g + 8][n * 8 + 2 * t] = acc[mt][n][2];
      reduce[warp][mt * 16 + g + 8][n * 8 + 2 * t + 1] = acc[mt][n][3];
    }
}

// Sums the 8 warps' slices of smem.reduce: element i = el * kChunk + n.
template <int kChunk>
__device__ __forceinline__ float SumWarps(const WarpPartials& reduce, int i) {
  const int el = i / kChunk, n = i % kChunk;
  float s = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) s += reduce[w][el][n];
  return s;
}

// Launches `kernel` (`threads` a CTA, `dynamic_smem` bytes of dynamic shared memory) with
// the optional PDL, cluster and cooperative attributes.
template <typename Kernel, typename Params>
cudaError_t Launch(Kernel kernel, dim3 grid, const Params& params, cudaStream_t stream, bool pdl,
                   int cluster = 0, bool cooperative = false, size_t dynamic_smem = 0,
                   int threads = kThreads) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = dim3(threads);
  config.dynamicSmemBytes = dynamic_smem;
  config.stream = stream;
  LaunchAttributes attributes;
  attributes.Cooperative(cooperative).Pdl(pdl).Cluster(cluster);
  attributes.AttachTo(config);
  return cudaLaunchKernelEx(&config, kernel, params);
}

// The biases are read by whichever CTA finishes last; have the first CTA pull them into
// L2 while the weights stream, so that read is an L2 hit rather than a DRAM round trip.
__device__ __forceinline__ void PrefetchEpilogueInputs(const KernelParams& p) {
  if (blockIdx.x != 0 || blockIdx.y != 0) return;
  const int line = threadIdx.x * 32;  // 128-byte lines of floats
  if (p.router_bias && line < p.experts)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p.router_bias + line));
  if (p.correction_bias && line < p.experts)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p.correction_bias + line));
}

}  // namespace moe::cuda
