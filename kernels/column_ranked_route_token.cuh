// Column-ranked top-k for one token by a CTA: each warp ranks one 32-expert column of the
// lane layout by counting and keeps the column's best top_k in shared memory; then the
// candidates are ranked by counting again (RankAmong, RankAmongSlots). Three forms:
// ColumnRankedRouteToken (33-128 experts, no groups), GroupColumnRankedRouteToken (groups of
// one column: DeepSeek-V3) and WideColumnRankedRouteToken (more than 256 experts: Kimi K2).
// CtaRouteToken (cta_route_token.cuh) picks among them. Stateless device functions;
// router_epilogue.cuh is the header to include.
#pragma once

#include <cstdint>

#include "kernels/epilogue_keys.cuh"
#include "kernels/ranked_route_token.cuh"

namespace moe::cuda {

// Column-ranked top-k (ColumnRankedRouteToken): routers of 33 to 128 experts without
// groups whose columns' top_k fit in one warp together (columns x top_k <= 32: Qwen3,
// gpt-oss-120b, Llama 4 Maverick). H200, against the top_k rounds (per call under PDL,
// one round, session 30, with today's RankAmong): gpt-oss-120b t=1 3.19 -> 2.87, t=4
// 3.27 -> 3.00, Maverick t=1 3.03 -> 2.80, Qwen3-30B t=1 3.26 -> 3.03, t=4 3.32 -> 3.08,
// Qwen3-235B t=1 3.44 -> 3.22. Lost while RankAmong was a predicated chain or called
// match.any every time (sessions 29, 30).
template <int P>
__host__ __device__ inline bool ColumnRankedApplies(const EpilogueParams& p) {
  const int columns = (p.experts + 31) / 32;
  return P >= 2 && P <= 4 && p.n_group == 1 && columns * p.top_k <= 32;
}

// A column warp's step of the column-ranked top-k (ColumnRankedRouteToken,
// GroupColumnRankedRouteToken): lane's expert of column j (key k) goes into keys[], is
// ranked within the column by counting (RankAmong; ties: lower lane, lower id), and the
// column's best top_k put key, id and `value` at slots j * top_k + local rank: in rank
// order, so that slot order is the tie rule's id order.
__device__ __forceinline__ void KeepColumnCandidates(const EpilogueParams& p,
                                                     CtaRouteScratch& scratch, int j, uint32_t k,
                                                     int id, float value) {
  const int lane = threadIdx.x & 31;
  scratch.keys[lane + 32 * j] = k;
  __syncwarp();
  const int local = RankAmong(scratch.keys + 32 * j, 32, k);
  if (local < p.top_k) {
    const int slot = j * p.top_k + local;
    scratch.candidate_key[slot] = k;
    scratch.candidate_id[slot] = id;
    scratch.candidate_logit[slot] = value;
  }
}

// One token by a CTA, ColumnRankedApplies: the warp of column j ranks the column's keys by
// counting within it (RankAmong; ties: lower lane, lower id) and puts its best top_k in
// shared memory at slots j * top_k + local rank. So a column's candidates are in rank order
// and columns in id order: slot order breaks equal keys as the tie rule does. Lanes past
// the experts have key 0 and rank last, so every slot of a column is written. After a CTA
// barrier warp 0 ranks the candidates by counting again: a candidate's rank among them is
// its rank among all experts when it is chosen (whatever beats it is a candidate too), and
// top_k or more otherwise (every chosen expert beats it). Two counts of a few keys and one
// CTA barrier in place of the sort, top_k rounds of warp reductions and WriteChoices.
template <int P, bool kHalfCta = false>
__device__ __forceinline__ void ColumnRankedRouteToken(const EpilogueParams& p, const float* logits,
                                                       const float* correction_bias,
                                                       CtaRouteScratch& scratch, int warps,
                                                       int32_t* __restrict__ ids_out,
                                                       float* __restrict__ weights_out,
                                                       unsigned long long* marks) {
  const int warp = TeamWarp<kHalfCta>(), lane = threadIdx.x & 31;
  const int columns = (p.experts + 31) / 32;
  for (int j = warp; j < columns; j += warps) {
    const int e = lane + 32 * j;
    const bool real = e < p.experts;
    const float logit = real ? logits[e] : 0.0f;
    const uint32_t k = real ? CtaSelectionKey(p, logit, correction_bias, e) : 0u;
    KeepColumnCandidates(p, scratch, j, k, real ? e : -1, logit);
  }
  const int count = columns * p.top_k;
  if (warp == 0 && lane >= count) scratch.candidate_key[lane] = 0u;  // RankAmong reads by 4
  TeamBarrier<kHalfCta>();
  if (warp != 0) return;
  MarkEpiloguePhase(marks, kEpiColumnsDone);
  const uint32_t key = scratch.candidate_key[lane];
  const bool valid = lane < count && scratch.candidate_id[lane] >= 0;
  const int rank = RankAmong(scratch.candidate_key, count, key);
  MarkEpiloguePhase(marks, kEpiRanked);
  WriteRankedChoice(p, scratch.ranked, valid, rank, valid ? scratch.candidate_id[lane] : 0,
                    valid ? scratch.candidate_logit[lane] : 0.0f, ids_out, weights_out);
}

// The kept groups when group g is column g (DeepSeek-V3's 8 groups of 32), from the group
// scores the column warps wrote (shared memory, 16-byte aligned; entries from n_group on
// are ignored): lane g reads its own, every lane reads all from broadcast 16-byte loads and
// lane g ranks group g by counting the groups that beat it (KeptGroupsOfScores' rule).
// Before, warp 0 decoded the columns' top two keys into scores and picked its own by a
// select chain: ~140 serial instructions, ~700 of DeepSeek-V3's ~3.3k warm cycles (ncu).
// H200: the groups phase of a warm CtaRouteToken alone 935 -> 444 cycles; per call (same
// run, two rounds, PDL) DeepSeek-V3 t=1 4.03 -> 3.94 us, t=16 5.31 -> 5.16.
template <int P>
__device__ __forceinline__ uint32_t KeptGroupsOfGroupScores(const EpilogueParams& p,
                                                            const float* group_score) {
  const int lane = threadIdx.x & 31;
  const float mine = lane < p.n_group ? group_score[lane] : -INFINITY;
  const float4* s4 = reinterpret_cast<const float4*>(group_score);
  int beats[4 * ((P + 3) / 4)];
#pragma unroll
  for (int q = 0; q < (P + 3) / 4; ++q) {  // n_group = columns <= P
    const float4 v = s4[q];
    const float vs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int g = 4 * q + u;
      beats[g] = g < p.n_group && Beats(vs[u], g, mine, lane);
    }
  }
  const int rank = TreeSum(beats);
  return __ballot_sync(kFullMask, lane < p.n_group && rank < p.topk_group);
}

