// Fused Decompose-K router kernel.
//
// Problem: logits[t, e] = x[t, :] · W[e, :] for tokens t < T (1..256), experts e < E
// (1..512), hidden K (8..16384, multiple of 8), then the routing epilogue per token.
// W dominates the bytes (E·K·2 for bf16) and T is tiny, so the work is bound by reading W
// once; an ordinary GEMM tiling would give a few CTAs to the whole chip.
//
// Decomposition. Grid = (m_blocks · S, z_chunks). A CTA owns 32 experts (an m-block), one
// of S contiguous K ranges and one chunk of 8·NT tokens; its 8 warps split that K range
// again. Each warp streams its W rows with 16-byte loads and multiplies them on the tensor
// cores (mma.sync m16n8k16; experts are the MMA's M, tokens its N, so one token wastes
// 7/8 of an MMA but none of the bandwidth). K is permuted inside each 32-wide step so that
// every lane's four A/B fragment registers come from one 16-byte load (the dot product is
// invariant under a permutation of K applied to both operands).
//
// Reduction (last-CTA): warps reduce through shared memory; the CTA writes fp32 partials;
// the last of the S CTAs of an (m-block, chunk) — found with an arrival counter — sums the
// partials in a fixed order (deterministic), adds the router bias and writes the chunk's
// logits; the last m-block of a chunk runs the routing epilogue, one warp per token. Each
// last CTA resets its counter, so graph replays need no memset.
//
// Programmatic Dependent Launch: weights do not depend on the previous kernel, so the
// first weight loads are issued before griddepcontrol.wait; hidden states after it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/decompose_k_router.h"
#include "kernels/router_epilogue.cuh"

namespace moe::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockExperts = 32;  // experts per CTA (two m16 tiles)
constexpr int kStepK = 32;         // hidden elements per warp step (4 lanes x 8)
constexpr int kMaxChunk = 32;      // tokens per CTA (NT = 4)

struct KernelParams {
  const void* w;  // [experts, K]
  const void* x;  // [tokens, K]
  int tokens, K, experts;
  int m_blocks, k_splits, steps_per_warp, total_steps;
  const float* router_bias;
  const float* correction_bias;
  float* partials;     // [z][m][s][32][chunk]
  float* logits_ws;    // [z * chunk][m_blocks * 32]
  unsigned* counters;  // [z * m_blocks] level 1, then [z] level 2
  int32_t* ids;
  float* weights;
  float* logits_out;  // optional [tokens, experts]; the GEMM's C
  int gemm_mode;      // 1: write C = logits (+bias) and stop
  EpilogueParams ep;
};

union SharedStorage {
  float reduce[kWarps][kBlockExperts][kMaxChunk];  // per-warp accumulators
  struct {
    float logits[kWarps][kMaxExperts];
    float scores[kWarps][kMaxExperts];
  } epilogue;
};

__device__ __forceinline__ void WaitForPrerequisiteGrid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
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

