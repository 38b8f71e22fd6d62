#include "kernels/cpu_router.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu_dot.h"
#include "kernels/routing_epilogue.h"
#include "kernels/status_macros.h"

namespace moe {
namespace {

// Hidden elements converted per step of a task: 4 KB of floats stays in L1.
constexpr int kKStep = 1024;

size_t AlignUp(size_t n) { return (n + 63) / 64 * 64; }

struct WorkspaceLayout {
  size_t hidden_f32 = 0;  // [tokens, hidden] float
  size_t partials = 0;    // [k_splits, tokens, experts] float
  size_t scratch = 0;     // [tokens, EpilogueScratchFloats + experts] float
  size_t total = 0;
};

WorkspaceLayout Layout(const RouteProblem& p, const CpuSplit& split) {
  WorkspaceLayout l;
  const size_t t = p.tokens, h = p.spec.hidden, e = p.spec.experts;
  size_t offset = 0;
  l.hidden_f32 = offset;
  offset += AlignUp(t * h * 4);
  l.partials = offset;
  offset += AlignUp(size_t(split.k_splits) * t * e * 4);
  l.scratch = offset;
  offset += AlignUp(t * (EpilogueScratchFloats(p.spec) + e) * 4);
  l.total = offset;
  return l;
}

}  // namespace

CpuRouter::CpuRouter(int threads) : pool_(std::make_unique<ThreadPool>(threads)) {}

absl::Status CpuRouter::CanRoute(const RouteProblem& problem) { return CheckRouteProblem(problem); }

CpuSplit CpuRouter::ChooseSplit(const RouteProblem& p) const {
  // Enough tasks for every thread (x4 for balance), but chunks of at least kKStep.
  CpuSplit split;
  split.expert_block = 16;
  const int expert_blocks = (p.spec.experts + split.expert_block - 1) / split.expert_block;
  const int want_tasks = 4 * threads();
  const int max_splits = std::max(1, p.spec.hidden / kKStep);
  split.k_splits = std::clamp((want_tasks + expert_blocks - 1) / expert_blocks, 1, max_splits);
  return split;
}

size_t CpuRouter::WorkspaceBytes(const RouteProblem& problem) const {
  return Layout(problem, ChooseSplit(problem)).total;
}

absl::Status CpuRouter::Route(const RouteProblem& p, const RouteArgs& args, void* workspace,
                              size_t workspace_bytes) {
  RETURN_IF_ERROR(CanRoute(p));
  RETURN_IF_ERROR(CheckRouteArgs(p, args));
  const CpuSplit split = ChooseSplit(p);
  const WorkspaceLayout layout = Layout(p, split);
  if (workspace == nullptr || workspace_bytes < layout.total)
    return absl::InvalidArgumentError(
        absl::StrCat("workspace: ", workspace_bytes, " bytes given, ", layout.total, " needed"));
  char* ws = static_cast<char*>(workspace);
  float* hidden_f32 = reinterpret_cast<float*>(ws + layout.hidden_f32);
  float* partials = reinterpret_cast<float*>(ws + layout.partials);
  float* scratch = reinterpret_cast<float*>(ws + layout.scratch);

  const int tokens = p.tokens, hidden = p.spec.hidden, experts = p.spec.experts;
  // Hidden states to float once; every task reads them from cache.
  pool_->ParallelFor(tokens, [&](int t) {
    ConvertToFloat(args.hidden, p.hidden_dtype, size_t(t) * hidden, hidden,
                   hidden_f32 + size_t(t) * hidden);
  });

  // Decompose-K: task (s, b) computes the partial logits of K chunk s for expert block b.
  const int chunk =
      (hidden / split.k_splits + kHiddenMultiple - 1) / kHiddenMultiple * kHiddenMultiple;
  const int expert_blocks = (experts + split.expert_block - 1) / split.expert_block;
  pool_->ParallelFor(split.k_splits * expert_blocks, [&](int task) {
    const int s = task / expert_blocks, b = task % expert_blocks;
    const int k_begin = std::min(hidden, s * chunk);
    const int k_end = std::min(hidden, k_begin + chunk);
    const int e_end = std::min(experts, (b + 1) * split.expert_block);
    float* part = partials + size_t(s) * tokens * experts;
    auto x = [&](int t, int k) { return hidden_f32 + size_t(t) * hidden + k; };
    // Where the CPU has the registers for it (CpuDotPrefersBlocks) and there are four
    // tokens or more: four experts at a time, their converted rows (16 KB) kept in L1
    // while the tokens pass four at a time through DotFloat4x4 (with AVX-512, 8 vector
    // loads per 16 multiply-adds; DotFloat needs 2 per 1). Otherwise one expert at a time. Each
    // (token, expert) sum is the same sequence of DotFloat-identical chunk dots whatever
    // the batch around it (tests: CpuDot, CpuRouterBatching).
    float w_rows[4][kKStep];
    const int group = CpuDotPrefersBlocks() && tokens >= 4 ? 4 : 1;
    const int e_begin = b * split.expert_block;
    // Adds chunk [k, k + n) of experts e0 .. e0 + ne - 1 to every token's partial logits.
    auto add_chunk = [&](int e0, int ne, int k, int n) {
      if (group == 1 && p.weight_dtype == DType::kBF16) {
        // No block to feed (one to three tokens, or the baseline level): the bf16 row is
        // converted as it streams in, prefetched ahead, rather than through w_rows (one
        // token on this project's 2-core Xeon VM, medians of two sets of rounds in turns:
        // DeepSeek-V3 447 -> 331 and 492 -> 393 us, gpt-oss-20b 44 -> 35 and 45 -> 40,
        // Qwen3-30B 86 -> 72 and 93 -> 92). The same sums, to the bit.
        const uint16_t* w = static_cast<const uint16_t*>(args.weight) + size_t(e0) * hidden + k;
        for (int t = 0; t < tokens; ++t)
          part[size_t(t) * experts + e0] += DotFloatBf16(x(t, k), w, n);
        return;
      }
      for (int c = 0; c < ne; ++c)
        ConvertToFloat(args.weight, p.weight_dtype, size_t(e0 + c) * hidden + k, n, w_rows[c]);
      int t = 0;
      if (ne == 4) {  // a group of four: the blocks pay here
        const float* const w[4] = {w_rows[0], w_rows[1], w_rows[2], w_rows[3]};
        for (; t + 4 <= tokens; t += 4) {
          const float* const xs[4] = {x(t, k), x(t + 1, k), x(t + 2, k), x(t + 3, k)};
          float d[4][4];
          DotFloat4x4(xs, w, n, d);
          for (int r = 0; r < 4; ++r)
            for (int c = 0; c < 4; ++c) part[size_t(t + r) * experts + e0 + c] += d[r][c];
        }
      }
      for (; t < tokens; ++t)
        for (int c = 0; c < ne; ++c)
          part[size_t(t) * experts + e0 + c] += DotFloat(x(t, k), w_rows[c], n);
    };
    for (int t = 0; t < tokens; ++t)
      for (int e = e_begin; e < e_end; ++e) part[size_t(t) * experts + e] = 0.0f;
    if (tokens < 4) {
      // Each weight row streamed whole, in order, for its software prefetch.
      for (int e0 = e_begin; e0 < e_end; e0 += group)
        for (int k = k_begin; k < k_end; k += kKStep)
          add_chunk(e0, std::min(group, e_end - e0), k, std::min(kKStep, k_end - k));
    } else {
      // Each K step's hidden states (tokens x 4 KB) pass over all of the block's experts
      // while they are in L2; experts outermost, they came from L3 once per four experts
      // (DeepSeek-V3 at 256 tokens: 7.3 MB, a 2 MB L2).
      for (int k = k_begin; k < k_end; k += kKStep)
        for (int e0 = e_begin; e0 < e_end; e0 += group)
          add_chunk(e0, std::min(group, e_end - e0), k, std::min(kKStep, k_end - k));
    }
  });

  // Reduce the partials and run the epilogue, one token per iteration, in the spec's
  // cheapest equivalent form (as the GPU kernels do).
  const RouterSpec routed = CheapestEquivalentSpec(p.spec);
  const int scratch_floats = EpilogueScratchFloats(p.spec) + experts;
  pool_->ParallelFor(tokens, [&](int t) {
    float* token_scratch = scratch + size_t(t) * scratch_floats;
    float* logits = token_scratch + EpilogueScratchFloats(p.spec);
    for (int e = 0; e < experts; ++e) {
      float sum = 0.0f;
      for (int s = 0; s < split.k_splits; ++s)
        sum += partials[(size_t(s) * tokens + t) * experts + e];
      logits[e] = sum + (p.spec.has_router_bias ? args.router_bias[e] : 0.0f);
    }
    if (args.logits != nullptr)
      std::copy(logits, logits + experts, args.logits + size_t(t) * experts);
    RouteOneToken(routed, logits, args.correction_bias, args.expert_ids + size_t(t) * p.spec.top_k,
                  args.expert_weights + size_t(t) * p.spec.top_k, token_scratch);
  });
  return absl::OkStatus();
}

absl::Status CheckFinite(const void* data, DType dtype, size_t count, const char* field) {
  // A value is non-finite exactly when its exponent bits are all ones. Test the bits
  // without converting (this runs on every request's hidden states, often 100k+ values);
  // branch-free OR-reduction per block so the compiler vectorises it, then locate. Values
  // are loaded by memcpy: the data may sit at any address (a plain load at an odd one is
  // undefined; the compiler emits the same unaligned-safe loads).
  const auto* bytes = static_cast<const unsigned char*>(data);
  auto first_bad = [&](auto exp_mask) -> size_t {
    using Bits = decltype(exp_mask);
    auto bits = [&](size_t i) {
      Bits v;
      std::memcpy(&v, bytes + i * sizeof(Bits), sizeof(Bits));
      return v;
    };
    constexpr size_t kBlock = 256;
    for (size_t begin = 0; begin < count; begin += kBlock) {
      const size_t end = std::min(count, begin + kBlock);
      Bits any = 0;
      for (size_t i = begin; i < end; ++i)
        any |= static_cast<Bits>((bits(i) & exp_mask) == exp_mask);
      if (any)
        for (size_t i = begin; i < end; ++i)
          if ((bits(i) & exp_mask) == exp_mask) return i;
    }
    return count;
  };
  const size_t bad = dtype == DType::kFP32 ? first_bad(ExponentMask(dtype))
                                           : first_bad(static_cast<uint16_t>(ExponentMask(dtype)));
  if (bad == count) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": element ", bad, " is not finite (",
                                                 LoadAsFloat(data, dtype, bad),
                                                 "); values must be finite"));
}

}  // namespace moe