// Grouped routers whose groups are whole columns (group g = column g: DeepSeek-V3's 8 x 32)
// and whose kept groups' top_k fit one warp (topk_group x top_k <= 32), at most 8 columns
// of top_k <= 8 candidates each.
template <int P>
__host__ __device__ inline bool GroupColumnRankedApplies(const EpilogueParams& p) {
  const int columns = (p.experts + 31) / 32;
  return P <= 8 && p.n_group > 1 && p.group_columns == 1 && p.n_group == columns &&
         p.top_k >= p.group_score_topk && p.top_k <= 8 && p.topk_group * p.top_k <= 32 &&
         CtaRouteTokenApplies(p);
}

// One token by a CTA, GroupColumnRankedApplies: ColumnRankedRouteToken with groups. The warp
// of column j ranks the column's keys by counting (RankAmong), puts its best top_k in
// shared memory at slots j * top_k + local rank (key, id, and for sigmoid scoring the score
// itself, so that warp 0 computes no exponential), and scores its group from its ranks 0
// and 1. After a CTA barrier warp 0 ranks the group scores (KeptGroupsOfGroupScores), lane
// i takes slot i % top_k of the (i / top_k)-th kept column, and ranks it among those
// topk_group x top_k candidates by counting. Candidates come in column order, each column's
// in rank order: slot order is the tie rule's id order. A candidate's rank among them is
// its rank among the kept experts when it is chosen (whatever beats it is in its column's
// top_k, so a candidate too), and top_k or more otherwise. In place of the smallest-key
// threshold, eight ballots, a compaction and its count (RouteFewCandidates): a count in
// every column warp, in parallel, and one of 32 keys in warp 0.
template <int P, bool kHalfCta = false>
__device__ __forceinline__ void GroupColumnRankedRouteToken(
    const EpilogueParams& p, const float* logits, const float* correction_bias,
    CtaRouteScratch& scratch, int warps, int32_t* __restrict__ ids_out,
    float* __restrict__ weights_out, unsigned long long* marks) {
  const int warp = TeamWarp<kHalfCta>(), lane = threadIdx.x & 31;
  const int columns = (p.experts + 31) / 32;
  const bool sigmoid = p.scoring == kScoringSigmoid;
  for (int j = warp; j < columns; j += warps) {
    const int e = lane + 32 * j;  // every expert is real: groups are whole columns
    const float logit = logits[e];
    const float score = sigmoid ? ScoreOf(kScoringSigmoid, logit, 0.0f, 1.0f) : logit;
    const uint32_t k = OrderedKey((p.score_first ? score : logit) +
                                  (p.has_correction_bias ? correction_bias[e] : 0.0f));
    KeepColumnCandidates(p, scratch, j, k, e, sigmoid ? score : logit);
    __syncwarp();
    if (lane == 0) {
      const uint32_t first = scratch.candidate_key[j * p.top_k];
      const uint32_t second = scratch.candidate_key[j * p.top_k + 1];
      scratch.group_score[j] =
          p.group_score_topk == 2 ? KeyToFloat(first) + KeyToFloat(second) : KeyToFloat(first);
    }
  }
  TeamBarrier<kHalfCta>();
  if (warp != 0) return;
  MarkEpiloguePhase(marks, kEpiColumnsDone);
  const uint32_t kept = KeptGroupsOfGroupScores<P>(p, scratch.group_score);
  MarkEpiloguePhase(marks, kEpiGroupsDone);
  // Lane i: the (i / top_k)-th kept column (q-th set bit of `kept`), its slot i % top_k.
  const int count = p.topk_group * p.top_k;
  const int q = DivideLaneBy(lane, p.top_k_reciprocal), r = lane - q * p.top_k;
  int column = 0;
#pragma unroll
  for (int c = 0; c < P; ++c) column += c < columns && __popc(kept & ((2u << c) - 1u)) <= q ? 1 : 0;
  const bool valid = lane < count && column < columns;  // fewer kept: non-finite scores only
  const int slot = column * p.top_k + r;
  const uint32_t key = valid ? scratch.candidate_key[slot] : 0u;
  const int id = valid ? scratch.candidate_id[slot] : 0;
  const float value = valid ? scratch.candidate_logit[slot] : 0.0f;
  scratch.ranked.keys[lane] = key;  // 0 past count: RankAmong reads whole 16-byte groups
  __syncwarp();
  const int rank = RankAmong(scratch.ranked.keys, count, key);
  MarkEpiloguePhase(marks, kEpiRanked);
  WriteRankedChoice(p, scratch.ranked, valid, rank, id, value, ids_out, weights_out,
                    /*scored=*/sigmoid);
}

