// Device side of the polled reduction's routers, shared by the kernels that publish
// self-validating partials (decompose_k_polled.cu: 32-expert CTAs streaming from
// registers; decompose_k_staged.cu: 64 x 64 tiles staged in shared memory): the router
// CTAs' shared memory, the assignment of a chunk's tokens to routers, the gather of the
// S partials of each (expert, token) and the routing of the gathered tokens. Included by
// those .cu files only.
//
// Partials layout: [chunk][split][token of chunk][m_blocks · 32] floats, zero-filled once
// at allocation; a router empties every slot it reads, so each launch leaves the
// workspace zero again.
#pragma once

#include "kernels/decompose_k_device.cuh"
#include "kernels/decompose_k_polled.h"

namespace moe::cuda {

static_assert(kStampEpiGroups - kStampEpiColumns == kEpiGroupsDone - kEpiColumnsDone &&
                  kStampEpiRanked - kStampEpiColumns == kEpiRanked - kEpiColumnsDone,
              "the timeline's epilogue slots follow EpiloguePhase");

// A router CTA's shared memory besides its tokens' logits.
struct PolledRouterShared {
  float router_bias[kMaxExperts];
  float correction_bias[kMaxExperts];
  CtaRouteScratch cta_route;              // a router with one token only
  RankedWarpScratch ranked_warp[kWarps];  // several tokens, a warp each, ranked
  int32_t dry_ids[kMaxTopK];              // a dedicated router's dry run
  float dry_weights[kMaxTopK];
};

__device__ __forceinline__ void StageBiases(const KernelParams& p, PolledRouterShared& r) {
  for (int e = threadIdx.x; e < p.experts; e += kThreads) {
    r.router_bias[e] = p.router_bias ? __ldg(p.router_bias + e) : 0.0f;
    r.correction_bias[e] = p.correction_bias ? __ldg(p.correction_bias + e) : 0.0f;
  }
}

// The chunk tokens [first, last) a router CTA gathers and routes: one token per block of
// the chunk's row while there are blocks enough. A router's gather is then one polling
// round trip (a thread per expert; with 8 tokens a router each thread polled 8 elements
// one after another), and its token is routed by the whole CTA where CtaRouteToken
// applies.
struct RouterTokens {
  int first, last;
};
__device__ __forceinline__ RouterTokens TokensOfRouter(int valid) {
  const int per_router = PolledTokensPerRouter(valid, int(gridDim.x));
  const int first = int(blockIdx.x) * per_router;
  return {first, min(first + per_router, valid)};
}

// The chunk tokens of a router pair (the staged kernel's DecomposeKConfig::
// staged_router_pairs): 2b and 2b + 1 for block b of the row, so half the blocks of a full
// chunk's row route and the others leave once they have published.
__device__ __forceinline__ RouterTokens TokensOfRouterPair(int valid) {
  const int first = 2 * int(blockIdx.x);
  return {min(first, valid), min(first + 2, valid)};
}

// Sums of `splits` polled slots `stride` floats apart, in slot order (deterministic), of
// the element at `first` and, when kTwo and `second`, of the one `second_offset` floats
// after it (experts e and e + kThreads of one token: Kimi K2's 384 experts on 256 threads;
// or expert e of two tokens: the staged kernel's router pairs); empties each slot. Sixteen slots
// (of each element) are polled together and every round re-issues the loads of all that are still
// empty, so slots that land late cost one L2 round trip between them, not one each; with two
// elements, both elements' loads are in flight together (one round trip for both, not two one after
// the other). The kTwo branches keep each form's instructions as they were measured as two
// functions (session 33: the PTX of every polled instance the same but for one moved constant).
template <bool kTwo>
__device__ __forceinline__ float SumPolledSlots(float* first, int splits, size_t stride,
                                                bool second, size_t second_offset,
                                                float& sum_second) {
  constexpr int kBatch = 16;
  constexpr uint32_t kNone = 0x80000000u;  // -0.0: an absent slot adds nothing
  float s = 0.0f;
  if constexpr (kTwo) sum_second = 0.0f;
  for (int sp = 0; sp < splits; sp += kBatch) {
    uint32_t v[kBatch], w[kTwo ? kBatch : 1];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const bool in = sp + u < splits;
      if constexpr (kTwo) {
        const float* slot = first + (sp + u) * stride;
        v[u] = in ? LoadPolledBits(slot) : kNone;
        w[u] = in && second ? LoadPolledBits(slot + second_offset) : kNone;
      } else {
        v[u] = in ? LoadPolledBits(first + (sp + u) * stride) : kNone;
      }
    }
    for (;;) {
      bool empty = false;
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        if constexpr (kTwo)
          empty |= v[u] == 0u || w[u] == 0u;
        else
          empty |= v[u] == 0u;
      }
      if (!empty) break;
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const float* slot = first + (sp + u) * stride;
        if (v[u] == 0u) v[u] = LoadPolledBits(slot);
        if constexpr (kTwo)
          if (w[u] == 0u) w[u] = LoadPolledBits(slot + second_offset);
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (sp + u >= splits) break;
      float* slot = first + (sp + u) * stride;
      s += __uint_as_float(v[u]);
      EmptyPolled(slot);
      if constexpr (kTwo) {
        if (second) {
          sum_second += __uint_as_float(w[u]);
          EmptyPolled(slot + second_offset);
        }
      }
    }
  }
  return s;
}