// Tensor-core mainloop: accumulates this warp's K range into acc[m-tile][n-tile][4].
template <typename T, int NT>
__device__ __forceinline__ void TensorCoreMainloop(const KernelParams& p, int m_block, int split,
                                                   int token_base, float (&acc)[2][NT][4]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int global_warp = split * kWarps + warp;
  const int step_begin = global_warp * p.steps_per_warp;
  const int step_end = min(step_begin + p.steps_per_warp, p.total_steps);
  const int row0 = m_block * kBlockExperts + g;
  constexpr int kUnroll = NT <= 2 ? 4 : 2;
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
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int k = (step + u) * kStepK + 8 * t;
      const bool in = step + u < step_end;
#pragma unroll
      for (int n = 0; n < NT; ++n)
        b[u][n] = in ? LoadRow16(p.x, token_base + 8 * n + g, p.tokens, k, p.K, sizeof(T))
                     : make_uint4(0, 0, 0, 0);
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

// Sums the warps' accumulators; then, with S > 1, publishes the CTA's partials and
// returns whether this CTA is the last of its (m-block, chunk) to arrive; the last one
// leaves the chunk's summed logits in logits_ws. Every thread gets the same answer.
template <int kChunk>
__device__ bool ReduceSplits(const KernelParams& p, SharedStorage& smem, int m_block, int split,
                             int z) {
  __shared__ bool is_last;
  const int tid = threadIdx.x;
  const int epad = p.m_blocks * kBlockExperts;
  float* my_partials = p.partials + ((size_t(z) * p.m_blocks + m_block) * p.k_splits + split) *
                                        kBlockExperts * kChunk;
  __syncthreads();
  for (int i = tid; i < kBlockExperts * kChunk; i += kThreads) {
    const int el = i / kChunk, n = i % kChunk;
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += smem.reduce[w][el][n];
    if (p.k_splits == 1) {
      p.logits_ws[(size_t(z) * kChunk + n) * epad + m_block * kBlockExperts + el] = s;
    } else {
      my_partials[i] = s;
    }
  }
  if (p.k_splits == 1) {
    __syncthreads();
    return true;
  }
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    unsigned* counter = p.counters + size_t(z) * p.m_blocks + m_block;
    is_last = atomicAdd(counter, 1u) == unsigned(p.k_splits - 1);
    if (is_last) *counter = 0;  // ready for the next launch
  }
  __syncthreads();
  if (!is_last) return false;
  __threadfence();
  const float* block_partials =
      p.partials + (size_t(z) * p.m_blocks + m_block) * p.k_splits * kBlockExperts * kChunk;
  for (int i = tid; i < kBlockExperts * kChunk; i += kThreads) {
    // Fixed summation order (deterministic), but eight L2 loads in flight at a time:
    // a dependent chain of S loads would cost S L2 round trips.
    const float* src = block_partials + i;
    constexpr size_t kStride = size_t(kBlockExperts) * kChunk;
    float s = 0.0f;
    int sp = 0;
    for (; sp + 8 <= p.k_splits; sp += 8) {
      float v[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) v[u] = __ldcg(src + (sp + u) * kStride);
#pragma unroll
      for (int u = 0; u < 8; ++u) s += v[u];
    }
    for (; sp < p.k_splits; ++sp) s += __ldcg(src + sp * kStride);
    const int el = i / kChunk, n = i % kChunk;
    p.logits_ws[(size_t(z) * kChunk + n) * epad + m_block * kBlockExperts + el] = s;
  }
  __syncthreads();
  return true;
}

template <int kChunk>
__device__ void FinishChunk(const KernelParams& p, SharedStorage& smem, int m_block, int z) {
  __shared__ bool is_last;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid & 31;
  const int epad = p.m_blocks * kBlockExperts;
  // Bias and the optional logits output (the GEMM's C) for this block's experts.
  for (int i = tid; i < kBlockExperts * kChunk; i += kThreads) {
    const int n = i / kBlockExperts, el = i % kBlockExperts;
    const int tok = z * kChunk + n, e = m_block * kBlockExperts + el;
    if (tok >= p.tokens || e >= p.experts) continue;
    float* slot = p.logits_ws + (size_t(z) * kChunk + n) * epad + e;
    const float v = __ldcg(slot) + (p.router_bias ? p.router_bias[e] : 0.0f);
    *slot = v;
    if (p.logits_out) p.logits_out[size_t(tok) * p.experts + e] = v;
  }
  if (p.gemm_mode) return;
  if (p.m_blocks > 1) {
    __threadfence();
    __syncthreads();
    if (tid == 0) {
      unsigned* counter = p.counters + size_t(gridDim.y) * p.m_blocks + z;
      is_last = atomicAdd(counter, 1u) == unsigned(p.m_blocks - 1);
      if (is_last) *counter = 0;
    }
    __syncthreads();
    if (!is_last) return;
    __threadfence();
  } else {
    __syncthreads();
  }
  // Routing epilogue: one warp per token of the chunk.
  for (int n = warp; n < kChunk; n += kWarps) {
    const int tok = z * kChunk + n;
    if (tok >= p.tokens) break;
    float* lg = smem.epilogue.logits[warp];
    for (int e = lane; e < p.experts; e += 32)
      lg[e] = __ldcg(p.logits_ws + (size_t(z) * kChunk + n) * epad + e);
    __syncwarp();
    WarpRouteToken(p.ep, lg, smem.epilogue.scores[warp], p.correction_bias,
                   p.ids + size_t(tok) * p.ep.top_k, p.weights + size_t(tok) * p.ep.top_k);
    __syncwarp();
  }
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

template <typename T, int NT>
__global__ void __launch_bounds__(kThreads) DecomposeKTensorCoreKernel(const KernelParams p) {
  __shared__ SharedStorage smem;
  constexpr int kChunk = 8 * NT;
  const int m_block = blockIdx.x % p.m_blocks, split = blockIdx.x / p.m_blocks, z = blockIdx.y;
  PrefetchEpilogueInputs(p);
  float acc[2][NT][4] = {};
  TensorCoreMainloop<T, NT>(p, m_block, split, z * kChunk, acc);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      smem.reduce[warp][mt * 16 + g][n * 8 + 2 * t] = acc[mt][n][0];
      smem.reduce[warp][mt * 16 + g][n * 8 + 2 * t + 1] = acc[mt][n][1];
      smem.reduce[warp][mt * 16 + g + 8][n * 8 + 2 * t] = acc[mt][n][2];
      smem.reduce[warp][mt * 16 + g + 8][n * 8 + 2 * t + 1] = acc[mt][n][3];
    }
  if (!ReduceSplits<kChunk>(p, smem, m_block, split, z)) return;
  FinishChunk<kChunk>(p, smem, m_block, z);
}