// Routers of more than 256 experts without groups (Kimi K2: 384 experts, 12 columns, top
// 8) whose columns' top_k are at most kMaxRankedCandidates together.
template <int P>
__host__ __device__ inline bool WideColumnRankedApplies(const EpilogueParams& p) {
  const int columns = (p.experts + 31) / 32;
  return P == 16 && p.n_group == 1 && columns * p.top_k <= kMaxRankedCandidates &&
         CtaRouteTokenApplies(p);
}

// The rank of the candidate in this thread's slot (slot 32 w + i for lane i of warp w;
// key `mine`, non-zero where it matters) among the `count` candidates in `keys` (shared
// memory, 16-byte aligned, zero from count to the next multiple of 32): how many beat it,
// a higher key or an equal one in a lower slot. Whole warps' slots below the thread's are
// beaten by keys >= mine, i.e. > mine - 1, those above by keys > mine, so only the warp's
// own 32 slots need a per-slot threshold. Broadcast 16-byte loads, 32 keys in flight at a
// time, into four independent sums (RankAmong's MinusOneIfAbove).
__device__ __forceinline__ int RankAmongSlots(const uint32_t* keys, int count, uint32_t mine) {
  const uint4* k4 = reinterpret_cast<const uint4*>(keys);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const uint32_t below = mine - 1u;
  uint32_t minus_above[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int g = 0; g < kMaxRankedCandidates / 32; ++g) {
    if (32 * g >= count) break;  // warp-uniform
    uint4 v[8];
#pragma unroll
    for (int q = 0; q < 8; ++q) v[q] = k4[8 * g + q];
    const uint32_t group_threshold = g < warp ? below : mine;
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      const uint32_t vs[4] = {v[q].x, v[q].y, v[q].z, v[q].w};
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const uint32_t threshold = g != warp ? group_threshold : 4 * q + u < lane ? below : mine;
        minus_above[u] += MinusOneIfAbove(vs[u], threshold);
      }
    }
  }
  return -int((minus_above[0] + minus_above[1]) + (minus_above[2] + minus_above[3]));
}