__device__ __forceinline__ float SumPolled(float* first, int splits, size_t stride) {
  float unused;
  return SumPolledSlots<false>(first, splits, stride, false, 0, unused);
}

// GatherChunkLogits for a lone token of more experts than threads: thread e sums experts e
// and e + kThreads (SumPolledSlots<true>). Compiled only into the kernel instances for more than
// 256 experts (WithExpertsPerLaneOf): in instances shared with the other widths it made
// rows that never take it 0.05-0.14 us slower (inlined, ptxas spilled 24-60 more bytes;
// out of line, DeepSeek-V3 t=16 still +0.14; H200, bench/NOTES.md session 32).
__device__ __forceinline__ void GatherWideToken(const KernelParams& p, const PolledRouterShared& r,
                                                float* logits, float* first_slot,
                                                size_t split_stride, float* logits_out) {
  const int e = threadIdx.x;
  const bool second = e + kThreads < p.experts;
  float second_sum;
  const float first_sum =
      SumPolledSlots<true>(first_slot + e, p.k_splits, split_stride, second, kThreads, second_sum);
  logits[e] = first_sum + r.router_bias[e];
  if (logits_out) logits_out[e] = logits[e];
  if (second) {
    logits[e + kThreads] = second_sum + r.router_bias[e + kThreads];
    if (logits_out) logits_out[e + kThreads] = logits[e + kThreads];
  }
}

// Router CTA: its tokens' logits (bias added) into `logits` (shared memory), [token -
// first][expert], and to the optional logits output; a thread per (token, expert), or per
// two experts of a lone token of more experts than threads (SumPolledSlots<true>).
// (Polling a thread's slots of several elements together in two batches of 8, one after
// the other, had measured no steady gain: bench/NOTES.md session 19.)
// kWideExperts: the kernel instance for more than 256 experts (WithExpertsPerLaneOf), the
// only one with the two-expert path.
template <int kChunk, bool kWideExperts>
__device__ void GatherChunkLogits(const KernelParams& p, const PolledRouterShared& r, float* logits,
                                  int z, RouterTokens mine) {
  const int E = p.experts, epad = p.m_blocks * kBlockExperts;
  const size_t split_stride = size_t(kChunk) * epad;
  float* base = p.partials + size_t(z) * p.k_splits * split_stride;
  static_assert(kMaxExperts <= 2 * kThreads, "a thread polls at most two experts of a token");
  if (kWideExperts && mine.last - mine.first == 1 && E > kThreads) {
    const int n = mine.first;
    GatherWideToken(p, r, logits, base + size_t(n) * epad, split_stride,
                    p.logits_out ? p.logits_out + size_t(z * kChunk + n) * E : nullptr);
    return;
  }
  for (int i = threadIdx.x; i < (mine.last - mine.first) * E; i += kThreads) {
    const int n = mine.first + i / E, e = i % E;
    const float s =
        SumPolled(base + size_t(n) * epad + e, p.k_splits, split_stride) + r.router_bias[e];
    logits[i] = s;
    if (p.logits_out) p.logits_out[size_t(z * kChunk + n) * E + e] = s;
  }
}

// The gather of a router pair (TokensOfRouterPair; at most kThreads experts, as the host
// checks): its one or two tokens' logits into `logits`, [token - first][expert], as
// GatherChunkLogits. Past kThreads / 2 experts thread e polls expert e of both tokens
// together (SumPolledSlots<true>: one L2 round trip for both, where GatherChunkLogits' loop
// would wait on one for each); otherwise, and for a lone token, GatherChunkLogits' one
// element a thread. The same sums, in the same order, as a router of one token each.
template <int kChunk>
__device__ __forceinline__ void GatherRouterPair(const KernelParams& p, const PolledRouterShared& r,
                                                 float* logits, int z, RouterTokens mine) {
  const int E = p.experts;
  if (mine.last - mine.first < 2 || 2 * E <= kThreads) {
    GatherChunkLogits<kChunk, /*kWideExperts=*/false>(p, r, logits, z, mine);
    return;
  }
  const int e = threadIdx.x;
  if (e >= E) return;
  const int epad = p.m_blocks * kBlockExperts;
  const size_t split_stride = size_t(kChunk) * epad;
  float* first_slot =
      p.partials + size_t(z) * p.k_splits * split_stride + size_t(mine.first) * epad + e;
  float second_sum;
  const float first_sum =
      SumPolledSlots<true>(first_slot, p.k_splits, split_stride, true, epad, second_sum);
  logits[e] = first_sum + r.router_bias[e];
  logits[E + e] = second_sum + r.router_bias[e];
  if (p.logits_out) {
    float* out = p.logits_out + size_t(z * kChunk + mine.first) * E + e;
    out[0] = logits[e];
    out[E] = logits[E + e];
  }
}