template <typename TX, typename TW>
__global__ void __launch_bounds__(kThreads) DecomposeKFmaKernel(const KernelParams p) {
  __shared__ SharedStorage smem;
  const int m_block = blockIdx.x % p.m_blocks, split = blockIdx.x / p.m_blocks, z = blockIdx.y;
  PrefetchEpilogueInputs(p);
  FmaMainloop<TX, TW>(p, m_block, split, z * 8, smem);
  if (!ReduceSplits<8>(p, smem, m_block, split, z)) return;
  FinishChunk<8>(p, smem, m_block, z);
}

// ---------------------------------------------------------------------------------------
// Host side.

struct Shape {
  int tokens, experts, K;
  DType x_dtype, w_dtype;
};

int ChunkTokens(const DecomposeKConfig& c) {
  return c.mainloop == Mainloop::kFma ? 8 : 8 * c.token_tiles;
}

struct Layout {
  int m_blocks, z_chunks, chunk, total_steps, steps_per_warp;
  size_t counters_bytes, partials_offset, partials_bytes, logits_offset, logits_bytes, total;
};

Layout MakeLayout(const Shape& s, const DecomposeKConfig& c) {
  Layout l;
  l.m_blocks = (s.experts + kBlockExperts - 1) / kBlockExperts;
  l.chunk = ChunkTokens(c);
  l.z_chunks = (s.tokens + l.chunk - 1) / l.chunk;
  l.total_steps = (s.K + kStepK - 1) / kStepK;
  const int warps = c.k_splits * kWarps;
  l.steps_per_warp = (l.total_steps + warps - 1) / warps;
  auto align = [](size_t n) { return (n + 255) / 256 * 256; };
  l.counters_bytes = align(sizeof(unsigned) * (size_t(l.z_chunks) * l.m_blocks + l.z_chunks));
  l.partials_offset = l.counters_bytes;
  l.partials_bytes = c.k_splits > 1 ? align(sizeof(float) * size_t(l.z_chunks) * l.m_blocks *
                                            c.k_splits * kBlockExperts * l.chunk)
                                    : 0;
  l.logits_offset = l.partials_offset + l.partials_bytes;
  l.logits_bytes = align(sizeof(float) * size_t(l.z_chunks) * l.chunk * l.m_blocks * kBlockExperts);
  l.total = l.logits_offset + l.logits_bytes;
  return l;
}

DecomposeKConfig ChooseConfig(const Shape& s, int sm_count) {
  DecomposeKConfig c;
  const bool tensor = s.x_dtype == s.w_dtype && s.x_dtype != DType::kFP32;
  c.mainloop = tensor ? Mainloop::kTensorCore : Mainloop::kFma;
  c.token_tiles = s.tokens <= 8 ? 1 : s.tokens <= 16 ? 2 : 4;
  const int chunk = ChunkTokens(c);
  const int m_blocks = (s.experts + kBlockExperts - 1) / kBlockExperts;
  const int z_chunks = (s.tokens + chunk - 1) / chunk;
  const int total_steps = (s.K + kStepK - 1) / kStepK;
  const int target_ctas = 2 * std::max(sm_count, 1);
  const int per_split = m_blocks * z_chunks;
  const int max_splits = std::max(1, total_steps / kWarps);
  c.k_splits = std::clamp((target_ctas + per_split - 1) / per_split, 1, max_splits);
  return c;
}