// RankAmong of two lanes' keys, each among its own whole column of 32 (count 32), for a
// warp that keeps two columns' candidates: both columns' eight 16-byte loads in flight
// together and both counts interleaved, where two RankAmong calls one after the other wait
// on two rounds of loads (their tie checks are branches the loads do not move across).
__device__ __forceinline__ void RankAmongTwoColumns(const uint32_t* keys_a, uint32_t mine_a,
                                                    const uint32_t* keys_b, uint32_t mine_b,
                                                    int& rank_a, int& rank_b) {
  const uint4* a4 = reinterpret_cast<const uint4*>(keys_a);
  const uint4* b4 = reinterpret_cast<const uint4*>(keys_b);
  const int lane = threadIdx.x & 31;
  uint4 va[8], vb[8];
#pragma unroll
  for (int q = 0; q < 8; ++q) {
    va[q] = a4[q];
    vb[q] = b4[q];
  }
  uint32_t ma[4] = {0u, 0u, 0u, 0u}, mb[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int q = 0; q < 8; ++q) {
    ma[0] += MinusOneIfAbove(va[q].x, mine_a);
    mb[0] += MinusOneIfAbove(vb[q].x, mine_b);
    ma[1] += MinusOneIfAbove(va[q].y, mine_a);
    mb[1] += MinusOneIfAbove(vb[q].y, mine_b);
    ma[2] += MinusOneIfAbove(va[q].z, mine_a);
    mb[2] += MinusOneIfAbove(vb[q].z, mine_b);
    ma[3] += MinusOneIfAbove(va[q].w, mine_a);
    mb[3] += MinusOneIfAbove(vb[q].w, mine_b);
  }
  rank_a = -int((ma[0] + ma[1]) + (ma[2] + ma[3]));
  rank_b = -int((mb[0] + mb[1]) + (mb[2] + mb[3]));
  // Equal keys (rare): RankAmong's check, for each column.
  const unsigned counts_a = __reduce_or_sync(kFullMask, 1u << rank_a);
  const unsigned counts_b = __reduce_or_sync(kFullMask, 1u << rank_b);
  if (counts_a != kFullMask)
    rank_a += __popc(__match_any_sync(kFullMask, mine_a) & ((1u << lane) - 1u));
  if (counts_b != kFullMask)
    rank_b += __popc(__match_any_sync(kFullMask, mine_b) & ((1u << lane) - 1u));
}

// Named barrier 1 over the CTA's first `threads` threads (the ranking warps).
struct SyncRankers {
  int threads;
  __device__ __forceinline__ void operator()() const {
    asm volatile("bar.sync 1, %0;" ::"r"(threads) : "memory");
  }
};