// A router pair's routing: each half of the CTA (four warps, TeamWarp) routes one of its
// tokens with CtaRouteToken, as a router of one token routes it with eight (the host allows
// pairs only where CtaRouteTokenApplies, at most kThreads experts). The first half's
// scratch is r.cta_route, the second's `second_scratch`.
template <int kChunk>
__device__ __forceinline__ void RouteRouterPair(const KernelParams& p, PolledRouterShared& r,
                                                CtaRouteScratch& second_scratch,
                                                const float* logits, int z, RouterTokens mine) {
  static_assert(2 * kHalfCtaThreads == kThreads, "a router pair is two halves of a CTA");
  const int half = int(threadIdx.x) / kHalfCtaThreads;
  const int n = mine.first + half;
  if (n >= mine.last) return;
  unsigned long long* marks =
      p.timeline != nullptr && half == 0 ? TimelineEntry(p, kStampEpiColumns) : nullptr;
  const size_t token = size_t(z) * kChunk + n;
  CtaRouteScratch& scratch = half == 0 ? r.cta_route : second_scratch;
  WithExpertsPerLaneOf</*kWideExperts=*/false>(p.experts, [&](auto width) {
    CtaRouteToken<decltype(width)::value, /*kSmallestThreshold=*/true, /*kCountWinsOnce=*/true,
                  /*kHalfCta=*/true>(p.ep, logits + half * p.experts, r.correction_bias, scratch,
                                     kHalfCtaThreads / 32, p.ids + token * p.ep.top_k,
                                     p.weights + token * p.ep.top_k, marks);
  });
}

// A router with one token (decode) spreads the token's per-expert work over its warps
// where the spec allows (CtaRouteToken); otherwise a warp per token. `dry`: a dedicated
// router's dry run (one token), outputs into shared memory. kCountWinsOnce: WarpTopK's,
// off in the dedicated routers: there it raised ptxas' spills of the two-tile instance
// from 28/36 to 40/96 bytes, and gpt-oss-120b, Llama 4 Maverick and DeepSeek-V3 at 16
// tokens (which take it) got 0.09-0.14 us slower (H200, same run, two rounds), while
// their one-token routers do not run WarpTopK on the common path.
template <int P, int kChunk, bool kCountWinsOnce = true>
__device__ __forceinline__ void RouteChunkTokensP(const KernelParams& p, PolledRouterShared& r,
                                                  const float* logits, int z, RouterTokens mine,
                                                  bool dry) {
  auto ids = [&](int n) { return dry ? r.dry_ids : p.ids + (size_t(z) * kChunk + n) * p.ep.top_k; };
  auto weights = [&](int n) {
    return dry ? r.dry_weights : p.weights + (size_t(z) * kChunk + n) * p.ep.top_k;
  };
  if (mine.last - mine.first == 1 && CtaRouteTokenApplies(p.ep)) {
    unsigned long long* marks = p.timeline && !dry ? TimelineEntry(p, kStampEpiColumns) : nullptr;
    // The smallest-key threshold not in the two-token-tile kernels (chunks of 16): there
    // ptxas spilled 40/96 bytes instead of 28/36 with it, and Kimi K2 and GLM-4.5 at 16
    // tokens (which never take it) got 0.12-0.15 us slower (H200, same-run rounds).
    constexpr bool kSmallestThreshold = kChunk != 16;
    CtaRouteToken<P, kSmallestThreshold, kCountWinsOnce>(p.ep, logits, r.correction_bias,
                                                         r.cta_route, kWarps, ids(mine.first),
                                                         weights(mine.first), marks);
    return;
  }
  const int warp = threadIdx.x / 32;
  if (P == 1 && RankedWarpRouteTokenApplies(p.ep)) {
    // Routers of at most 16 experts (Mixtral, Llama 4 Scout): each warp ranks its tokens by
    // counting, as CtaRouteToken does a lone token, not by top_k rounds of reductions.
    for (int n = mine.first + warp; n < mine.last; n += kWarps)
      RankedWarpRouteToken(p.ep, logits + (n - mine.first) * p.experts, r.correction_bias,
                           r.ranked_warp[warp], ids(n), weights(n));
    return;
  }
  for (int n = mine.first + warp; n < mine.last; n += kWarps) {
    WarpRouteTokenP<P, kCountWinsOnce>(p.ep, logits + (n - mine.first) * p.experts,
                                       r.correction_bias, ids(n), weights(n));
  }
}

// RouteChunkTokensP for the spec's experts-per-lane width, among the widths of the kernel
// instance's group (WithExpertsPerLaneOf).
template <int kChunk, bool kWideExperts, bool kCountWinsOnce = true>
__device__ __forceinline__ void RouteChunkTokens(const KernelParams& p, PolledRouterShared& r,
                                                 const float* logits, int z, RouterTokens mine,
                                                 bool dry) {
  WithExpertsPerLaneOf<kWideExperts>(p.experts, [&](auto width) {
    RouteChunkTokensP<decltype(width)::value, kChunk, kCountWinsOnce>(p, r, logits, z, mine, dry);
  });
}

}  // namespace moe::cuda