absl::Status CheckConfig(const Shape& s, const DecomposeKConfig& c) {
  if (c.mainloop == Mainloop::kTensorCore) {
    if (s.x_dtype != s.w_dtype || s.x_dtype == DType::kFP32)
      return absl::InvalidArgumentError(
          "config: the tensor-core mainloop needs bf16 or fp16 hidden states and weights of the "
          "same dtype");
    if (c.token_tiles != 1 && c.token_tiles != 2 && c.token_tiles != 4)
      return absl::InvalidArgumentError("config: token_tiles must be 1, 2 or 4");
  }
  if (c.k_splits < 1 || c.k_splits > 4096)
    return absl::InvalidArgumentError(
        absl::StrCat("config: k_splits ", c.k_splits, " outside [1, 4096]"));
  return absl::OkStatus();
}

template <typename Kernel>
cudaError_t Launch(Kernel kernel, dim3 grid, const KernelParams& params, cudaStream_t stream,
                   bool pdl) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = dim3(kThreads);
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attr;
  config.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, params);
}

cudaError_t LaunchForShape(const Shape& s, const DecomposeKConfig& c, KernelParams params,
                           void* workspace, cudaStream_t stream, bool pdl) {
  const Layout l = MakeLayout(s, c);
  char* ws = static_cast<char*>(workspace);
  params.counters = reinterpret_cast<unsigned*>(ws);
  params.partials = reinterpret_cast<float*>(ws + l.partials_offset);
  params.logits_ws = reinterpret_cast<float*>(ws + l.logits_offset);
  params.m_blocks = l.m_blocks;
  params.k_splits = c.k_splits;
  params.total_steps = l.total_steps;
  params.steps_per_warp = l.steps_per_warp;
  const dim3 grid(l.m_blocks * c.k_splits, l.z_chunks);
  if (c.mainloop == Mainloop::kTensorCore) {
    const bool bf16 = s.w_dtype == DType::kBF16;
    switch (c.token_tiles) {
      case 1:
        return bf16
                   ? Launch(DecomposeKTensorCoreKernel<__nv_bfloat16, 1>, grid, params, stream, pdl)
                   : Launch(DecomposeKTensorCoreKernel<__half, 1>, grid, params, stream, pdl);
      case 2:
        return bf16
                   ? Launch(DecomposeKTensorCoreKernel<__nv_bfloat16, 2>, grid, params, stream, pdl)
                   : Launch(DecomposeKTensorCoreKernel<__half, 2>, grid, params, stream, pdl);
      default:
        return bf16
                   ? Launch(DecomposeKTensorCoreKernel<__nv_bfloat16, 4>, grid, params, stream, pdl)
                   : Launch(DecomposeKTensorCoreKernel<__half, 4>, grid, params, stream, pdl);
    }
  }
  // FMA mainloop: dispatch on the (hidden, weight) dtype pair.
  const int pair = int(s.x_dtype) * 3 + int(s.w_dtype);
  using B = __nv_bfloat16;
  using H = __half;
  using F = float;
  switch (pair) {
    case 0:
      return Launch(DecomposeKFmaKernel<B, B>, grid, params, stream, pdl);
    case 1:
      return Launch(DecomposeKFmaKernel<B, H>, grid, params, stream, pdl);
    case 2:
      return Launch(DecomposeKFmaKernel<B, F>, grid, params, stream, pdl);
    case 3:
      return Launch(DecomposeKFmaKernel<H, B>, grid, params, stream, pdl);
    case 4:
      return Launch(DecomposeKFmaKernel<H, H>, grid, params, stream, pdl);
    case 5:
      return Launch(DecomposeKFmaKernel<H, F>, grid, params, stream, pdl);
    case 6:
      return Launch(DecomposeKFmaKernel<F, B>, grid, params, stream, pdl);
    case 7:
      return Launch(DecomposeKFmaKernel<F, H>, grid, params, stream, pdl);
    default:
      return Launch(DecomposeKFmaKernel<F, F>, grid, params, stream, pdl);
  }
}