// One token by a CTA, WideColumnRankedApplies: ColumnRankedRouteToken for more candidates
// than one warp holds. Each column's warp keeps its best top_k in rank order
// (KeepColumnCandidates: key, id, and for sigmoid scoring the score itself); after a CTA
// barrier, warp w ranks candidate slots [32 w, 32 w + 32) against all of them by counting
// (RankAmongSlots: slot order is the tie rule's id order, as in ColumnRankedRouteToken),
// the warps in parallel, and the chosen fold their weights' normaliser after a barrier of
// the ranking warps only. In place of RouteFewCandidates' threshold count, 16 ballots and
// compaction in warp 0 (Kimi K2: ~2.5k cycles of ranking, bench/NOTES.md session 41).
// Requires warps x 32 >= columns x top_k.
template <int P>
__device__ __forceinline__ void WideColumnRankedRouteToken(
    const EpilogueParams& p, const float* logits, const float* correction_bias,
    CtaRouteScratch& scratch, int warps, int32_t* __restrict__ ids_out,
    float* __restrict__ weights_out, unsigned long long* marks) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int columns = (p.experts + 31) / 32;
  const bool sigmoid = p.scoring == kScoringSigmoid;
  // Lane's expert of column j: its selection key, id (-1 past the experts) and value.
  auto column_entry = [&](int j, uint32_t& k, int& id, float& value) {
    const int e = lane + 32 * j;
    const bool real = e < p.experts;
    const float logit = real ? logits[e] : 0.0f;
    const float score = sigmoid ? ScoreOf(kScoringSigmoid, logit, 0.0f, 1.0f) : logit;
    k = real ? OrderedKey((p.score_first ? score : logit) +
                          (p.has_correction_bias ? correction_bias[e] : 0.0f))
             : 0u;
    id = real ? e : -1;
    value = sigmoid ? score : logit;
  };
  auto keep = [&](int j, int local, uint32_t k, int id, float value) {
    if (local < p.top_k) {
      const int slot = j * p.top_k + local;
      scratch.candidate_key[slot] = k;
      scratch.candidate_id[slot] = id;
      scratch.candidate_logit[slot] = value;
    }
  };
  const int second = warp + warps;  // Kimi K2: warps 0-3 keep columns 8-11 as well
  if (warp < columns && second < columns && second + warps >= columns) {
    uint32_t k0, k1;
    int id0, id1;
    float v0, v1;
    column_entry(warp, k0, id0, v0);
    column_entry(second, k1, id1, v1);
    scratch.keys[lane + 32 * warp] = k0;
    scratch.keys[lane + 32 * second] = k1;
    __syncwarp();
    int local0, local1;
    RankAmongTwoColumns(scratch.keys + 32 * warp, k0, scratch.keys + 32 * second, k1, local0,
                        local1);
    keep(warp, local0, k0, id0, v0);
    keep(second, local1, k1, id1, v1);
  } else {
    for (int j = warp; j < columns; j += warps) {
      uint32_t k;
      int id;
      float value;
      column_entry(j, k, id, value);
      KeepColumnCandidates(p, scratch, j, k, id, value);
    }
  }
  const int count = columns * p.top_k, rankers = (count + 31) / 32;
  const int slot = int(threadIdx.x);
  if (slot >= count && slot < 32 * rankers) scratch.candidate_key[slot] = 0u;
  __syncthreads();
  if (warp >= rankers) return;
  MarkEpiloguePhase(marks, kEpiColumnsDone);
  const bool valid = slot < count && scratch.candidate_id[slot] >= 0;
  const uint32_t key = valid ? scratch.candidate_key[slot] : 0u;
  const int rank = RankAmongSlots(scratch.candidate_key, count, key);  // used where valid
  MarkEpiloguePhase(marks, kEpiRanked);
  WriteRankedChoice(p, scratch.ranked, valid, rank, valid ? scratch.candidate_id[slot] : 0,
                    valid ? scratch.candidate_logit[slot] : 0.0f, ids_out, weights_out,
                    /*scored=*/sigmoid, SyncRankers{32 * rankers});
}

}  // namespace moe::cuda