Shape RouteShape(const RouteProblem& p) {
  return {p.tokens, p.spec.experts, p.spec.hidden, p.hidden_dtype, p.weight_dtype};
}
Shape GemmShape(const GemmProblem& p) { return {p.m, p.n, p.k, p.dtype, p.dtype}; }

}  // namespace

DecomposeKConfig ChooseDecomposeKConfig(const RouteProblem& problem, int sm_count) {
  return ChooseConfig(RouteShape(problem), sm_count);
}

absl::Status CanRouteDecomposeK(const RouteProblem& problem, const DecomposeKConfig& config) {
  auto status = CheckRouteProblem(problem);
  if (!status.ok()) return status;
  return CheckConfig(RouteShape(problem), config);
}

size_t DecomposeKWorkspaceBytes(const RouteProblem& problem, const DecomposeKConfig& config) {
  return MakeLayout(RouteShape(problem), config).total;
}

cudaError_t ResetDecomposeKWorkspace(void* workspace, const RouteProblem& problem,
                                     const DecomposeKConfig& config, cudaStream_t stream) {
  return cudaMemsetAsync(workspace, 0, MakeLayout(RouteShape(problem), config).counters_bytes,
                         stream);
}

cudaError_t LaunchDecomposeKRouter(const RouteProblem& problem, const RouteArgs& args,
                                   const DecomposeKConfig& config, void* workspace,
                                   cudaStream_t stream, bool pdl) {
  const RouterSpec& s = problem.spec;
  KernelParams params = {};
  params.w = args.weight;
  params.x = args.hidden;
  params.tokens = problem.tokens;
  params.K = s.hidden;
  params.experts = s.experts;
  params.router_bias = s.has_router_bias ? args.router_bias : nullptr;
  params.correction_bias = s.has_correction_bias ? args.correction_bias : nullptr;
  params.ids = args.expert_ids;
  params.weights = args.expert_weights;
  params.logits_out = args.logits;
  params.gemm_mode = 0;
  params.ep = MakeEpilogueParams(s);
  return LaunchForShape(RouteShape(problem), config, params, workspace, stream, pdl);
}

absl::Status CanGemmDecomposeK(const GemmProblem& p) {
  if (p.m < 1 || p.m > 1024)
    return absl::InvalidArgumentError(absl::StrCat("m: ", p.m, " outside [1, 1024]"));
  if (p.n < 1 || p.n > 4096)
    return absl::InvalidArgumentError(absl::StrCat("n: ", p.n, " outside [1, 4096]"));
  if (p.k < 8 || p.k > 131072 || p.k % 8 != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("k: ", p.k, " is not a multiple of 8 in [8, 131072]"));
  return absl::OkStatus();
}

DecomposeKConfig ChooseGemmConfig(const GemmProblem& problem, int sm_count) {
  return ChooseConfig(GemmShape(problem), sm_count);
}

size_t GemmWorkspaceBytes(const GemmProblem& problem, const DecomposeKConfig& config) {
  return MakeLayout(GemmShape(problem), config).total;
}

cudaError_t ResetGemmWorkspace(void* workspace, const GemmProblem& problem,
                               const DecomposeKConfig& config, cudaStream_t stream) {
  return cudaMemsetAsync(workspace, 0, MakeLayout(GemmShape(problem), config).counters_bytes,
                         stream);
}

cudaError_t LaunchDecomposeKGemm(const GemmProblem& problem, const void* a, const void* b,
                                 const float* bias, float* c, const DecomposeKConfig& config,
                                 void* workspace, cudaStream_t stream) {
  KernelParams params = {};
  params.w = b;
  params.x = a;
  params.tokens = problem.m;
  params.K = problem.k;
  params.experts = problem.n;
  params.router_bias = bias;
  params.logits_out = c;
  params.gemm_mode = 1;
  return LaunchForShape(GemmShape(problem), config, params, workspace, stream, false);
}

}  // namespace moe::cuda
