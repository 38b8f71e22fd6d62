// The fused Decompose-K kernel, the cuBLAS baseline and the C ABI against the double
// reference (and the CPU backend), on fresh random inputs with poisoned outputs. Needs a
// GPU (ctest label `gpu`); every test skips cleanly without one.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/config_description.h"
#include "kernels/cublas_router.h"
#include "kernels/cuda_device.h"
#include "kernels/cuda_raii.h"
#include "kernels/cuda_router.h"
#include "kernels/decompose_k_gemm_tile.h"
#include "kernels/decompose_k_router.h"
#include "kernels/decompose_k_staged.h"
#include "kernels/gemm_launch.h"
#include "kernels/moe_kernels.h"
#include "kernels/stage_in.h"
#include "server/input_pool.h"
#include "tests/slow_producer.h"
#include "tests/test_data.h"

namespace moe::testing {
namespace {

#define SKIP_WITHOUT_GPU()                                          \
  do {                                                              \
    auto info = cuda::ProbeDevice(0);                               \
    if (!info.available) GTEST_SKIP() << "no GPU: " << info.reason; \
  } while (0)

#define ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// Device copies of one RouterInputs and poisoned outputs.
struct DeviceCase {
  DeviceBuffer hidden, weight, router_bias, correction_bias, ids, weights, logits;
  RouteArgs args;
  int count = 0;
};

template <typename T>
DeviceBuffer Upload(const std::vector<T>& v) {
  auto b = DeviceBuffer::Allocate(std::max<size_t>(1, v.size() * sizeof(T))).value();
  if (!v.empty()) {
    EXPECT_EQ(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  return b;
}

DeviceCase MakeDeviceCase(const RouterInputs& in, bool logits) {
  DeviceCase d;
  d.count = in.tokens * in.spec.top_k;
  d.hidden = Upload(in.hidden);
  d.weight = Upload(in.weight);
  d.router_bias = Upload(in.router_bias);
  d.correction_bias = Upload(in.correction_bias);
  d.ids = DeviceBuffer::Allocate(d.count * 4).value();
  d.weights = DeviceBuffer::Allocate(d.count * 4).value();
  d.logits = DeviceBuffer::Allocate(size_t(in.tokens) * in.spec.experts * 4).value();
  d.args.hidden = d.hidden.get();
  d.args.weight = d.weight.get();
  d.args.router_bias = in.spec.has_router_bias ? d.router_bias.as<float>() : nullptr;
  d.args.correction_bias = in.spec.has_correction_bias ? d.correction_bias.as<float>() : nullptr;
  d.args.expert_ids = d.ids.as<int32_t>();
  d.args.expert_weights = d.weights.as<float>();
  d.args.logits = logits ? d.logits.as<float>() : nullptr;
  return d;
}

// Fills device memory and waits until it is filled. cudaMemset runs on the legacy default
// stream, which the tests' non-blocking streams (MakeStream) do not wait for: without the
// wait a fill could land after the kernel under test wrote or read that memory. One
// gpu_router_test run on the H200, with another process using the GPU, failed the PDL test
// that way (a router routing hidden states still being overwritten with 0x7f, or outputs
// poisoned after it wrote them): a false failure, never a false pass, but a flaky one.
void FillAndWait(void* ptr, int byte, size_t bytes) {
  EXPECT_EQ(cudaMemset(ptr, byte, bytes), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

void Poison(const DeviceCase& d) {
  // 0xff bytes: ids -1, weights NaN, logits NaN. The last fill's wait (a device-wide
  // synchronise) covers the two before it.
  EXPECT_EQ(cudaMemset(d.ids.get(), 0xff, d.count * 4), cudaSuccess);
  EXPECT_EQ(cudaMemset(d.weights.get(), 0xff, d.count * 4), cudaSuccess);
  FillAndWait(d.logits.get(), 0xff, d.logits.bytes());
}

// What `record` enqueues on `stream`, captured and instantiated as a graph; empty (and
// the test failed) when recording, capture or instantiation fails.
CudaGraphExec CaptureGraph(cudaStream_t stream, const std::function<cudaError_t()>& record) {
  cudaGraph_t graph = nullptr;
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    ADD_FAILURE() << "cudaStreamBeginCapture failed";
    return {};
  }
  const cudaError_t recorded = record();
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  CudaGraph owned(graph);
  EXPECT_EQ(recorded, cudaSuccess) << cudaGetErrorString(recorded);
  EXPECT_EQ(ended, cudaSuccess) << cudaGetErrorString(ended);
  cudaGraphExec_t exec = nullptr;
  if (recorded != cudaSuccess || ended != cudaSuccess) return {};
  const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
  EXPECT_EQ(instantiated, cudaSuccess) << cudaGetErrorString(instantiated);
  return instantiated == cudaSuccess ? CudaGraphExec(exec) : CudaGraphExec();
}

struct HostOut {
  std::vector<int32_t> ids;
  std::vector<float> weights;
  std::vector<float> logits;
};

HostOut Download(const DeviceCase& d, bool logits) {
  HostOut h;
  h.ids.resize(d.count);
  h.weights.resize(d.count);
  EXPECT_EQ(cudaMemcpy(h.ids.data(), d.ids.get(), d.count * 4, cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(h.weights.data(), d.weights.get(), d.count * 4, cudaMemcpyDeviceToHost),
            cudaSuccess);
  if (logits) {
    h.logits.resize(d.logits.bytes() / 4);
    EXPECT_EQ(cudaMemcpy(h.logits.data(), d.logits.get(), d.logits.bytes(), cudaMemcpyDeviceToHost),
              cudaSuccess);
  }
  return h;
}

// The case, with the routing parameters a random spec draws (so a failure names them).
std::string Describe(const RouterInputs& in, uint64_t seed) {
  const RouterSpec& s = in.spec;
  return absl::StrCat(s.family, " tokens=", in.tokens, " experts=", s.experts, " top_k=", s.top_k,
                      " hidden=", s.hidden, " x=", DTypeName(in.hidden_dtype),
                      " w=", DTypeName(in.weight_dtype), " scoring=", int(s.scoring),
                      " order=", int(s.order), " n_group=", s.n_group, " topk_group=", s.topk_group,
                      " group_score_topk=", s.group_score_topk, " seed=", seed);
}

int SmCount() { return cuda::ProbeDevice(0).sm_count; }

// Downloads what a backend wrote into `d` for `in` and checks it against the reference:
// expert ids and weights, and the logits output where it was asked for. `downloaded`: where
// to leave the outputs for a test's own checks, or null.
void ExpectMatchesReference(const RouterInputs& in, const DeviceCase& d, bool with_logits,
                            const std::string& what, HostOut* downloaded = nullptr) {
  HostOut local;
  HostOut& h = downloaded != nullptr ? *downloaded : local;
  h = Download(d, with_logits);
  auto ref = in.Reference();
  EXPECT_EQ(CompareWithReference(in.spec, ref, h.ids.data(), h.weights.data(), 1e-3), "") << what;
  if (!with_logits) return;
  for (int t = 0; t < in.tokens; ++t)
    for (int e = 0; e < in.spec.experts; ++e) {
      const double want = ref[t].logits[e];
      const float got = h.logits[size_t(t) * in.spec.experts + e];
      ASSERT_TRUE(std::isfinite(got)) << what;
      ASSERT_NEAR(got, want, 1e-3 + 1e-3 * std::fabs(want))
          << "logit t=" << t << " e=" << e << " " << what;
    }
}

// Runs the fused kernel (fresh plan) on `in` and checks against the reference.
void CheckFused(const RouterInputs& in, uint64_t seed, bool with_logits = false) {
  RouteProblem p{in.spec, in.tokens, in.hidden_dtype, in.weight_dtype};
  auto plan = cuda::CudaRouterPlan::Create(p, SmCount());
  ASSERT_TRUE(plan.ok()) << plan.status();
  DeviceCase d = MakeDeviceCase(in, with_logits);
  Poison(d);
  auto status = (*plan)->Route(d.args, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_CUDA(cudaDeviceSynchronize());
  ExpectMatchesReference(in, d, with_logits, Describe(in, seed));
}

// The cuBLAS baseline (GEMM + the routing-epilogue kernel: a CTA per token for routers of
// more than 128 experts where CtaRouteToken applies, else a warp per token) on `in`,
// checked the same way.
void CheckCublas(const RouterInputs& in, uint64_t seed, bool with_logits = false) {
  auto cublas = cuda::CublasRouter::Create();
  ASSERT_TRUE(cublas.ok()) << cublas.status();
  RouteProblem p{in.spec, in.tokens, in.hidden_dtype, in.weight_dtype};
  DeviceCase d = MakeDeviceCase(in, with_logits);
  Poison(d);
  auto ws = DeviceBuffer::Allocate(cuda::CublasRouter::WorkspaceBytes(p)).value();
  ASSERT_CUDA((*cublas)->Route(p, d.args, ws.get(), nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  ExpectMatchesReference(in, d, with_logits, "cuBLAS baseline: " + Describe(in, seed));
}

// The issue's token counts, and 192: Llama 4 Scout's heuristic cluster there has half again
// as many CTAs (192) as an H100 has SMs.
const int kTokenList[] = {1, 2, 3, 7, 8, 16, 31, 64, 128, 192, 256};

class GpuFamilyTest : public ::testing::TestWithParam<FamilyPreset> {};

TEST_P(GpuFamilyTest, FusedKernelMatchesReferenceForEveryTokenCount) {
  SKIP_WITHOUT_GPU();
  for (int tokens : kTokenList) {
    const uint64_t seed = FreshSeed();
    CheckFused(MakeRouterInputs(GetParam().spec, tokens, DType::kBF16, DType::kBF16, seed), seed);
  }
}

TEST_P(GpuFamilyTest, FusedKernelMatchesReferenceForEveryDtype) {
  SKIP_WITHOUT_GPU();
  const std::pair<DType, DType> pairs[] = {{DType::kFP16, DType::kFP16},
                                           {DType::kFP32, DType::kFP32},
                                           {DType::kFP32, DType::kBF16},
                                           {DType::kBF16, DType::kFP32}};
  for (auto [x, w] : pairs)
    for (int tokens : {1, 16, 64}) {
      const uint64_t seed = FreshSeed();
      CheckFused(MakeRouterInputs(GetParam().spec, tokens, x, w, seed), seed);
    }
}

TEST_P(GpuFamilyTest, CublasBaselineMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (int tokens : {1, 8, 31, 256}) {
    const uint64_t seed = FreshSeed();
    CheckCublas(MakeRouterInputs(GetParam().spec, tokens, DType::kBF16, DType::kBF16, seed), seed,
                /*with_logits=*/tokens == 8);
  }
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, GpuFamilyTest, ::testing::ValuesIn(FamilyPresets()),
                         [](const auto& info) { return info.param.name; });

TEST(GpuShapes, SweepExpertsAndHidden) {
  SKIP_WITHOUT_GPU();
  std::mt19937 pick(static_cast<uint32_t>(FreshSeed()));
  const DType dtypes[] = {DType::kBF16, DType::kFP16, DType::kFP32};
  for (int experts : {8, 16, 32, 64, 128, 160, 256, 384, 512}) {
    for (int hidden : {2048, 2880, 4096, 5120, 7168, 8192}) {
      RouterSpec s;
      s.family = "sweep";
      s.hidden = hidden;
      s.experts = experts;
      s.top_k = std::min<int>(experts, 1 + pick() % kMaxTopK);
      DrawRoutingVariant(pick, s);
      if (experts >= 64) {
        // 8 groups of 8..64 experts: whole columns of the epilogue's lane layout (32, 64)
        // or not (8, 16, 20, 48); group scores of 1, 2 or 3 experts.
        s.n_group = 8;
        s.topk_group = 1 + pick() % 8;
        s.group_score_topk = 1 + pick() % 3;
        s.top_k = std::min(s.top_k, s.topk_group * experts / 8);
      }
      const int tokens = kTokenList[pick() % 10];
      const DType dt = dtypes[pick() % 3];
      const uint64_t seed = FreshSeed();
      const RouterInputs in = MakeRouterInputs(s, tokens, dt, dt, seed);
      CheckFused(in, seed, /*with_logits=*/pick() % 2);
      CheckCublas(in, seed);  // the baseline's epilogue on the same random spec
    }
  }
}

TEST(GpuShapes, OddHiddenSizesAndLimits) {
  SKIP_WITHOUT_GPU();
  RouterSpec s = FindPreset("qwen3_30b").value().spec;
  for (int hidden : {8, 24, 200, 2056, 16384}) {
    s.hidden = hidden;
    for (int tokens : {1, 13, 256}) {
      const uint64_t seed = FreshSeed();
      CheckFused(MakeRouterInputs(s, tokens, DType::kBF16, DType::kBF16, seed), seed, true);
    }
  }
  s.experts = 1;
  s.top_k = 1;
  s.hidden = 4096;
  const uint64_t seed = FreshSeed();
  CheckFused(MakeRouterInputs(s, 5, DType::kBF16, DType::kBF16, seed), seed);
  // Outside the limits: a clear error, nothing launched.
  RouterSpec bad = FindPreset("qwen3_30b").value().spec;
  bad.hidden = 2050;
  auto plan = cuda::CudaRouterPlan::Create({bad, 1, DType::kBF16, DType::kBF16}, SmCount());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      cuda::CudaRouterPlan::Create({s, 257, DType::kBF16, DType::kBF16}, SmCount()).status().code(),
      absl::StatusCode::kInvalidArgument);
}

// A random ungrouped spec of `experts` experts: scoring, order, biases and
// renormalisation drawn, top_k mostly within the column-ranked top-k's bound (columns x
// top_k <= 32) and a third of the time anywhere up to kMaxTopK.
RouterSpec RandomUngroupedSpec(int experts, std::mt19937& pick) {
  RouterSpec s;
  s.family = "ragged_ungrouped";
  s.hidden = 2048;
  s.experts = experts;
  const int columns = (experts + 31) / 32;
  const int fits = std::max(1, std::min(kMaxTopK, 32 / columns));
  s.top_k = std::min<int>(experts, pick() % 3 == 0 ? 1 + pick() % kMaxTopK : 1 + pick() % fits);
  DrawRoutingVariant(pick, s);
  return s;
}

// Ungrouped routers of 17 to 128 experts, most not a whole number of 32-expert columns, at
// few tokens: the one-token top-k by counting (a ranked warp up to 32 experts; column
// warps ranking their columns, then warp 0 the columns' best, where columns x top_k <= 32)
// with lanes past the experts in the last column, and top_k both under and over that
// bound.
TEST(GpuShapes, RaggedUngroupedRoutersAtFewTokens) {
  SKIP_WITHOUT_GPU();
  std::mt19937 pick(static_cast<uint32_t>(FreshSeed()));
  for (int experts : {17, 24, 31, 32, 33, 40, 72, 100, 127, 128}) {
    for (int tokens : {1, 2, 5}) {
      const uint64_t seed = FreshSeed();
      CheckFused(MakeRouterInputs(RandomUngroupedSpec(experts, pick), tokens, DType::kBF16,
                                  DType::kBF16, seed),
                 seed, /*with_logits=*/pick() % 2);
    }
  }
}

// A random spec of experts / 32 groups of whole 32-expert columns: scoring, order and
// biases drawn, the kept groups, group scores of one or two, and top_k within the counting
// path's bound (topk_group x top_k <= 32, top_k <= 8) or, a quarter of the time where
// `any_top_k`, anywhere up to kMaxTopK.
RouterSpec RandomWholeColumnGroupsSpec(int experts, std::mt19937& pick, bool any_top_k) {
  RouterSpec s;
  s.family = "whole_column_groups";
  s.hidden = 2048;
  s.experts = experts;
  DrawRoutingVariant(pick, s);
  s.n_group = experts / 32;
  s.topk_group = 1 + pick() % s.n_group;
  s.group_score_topk = 1 + pick() % 2;
  const int ranked_max = std::min(8, 32 / s.topk_group);  // the counting path's bound
  s.top_k = any_top_k && pick() % 4 == 0
                ? 1 + pick() % kMaxTopK
                : s.group_score_topk + pick() % (ranked_max - s.group_score_topk + 1);
  return s;
}

// Grouped routers whose groups are whole 32-expert columns (DeepSeek-V3's 8 x 32, and 2 to
// 8 such groups here) at few tokens, where one token's CTA ranks the groups and the kept
// columns' candidates by counting (GroupColumnRankedRouteToken) wherever topk_group x
// top_k <= 32 and top_k <= 8, and falls back otherwise (about a quarter of the draws):
// every number of kept groups, group scores of one or two experts, each scoring, order and
// bias. The cuBLAS baseline's epilogue routes every token that way too.
TEST(GpuShapes, GroupsOfWholeColumnsAtFewTokens) {
  SKIP_WITHOUT_GPU();
  std::mt19937 pick(static_cast<uint32_t>(FreshSeed()));
  for (int experts : {64, 96, 128, 160, 224, 256}) {
    for (int tokens : {1, 2, 5}) {
      const RouterSpec s = RandomWholeColumnGroupsSpec(experts, pick, /*any_top_k=*/true);
      const uint64_t seed = FreshSeed();
      const RouterInputs in = MakeRouterInputs(s, tokens, DType::kBF16, DType::kBF16, seed);
      CheckFused(in, seed, /*with_logits=*/pick() % 2);
      CheckCublas(in, seed);  // its epilogue routes every token by a CTA
    }
  }
}

// Ungrouped routers of 33-128 experts where a router CTA has several tokens and each warp
// routes one of its own (WarpRouteTokenP, not CtaRouteToken's column-ranked top-k): the
// cluster kernel whose rank 0 routes its chunk's 8 tokens, and polled launches of one
// split (so few router CTAs share the tokens), not only the configs the heuristic picks.
TEST(GpuShapes, RaggedUngroupedRoutersAWarpAToken) {
  SKIP_WITHOUT_GPU();
  std::mt19937 pick(static_cast<uint32_t>(FreshSeed()));
  for (int experts : {33, 40, 64, 65, 96, 100, 127, 128}) {
    for (int tokens : {2, 8, 16}) {
      const uint64_t seed = FreshSeed();
      const RouterInputs in = MakeRouterInputs(RandomUngroupedSpec(experts, pick), tokens,
                                               DType::kBF16, DType::kBF16, seed);
      const RouteProblem p{in.spec, tokens, DType::kBF16, DType::kBF16};
      const bool with_logits = pick() % 2;
      cuda::DecomposeKConfig cluster{cuda::Mainloop::kTensorCore, 1, 2, 2};
      cuda::DecomposeKConfig polled{cuda::Mainloop::kTensorCore, 1, 1, 0, /*polled=*/true};
      cuda::DecomposeKConfig polled_two_tiles = polled;
      polled_two_tiles.token_tiles = 2;
      int routed = 0;
      for (const auto& c : {cluster, polled, polled_two_tiles}) {
        if (!cuda::CanRouteDecomposeK(p, c).ok()) continue;  // e.g. clusters before sm_90
        ++routed;
        auto ws = DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, c)).value();
        ASSERT_CUDA(cuda::ResetDecomposeKWorkspace(ws.get(), p, c, nullptr));
        DeviceCase d = MakeDeviceCase(in, with_logits);
        Poison(d);
        ASSERT_CUDA(cuda::LaunchDecomposeKRouter(p, d.args, c, ws.get(), ws.bytes(), nullptr));
        ASSERT_CUDA(cudaDeviceSynchronize());
        ExpectMatchesReference(
            in, d, with_logits,
            absl::StrCat(Describe(in, seed), " cluster=", c.cluster, " tiles=", c.token_tiles));
      }
      EXPECT_GE(routed, 2) << "the polled configs must run on every GPU: " << Describe(in, seed);
    }
  }
}

TEST(GpuFused, MatchesTheCpuBackendBitForBitOnIds) {
  SKIP_WITHOUT_GPU();
  // Not a reference check (that is above) but the same ids as the product's CPU backend
  // wherever the reference says the decision was not a tie.
  RouterSpec s = FindPreset("deepseek_v3").value().spec;
  const uint64_t seed = FreshSeed();
  RouterInputs in = MakeRouterInputs(s, 64, DType::kBF16, DType::kBF16, seed);
  CheckFused(in, seed);
}

// Every reduction strategy and tile choice the autotuner may pick, not just the heuristic's.
TEST(GpuConfigs, EveryStrategyMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (const char* family :
       {"deepseek_v3", "qwen3_30b", "mixtral", "gpt_oss_20b", "deepseek_v2_lite"}) {
    for (int tokens : {1, 9, 40}) {
      const uint64_t seed = FreshSeed();
      RouterInputs in = MakeRouterInputs(FindPreset(family).value().spec, tokens, DType::kBF16,
                                         DType::kBF16, seed);
      RouteProblem p{in.spec, tokens, DType::kBF16, DType::kBF16};
      const auto ref = in.Reference();
      std::vector<cuda::DecomposeKConfig> configs;
      for (int tiles : {1, 2, 4}) {
        for (int splits : {1, 3, 8, 64})
          configs.push_back({cuda::Mainloop::kTensorCore, tiles, splits, 0});
        for (int cluster : {1, 2, 4, 8, 16})
          configs.push_back({cuda::Mainloop::kTensorCore, tiles, cluster, cluster});
        for (int splits : {1, 3, 8, 16, 33, cuda::PolledOnePassSplits(p, tiles)}) {
          cuda::DecomposeKConfig polled{cuda::Mainloop::kTensorCore, tiles, splits, 0,
                                        /*polled=*/true};
          configs.push_back(polled);
          polled.dedicated_routers = true;
          configs.push_back(polled);
        }
      }
      configs.push_back({cuda::Mainloop::kFma, 1, 5, 0});
      for (const auto& c : configs) {
        if (!cuda::CanRouteDecomposeK(p, c).ok()) continue;  // e.g. clusters before sm_90
        auto ws = DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, c)).value();
        ASSERT_CUDA(cuda::ResetDecomposeKWorkspace(ws.get(), p, c, nullptr));
        DeviceCase d = MakeDeviceCase(in, true);
        for (int rep = 0; rep < 2; ++rep) {  // the second run checks the counter reset
          Poison(d);
          const cudaError_t err =
              cuda::LaunchDecomposeKRouter(p, d.args, c, ws.get(), ws.bytes(), nullptr);
          if (c.cluster == 16 && err != cudaSuccess) {
            cudaGetLastError();
            break;  // a 16-CTA cluster this device cannot schedule: skipped, not wrong
          }
          ASSERT_CUDA(err);
          ASSERT_CUDA(cudaDeviceSynchronize());
          HostOut h = Download(d, true);
          EXPECT_EQ(CompareWithReference(in.spec, ref, h.ids.data(), h.weights.data(), 1e-3), "")
              << Describe(in, seed) << " tiles=" << c.token_tiles << " splits=" << c.k_splits
              << " cluster=" << c.cluster << " polled=" << c.polled
              << " dedicated_routers=" << c.dedicated_routers << " rep=" << rep;
          for (int t = 0; t < tokens; ++t)
            for (int e = 0; e < in.spec.experts; ++e)
              ASSERT_NEAR(h.logits[size_t(t) * in.spec.experts + e], ref[t].logits[e],
                          1e-3 + 1e-3 * std::fabs(ref[t].logits[e]))
                  << "cluster=" << c.cluster << " splits=" << c.k_splits;
        }
      }
    }
  }
}

// Two token tiles: the polled kernel's instance with a pass of 2 K steps runs where each
// warp has at most two (TensorCorePassSteps), the one with a pass of 4 elsewhere. Split
// counts that give a warp 1, 2 and 3 steps, at hidden sizes whose last step is partial or
// past the last warp, each with and without dedicated routers, plain and under PDL (a
// pass's weights loaded before the wait), against the reference.
TEST(GpuConfigs, TwoTilePassLengthsMatchReference) {
  SKIP_WITHOUT_GPU();
  RouterSpec spec = FindPreset("qwen3_30b").value().spec;
  auto stream = MakeStream().value();
  for (int hidden : {2048, 2056, 1000}) {
    spec.hidden = hidden;
    const int total_steps = (hidden + 31) / 32;  // K steps of 32 elements, 8 warps a CTA
    // 40 tokens: three chunks, as the heuristic's 17-64-token configs (dedicated routers,
    // under PDL one CTA per SM); their grids at one step a warp do not fit 132 SMs.
    for (int tokens : {9, 16, 40}) {
      const uint64_t seed = FreshSeed();
      RouterInputs in = MakeRouterInputs(spec, tokens, DType::kBF16, DType::kBF16, seed);
      RouteProblem p{in.spec, tokens, DType::kBF16, DType::kBF16};
      const auto ref = in.Reference();
      for (int steps_per_warp : {1, 2, 3}) {
        for (bool dedicated : {false, true}) {
          for (bool pdl : {false, true}) {
            cuda::DecomposeKConfig c{cuda::Mainloop::kTensorCore, /*token_tiles=*/2,
                                     (total_steps + 8 * steps_per_warp - 1) / (8 * steps_per_warp),
                                     0, /*polled=*/true};
            c.dedicated_routers = dedicated;
            c.pdl_one_cta_per_sm = tokens > 16;
            if (tokens > 16 && steps_per_warp == 1 && !cuda::CanRouteDecomposeK(p, c).ok())
              continue;  // more CTAs than this device's SMs
            ASSERT_TRUE(cuda::CanRouteDecomposeK(p, c).ok()) << cuda::CanRouteDecomposeK(p, c);
            auto ws = DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, c)).value();
            ASSERT_CUDA(cuda::ResetDecomposeKWorkspace(ws.get(), p, c, stream.get()));
            DeviceCase d = MakeDeviceCase(in, true);
            for (int rep = 0; rep < 2; ++rep) {  // the second run checks the emptied slots
              Poison(d);
              ASSERT_CUDA(cuda::LaunchDecomposeKRouter(p, d.args, c, ws.get(), ws.bytes(),
                                                       stream.get(), pdl));
              ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
              HostOut h = Download(d, true);
              EXPECT_EQ(CompareWithReference(in.spec, ref, h.ids.data(), h.weights.data(), 1e-3),
                        "")
                  << Describe(in, seed) << " splits=" << c.k_splits
                  << " steps_per_warp<=" << steps_per_warp << " dedicated=" << dedicated
                  << " pdl=" << pdl << " rep=" << rep;
              for (int t = 0; t < tokens; ++t)
                for (int e = 0; e < in.spec.experts; ++e)
                  ASSERT_NEAR(h.logits[size_t(t) * in.spec.experts + e], ref[t].logits[e],
                              1e-3 + 1e-3 * std::fabs(ref[t].logits[e]))
                      << "hidden=" << hidden << " splits=" << c.k_splits << " t=" << t
                      << " e=" << e;
            }
          }
        }
      }
    }
  }
}

// The server reuses a token bucket's plan (config and workspace) for every smaller batch:
// the polled reduction must leave no slot filled whatever the token count.
// The same for the heuristic's plan where that is a cluster whose rank 0 routes (Mixtral
// on sm_90+).
TEST(GpuConfigs, PolledPlanServesSmallerTokenCounts) {
  SKIP_WITHOUT_GPU();
  for (const char* family : {"deepseek_v3", "kimi_k2", "mixtral"}) {
    const RouterSpec spec = FindPreset(family).value().spec;
    RouteProblem bucket{spec, 16, DType::kBF16, DType::kBF16};
    const cuda::DecomposeKConfig polled = cuda::ChooseDecomposeKConfig(
        bucket, SmCount(), /*allow_polled=*/true, /*cut_decode_splits=*/true,
        /*allow_rank_zero_routes=*/false);
    ASSERT_TRUE(polled.polled) << family;
    std::vector<cuda::DecomposeKConfig> configs = {polled};
    const cuda::DecomposeKConfig heuristic = cuda::ChooseDecomposeKConfig(bucket, SmCount());
    if (!cuda::SameTunedConfig(heuristic, polled)) configs.push_back(heuristic);
    for (const cuda::DecomposeKConfig& config : configs) {
      auto ws = DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(bucket, config)).value();
      ASSERT_CUDA(cuda::ResetDecomposeKWorkspace(ws.get(), bucket, config, nullptr));
      for (int tokens : {16, 5, 1, 16, 9}) {
        const uint64_t seed = FreshSeed();
        RouterInputs in = MakeRouterInputs(spec, tokens, DType::kBF16, DType::kBF16, seed);
        RouteProblem p{spec, tokens, DType::kBF16, DType::kBF16};
        DeviceCase d = MakeDeviceCase(in, true);
        Poison(d);
        ASSERT_CUDA(cuda::LaunchDecomposeKRouter(p, d.args, config, ws.get(), ws.bytes(), nullptr));
        ASSERT_CUDA(cudaDeviceSynchronize());
        HostOut h = Download(d, true);
        EXPECT_EQ(CompareWithReference(spec, in.Reference(), h.ids.data(), h.weights.data(), 1e-3),
                  "")
            << Describe(in, seed) << " cluster=" << config.cluster << " polled=" << config.polled;
      }
    }
  }
}

// Launches `config` on `in` twice on one workspace, with poisoned outputs each time (the
// second run checks that the first left every polled slot empty), and checks ids, weights
// and the logits output against `ref`. False when the config does not apply here.
bool CheckConfigTwice(const RouterInputs& in, const std::vector<ReferenceToken>& ref,
                      const cuda::DecomposeKConfig& config, const std::string& what) {
  RouteProblem p{in.spec, in.tokens, in.hidden_dtype, in.weight_dtype};
  if (!cuda::CanRouteDecomposeK(p, config).ok()) return false;
  auto ws = DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, config)).value();
  EXPECT_EQ(cuda::ResetDecomposeKWorkspace(ws.get(), p, config, nullptr), cudaSuccess);
  DeviceCase d = MakeDeviceCase(in, true);
  for (int rep = 0; rep < 2; ++rep) {
    Poison(d);
    EXPECT_EQ(cuda::LaunchDecomposeKRouter(p, d.args, config, ws.get(), ws.bytes(), nullptr),
              cudaSuccess)
        << what;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
    HostOut h = Download(d, true);
    const std::string where = absl::StrCat(what, " splits=", config.k_splits, " rep=", rep);
    EXPECT_EQ(CompareWithReference(in.spec, ref, h.ids.data(), h.weights.data(), 1e-3), "")
        << where;
    for (int t = 0; t < in.tokens; ++t)
      for (int e = 0; e < in.spec.experts; ++e) {
        const double want = ref[t].logits[e];
        const float got = h.logits[size_t(t) * in.spec.experts + e];
        if (!(std::fabs(got - want) <= 1e-3 + 1e-3 * std::fabs(want))) {  // NaN fails too
          ADD_FAILURE() << "logit t=" << t << " e=" << e << " got " << got << " want " << want
                        << " " << where;
          return true;
        }
      }
  }
  return true;
}

// The staged 64 x 64 tiles (decompose_k_staged.cu), at the split counts the autotuner
// tries, on every family: whole and ragged token chunks, both 16-bit dtypes.
TEST(GpuStaged, EveryFamilyMatchesReference) {
  SKIP_WITHOUT_GPU();
  int ran = 0;
  for (const auto& preset : FamilyPresets()) {
    for (int tokens : {32, 64, 100, 128, 256}) {
      const DType dt = tokens == 100 ? DType::kFP16 : DType::kBF16;
      const uint64_t seed = FreshSeed();
      const RouterInputs in = MakeRouterInputs(preset.spec, tokens, dt, dt, seed);
      const RouteProblem p{in.spec, tokens, dt, dt};
      const auto ref = in.Reference();
      const int splits = cuda::ChooseStagedConfig(p, SmCount()).k_splits;
      for (int s : {splits, splits * 3 / 4, splits / 2})
        ran += CheckConfigTwice(in, ref, cuda::ChooseStagedConfig(p, SmCount(), std::max(1, s)),
                                Describe(in, seed));
    }
  }
  EXPECT_GE(ran, 2 * int(FamilyPresets().size()));  // most shapes have a config that fits
}

// A lone token of more experts than a router CTA has threads: each thread polls two experts
// of the token at once (GatherWideToken), some threads one. Expert counts with none, some
// and all threads holding a second expert; polled routers dedicated or not, one token and
// several (one a router); the staged tiles at split counts around the poll batch of 16
// (exactly one batch, a second batch of one, of several). Each config runs twice on one
// workspace: the second run fails if the first left a polled slot unemptied.
TEST(GpuPolled, WideTokenGatherMatchesReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 pick(static_cast<uint32_t>(FreshSeed()));
  int polled_ran = 0, staged_ran = 0;
  for (int experts : {257, 300, 384, 448, 512}) {
    for (int tokens : {1, 5, 40}) {
      RouterSpec spec = RandomUngroupedSpec(experts, pick);
      spec.hidden = 7168;
      const uint64_t seed = FreshSeed();
      const RouterInputs in = MakeRouterInputs(spec, tokens, DType::kBF16, DType::kBF16, seed);
      const RouteProblem p{spec, tokens, DType::kBF16, DType::kBF16};
      const auto ref = in.Reference();
      if (tokens == 40) {  // staged: 64-token chunks, a token a router CTA
        for (int splits : {16, 17, 21})
          staged_ran += CheckConfigTwice(in, ref, cuda::ChooseStagedConfig(p, SmCount(), splits),
                                         Describe(in, seed));
        continue;
      }
      for (bool dedicated : {false, true}) {
        for (int splits : {1, 3, 8}) {
          cuda::DecomposeKConfig c;
          c.polled = true;
          c.k_splits = splits;
          c.dedicated_routers = dedicated;
          polled_ran += CheckConfigTwice(in, ref, c, Describe(in, seed));
        }
      }
    }
  }
  // Grids of more CTAs than SMs are refused (CheckConfigTwice returns false): a few here on
  // 132 SMs (512 experts at the largest splits), more on smaller GPUs.
  EXPECT_GE(polled_ran, 20);
  EXPECT_GE(staged_ran, 5);
}

// Experts that are not a whole number of 64-tiles (or of 32-blocks), hidden sizes that are
// not a whole number of 64-element stages, random routing specs.
TEST(GpuStaged, RaggedExpertsAndHiddenMatchReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 pick(static_cast<uint32_t>(FreshSeed()));
  int ran = 0;
  for (int experts : {8, 100, 160, 384, 512}) {
    for (int hidden : {2056, 2880, 4104, 7168}) {
      RouterSpec s;
      s.family = "staged_sweep";
      s.hidden = hidden;
      s.experts = experts;
      s.top_k = std::min<int>(experts, 1 + pick() % kMaxTopK);
      s.scoring = static_cast<Scoring>(pick() % 3);
      s.has_router_bias = pick() % 2;
      s.has_correction_bias = pick() % 2;
      s.renormalize = pick() % 2;
      const int tokens = 33 + pick() % 224;
      const DType dt = pick() % 2 ? DType::kBF16 : DType::kFP16;
      const uint64_t seed = FreshSeed();
      const RouterInputs in = MakeRouterInputs(s, tokens, dt, dt, seed);
      const RouteProblem p{s, tokens, dt, dt};
      ran += CheckConfigTwice(in, in.Reference(), cuda::ChooseStagedConfig(p, SmCount()),
                              Describe(in, seed));
    }
  }
  EXPECT_GE(ran, 10);
}

// Launches `config` on `in` `reps` times on one workspace, plainly or under PDL, with
// poisoned outputs each time (a later run fails where an earlier one left a polled slot
// unemptied), and returns the last run's outputs.
HostOut LaunchOnOneWorkspace(const RouterInputs& in, const cuda::DecomposeKConfig& config, bool pdl,
                             int reps) {
  const RouteProblem p{in.spec, in.tokens, in.hidden_dtype, in.weight_dtype};
  auto ws = DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, config)).value();
  EXPECT_EQ(cuda::ResetDecomposeKWorkspace(ws.get(), p, config, nullptr), cudaSuccess);
  DeviceCase d = MakeDeviceCase(in, true);
  HostOut out;
  for (int rep = 0; rep < reps; ++rep) {
    Poison(d);
    EXPECT_EQ(cuda::LaunchDecomposeKRouter(p, d.args, config, ws.get(), ws.bytes(), nullptr, pdl),
              cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    out = Download(d, true);
  }
  return out;
}

// Ids, weights and logits bit for bit (memcmp: NaN never equals itself by accident).
void ExpectSameBits(const HostOut& a, const HostOut& b, const std::string& where) {
  EXPECT_EQ(a.ids, b.ids) << where;
  ASSERT_EQ(a.weights.size(), b.weights.size()) << where;
  EXPECT_EQ(std::memcmp(a.weights.data(), b.weights.data(), a.weights.size() * sizeof(float)), 0)
      << where;
  ASSERT_EQ(a.logits.size(), b.logits.size()) << where;
  EXPECT_EQ(std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * sizeof(float)), 0)
      << where;
}

// The routing after the staged-tile GEMM (two launches: DecomposeKConfig::route_after_gemm),
// the autotuner's three tile shapes (and from 128 tokens cuBLASLt's GEMM, loaded with
// dlopen), on every family: whole and ragged 64-token tiles, both
// dtypes. Each config runs twice on one workspace (the GEMM's split counters must be left
// zero), ids, weights and the logits output checked against the reference.
TEST(GpuRouteAfterGemm, EveryFamilyMatchesReference) {
  SKIP_WITHOUT_GPU();
  int ran = 0;
  for (const auto& preset : FamilyPresets()) {
    for (int tokens : {64, 100, 129, 256}) {
      const DType dt = tokens == 100 ? DType::kFP16 : DType::kBF16;
      const uint64_t seed = FreshSeed();
      const RouterInputs in = MakeRouterInputs(preset.spec, tokens, dt, dt, seed);
      const RouteProblem p{in.spec, tokens, dt, dt};
      const auto ref = in.Reference();
      for (const cuda::DecomposeKConfig& c :
           cuda::AutotuneCandidates(p, cuda::CurrentDecomposeKDevice(SmCount()), true)) {
        if (!c.route_after_gemm) continue;
        ran += CheckConfigTwice(in, ref, c,
                                absl::StrCat(Describe(in, seed), " gemm_tile=", c.gemm_tile, "x",
                                             c.gemm_tile_m, " cublas=", c.gemm_cublas));
      }
    }
  }
  // Three tile shapes fit everywhere, and cuBLASLt's GEMM from 128 tokens.
  EXPECT_EQ(ran, (3 + 3 + 4 + 4) * int(FamilyPresets().size()));
}

// A workspace smaller than a launch needs is refused before anything touches the device
// (launches were not told the size, and assumed DecomposeKWorkspaceBytes). A route through
// cuBLASLt's GEMM needs only its logits. Runs without a GPU: nothing is launched.
TEST(GpuRouteAfterGemm, TooSmallAWorkspaceIsRefused) {
  const RouterSpec spec = FindPreset("deepseek_v3").value().spec;
  const cuda::DecomposeKDevice h100{132, true, true};
  alignas(256) static char never_read[256];
  RouteArgs args;
  args.hidden = args.weight = never_read;
  args.correction_bias = reinterpret_cast<const float*>(never_read);
  args.expert_ids = reinterpret_cast<int32_t*>(never_read);
  args.expert_weights = reinterpret_cast<float*>(never_read);
  for (int tokens : {1, 16, 128, 256}) {
    const RouteProblem p{spec, tokens, DType::kBF16, DType::kBF16};
    std::vector<cuda::DecomposeKConfig> configs = {cuda::ChooseDecomposeKConfigFor(p, h100),
                                                   cuda::ChooseRouteAfterCublasLtConfig()};
    for (const cuda::DecomposeKConfig& c : cuda::AutotuneCandidates(p, h100, true))
      if (c.route_after_gemm && !c.gemm_cublas) configs.push_back(c);
    for (const cuda::DecomposeKConfig& c : configs) {
      const size_t least = c.route_after_gemm && c.gemm_cublas
                               ? cuda::RouteAfterCublasLtOffset(p)
                               : cuda::DecomposeKWorkspaceBytes(p, c);
      EXPECT_EQ(cuda::DecomposeKLeastWorkspaceBytes(p, c), least);
      EXPECT_EQ(cuda::LaunchDecomposeKRouter(p, args, c, never_read, least - 1, nullptr),
                cudaErrorInvalidValue)
          << "t=" << tokens << " " << cuda::DescribeDecomposeKConfig(c);
    }
  }
  const cuda::GemmProblem g{16, 16, 8192, DType::kBF16};
  const cuda::DecomposeKConfig gc = cuda::ChooseGemmConfig(g, {132, true});
  ASSERT_FALSE(gc.gemm_cublas);
  EXPECT_EQ(
      cuda::LaunchGemm(g, never_read, never_read, nullptr, reinterpret_cast<float*>(never_read), gc,
                       never_read, cuda::GemmWorkspaceBytes(g, gc) - 1, nullptr),
      cudaErrorInvalidValue);
}

// Routing after cuBLASLt's GEMM with no room past the logits: cuBLASLt takes an algorithm
// that needs no workspace, and the answer is the reference's, as with a plan's workspace
// (PdlGraphsSmallerBatchesAndTheCacheLine) and the C ABI's 32 MiB (EveryFamilyMatchesReference).
TEST(GpuRouteAfterGemm, CublasLtWithNoWorkspacePastTheLogits) {
  SKIP_WITHOUT_GPU();
  if (!cuda::CurrentDecomposeKDevice(SmCount()).cublaslt) GTEST_SKIP() << "no cuBLASLt";
  for (const char* family : {"deepseek_v3", "kimi_k2"}) {
    const RouterSpec spec = FindPreset(family).value().spec;
    const uint64_t seed = FreshSeed();
    const RouterInputs in = MakeRouterInputs(spec, 200, DType::kBF16, DType::kBF16, seed);
    const RouteProblem p{spec, 200, DType::kBF16, DType::kBF16};
    const cuda::DecomposeKConfig c = cuda::ChooseRouteAfterCublasLtConfig();
    auto ws = DeviceBuffer::Allocate(cuda::RouteAfterCublasLtOffset(p)).value();
    DeviceCase d = MakeDeviceCase(in, true);
    Poison(d);
    ASSERT_CUDA(cuda::LaunchDecomposeKRouter(p, d.args, c, ws.get(), ws.bytes(), nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    ExpectMatchesReference(in, d, true, Describe(in, seed) + " cuBLASLt without workspace");
    // The C ABI takes the same (its heuristic routes these after cuBLASLt's GEMM), and
    // refuses a byte less.
    ASSERT_TRUE(cuda::SameTunedConfig(cuda::ChooseDecomposeKConfig(p, SmCount()), c));
    moe_router_spec cspec;
    ASSERT_EQ(moe_router_preset(family, &cspec), MOE_OK);
    Poison(d);
    auto c_route = [&](size_t bytes) {
      return moe_route(&cspec, 200, MOE_BF16, MOE_BF16, d.args.hidden, d.args.weight, nullptr,
                       d.args.correction_bias, d.args.expert_ids, d.args.expert_weights,
                       d.args.logits, ws.get(), bytes, nullptr);
    };
    ASSERT_EQ(c_route(ws.bytes()), MOE_OK) << moe_last_error();
    ASSERT_CUDA(cudaDeviceSynchronize());
    ExpectMatchesReference(in, d, true, Describe(in, seed) + " C ABI, logits-only workspace");
    EXPECT_EQ(c_route(ws.bytes() - 1), MOE_INVALID_ARGUMENT);
    EXPECT_NE(std::string(moe_last_error()).find("workspace"), std::string::npos);
  }
}

// A thread's first cuBLASLt call (its handle, the shape's descriptors and algorithm) may come
// inside a stream capture in the strictest mode, as when an inference engine captures its
// graphs before any eager call (the C ABI's heuristic takes cuBLASLt's GEMM for DeepSeek-V3 at
// 193-256 tokens): the capture must succeed and its replays route as the reference says.
TEST(GpuRouteAfterGemm, AThreadsFirstCublasLtCallMayBeCaptured) {
  SKIP_WITHOUT_GPU();
  if (!cuda::CurrentDecomposeKDevice(SmCount()).cublaslt) GTEST_SKIP() << "no cuBLASLt";
  const RouterSpec spec = FindPreset("deepseek_v3").value().spec;
  const uint64_t seed = FreshSeed();
  const RouterInputs in = MakeRouterInputs(spec, 256, DType::kBF16, DType::kBF16, seed);
  const RouteProblem p{spec, 256, DType::kBF16, DType::kBF16};
  const cuda::DecomposeKConfig c = cuda::ChooseRouteAfterCublasLtConfig();
  ASSERT_TRUE(cuda::CanRouteDecomposeK(p, c).ok());
  EXPECT_TRUE(cuda::SameTunedConfig(cuda::ChooseDecomposeKConfig(p, SmCount()), c));
  DeviceCase d = MakeDeviceCase(in, true);
  auto ws = DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, c)).value();
  ASSERT_CUDA(cuda::ResetDecomposeKWorkspace(ws.get(), p, c, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  Poison(d);
  std::thread fresh([&] {  // no cuBLASLt handle or plan yet on this thread
    auto stream = MakeStream().value();
    cudaGraph_t raw = nullptr;
    ASSERT_CUDA(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeGlobal));
    const cudaError_t launched = cuda::LaunchDecomposeKRouter(p, d.args, c, ws.get(), ws.bytes(),
                                                              stream.get(), /*pdl=*/true);
    const cudaError_t ended = cudaStreamEndCapture(stream.get(), &raw);
    CudaGraph graph(raw);
    ASSERT_EQ(launched, cudaSuccess) << cudaGetErrorString(launched);
    ASSERT_EQ(ended, cudaSuccess) << cudaGetErrorString(ended);
    cudaGraphExec_t exec = nullptr;
    ASSERT_CUDA(cudaGraphInstantiate(&exec, graph.get(), 0));
    CudaGraphExec owned(exec);
    for (int replay = 0; replay < 2; ++replay) ASSERT_CUDA(cudaGraphLaunch(exec, stream.get()));
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  });
  fresh.join();
  ExpectMatchesReference(in, d, true, Describe(in, seed) + " captured on a fresh thread");
}

// Under PDL, captured in a graph of back-to-back launches and replayed, the two kernels give
// the bits of a plain launch; a 256-token plan's config and workspace serve fewer tokens, as
// the server's token buckets use them; a cache line naming the config is read back whole.
TEST(GpuRouteAfterGemm, PdlGraphsSmallerBatchesAndTheCacheLine) {
  SKIP_WITHOUT_GPU();
  auto stream = MakeStream().value();
  const cuda::DecomposeKDevice device = cuda::CurrentDecomposeKDevice(SmCount());
  for (const char* family : {"deepseek_v3", "kimi_k2", "qwen3_30b"}) {
    const RouterSpec spec = FindPreset(family).value().spec;
    const uint64_t seed = FreshSeed();
    const RouterInputs in = MakeRouterInputs(spec, 256, DType::kBF16, DType::kBF16, seed);
    const RouteProblem p{spec, 256, DType::kBF16, DType::kBF16};
    const RouterInputs fewer = MakeRouterInputs(spec, 130, DType::kBF16, DType::kBF16, seed + 1);
    const RouteProblem pf{spec, 130, DType::kBF16, DType::kBF16};
    for (const cuda::DecomposeKConfig& c : cuda::AutotuneCandidates(p, device, true)) {
      if (!c.route_after_gemm) continue;
      const std::string what =
          absl::StrCat(Describe(in, seed), " gemm_tile=", c.gemm_tile, "x", c.gemm_tile_m,
                       " S=", c.k_splits, " cublas=", c.gemm_cublas);
      auto plan = cuda::CudaRouterPlan::CreateWithConfig(p, c, stream.get());
      ASSERT_TRUE(plan.ok()) << plan.status();
      if (c.gemm_cublas) {
        // The plan holds its logits and what cuBLASLt's algorithm asks for (the H100's: 1-2
        // MiB here), not the 32 MiB that lets cuBLASLt choose from all.
        EXPECT_GE((*plan)->workspace_bytes(), cuda::RouteAfterCublasLtOffset(p)) << what;
        EXPECT_LT((*plan)->workspace_bytes(), size_t(8) << 20) << what;
      } else {
        EXPECT_EQ((*plan)->workspace_bytes(), cuda::DecomposeKWorkspaceBytes(p, c)) << what;
      }
      DeviceCase d = MakeDeviceCase(in, true);
      Poison(d);
      ASSERT_CUDA((*plan)->Launch(d.args, stream.get(), /*pdl=*/false));
      ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
      HostOut plain;
      ExpectMatchesReference(in, d, true, what, &plain);
      CudaGraphExec graph = CaptureGraph(stream.get(), [&] {
        cudaError_t err = cudaSuccess;
        for (int i = 0; i < 3 && err == cudaSuccess; ++i)
          err = (*plan)->Launch(d.args, stream.get(), /*pdl=*/true);
        return err;
      });
      ASSERT_NE(graph.get(), nullptr) << what;
      for (int replay = 0; replay < 2; ++replay) {
        Poison(d);
        ASSERT_CUDA(cudaGraphLaunch(graph.get(), stream.get()));
        ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
        ExpectSameBits(plain, Download(d, true), absl::StrCat(what, " replay=", replay));
      }
      DeviceCase df = MakeDeviceCase(fewer, true);
      Poison(df);
      ASSERT_CUDA(cuda::LaunchDecomposeKRouter(pf, df.args, c, (*plan)->workspace(),
                                               (*plan)->workspace_bytes(), stream.get(),
                                               /*pdl=*/true));
      ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
      ExpectMatchesReference(fewer, df, true, what + " at 130 tokens on the 256-token workspace");
    }
  }
  // The cache line: the 64-tile config at the GEMM heuristic's split count.
  const RouterSpec ds = FindPreset("deepseek_v3").value().spec;
  const RouteProblem p{ds, 256, DType::kBF16, DType::kBF16};
  const uint64_t seed = FreshSeed();
  const RouterInputs in = MakeRouterInputs(ds, 256, DType::kBF16, DType::kBF16, seed);
  DeviceCase d = MakeDeviceCase(in, false);
  const int splits = cuda::TileGemmSplits(256, ds.experts, ds.hidden, 64, SmCount());
  const std::string cache = "/tmp/moe_gpu_test_after_gemm_" + std::to_string(getpid());
  int dev = 0;
  ASSERT_CUDA(cudaGetDevice(&dev));
  {
    std::ofstream out(cache, std::ios::trunc);
    out << cuda::AutotuneCacheKey(p, cuda::ProbeDevice(dev).name, SmCount(), /*pdl=*/true)
        << " 0 1 " << splits << " 0 0 0 0 0 0 0 1 64 0 " << int(device.clusters) << " 0\n";
  }
  cuda::AutotuneOptions tune;
  tune.enabled = true;
  tune.pdl = true;
  tune.cache_file = cache;
  std::vector<cuda::CandidateTiming> timings;
  tune.timings = &timings;
  auto plan = cuda::CudaRouterPlan::Create(p, SmCount(), tune, &d.args, stream.get());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(timings.empty()) << "the cache line did not serve";
  const cuda::DecomposeKConfig& c = (*plan)->config();
  EXPECT_TRUE(c.route_after_gemm && c.gemm_tile == 64 && c.gemm_tile_m == 0 &&
              c.k_splits == splits && c.gemm_tma == device.clusters && !c.polled);
  Poison(d);
  ASSERT_CUDA((*plan)->Launch(d.args, stream.get(), /*pdl=*/true));
  ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  ExpectMatchesReference(in, d, false, Describe(in, seed) + " from the cache line");
  std::remove(cache.c_str());
}

// The staged tiles' two ways of copying a stage (the TMA on sm_90+, cp.async everywhere)
// give the same bits: the same products summed in the same order, only placed differently
// in shared memory. Every family at a whole and a ragged chunk, ragged experts and hidden
// sizes (the TMA's out-of-bounds fill against cp.async's zero fill), both dtypes, at the
// heuristic's splits and at half; each checked against the reference too.
TEST(GpuStaged, TmaAndCpAsyncGiveTheSameBits) {
  SKIP_WITHOUT_GPU();
  std::vector<RouterSpec> specs;
  for (const auto& preset : FamilyPresets()) specs.push_back(preset.spec);
  std::mt19937 pick(static_cast<uint32_t>(FreshSeed()));
  for (int experts : {8, 100, 400}) {
    RouterSpec s = RandomUngroupedSpec(experts, pick);
    s.hidden = experts == 100 ? 2056 : 4104;  // not whole 64-element stages
    specs.push_back(s);
  }
  int ran = 0;
  for (const RouterSpec& spec : specs) {
    for (int tokens : {64, 97}) {
      const DType dt = tokens == 97 ? DType::kFP16 : DType::kBF16;
      const uint64_t seed = FreshSeed();
      const RouterInputs in = MakeRouterInputs(spec, tokens, dt, dt, seed);
      const RouteProblem p{spec, tokens, dt, dt};
      const auto ref = in.Reference();
      const int splits = cuda::ChooseStagedConfig(p, SmCount()).k_splits;
      for (int s : {splits, std::max(1, splits / 2)}) {
        HostOut out[2];
        bool applies = true;
        for (bool cp_async : {false, true}) {
          cuda::DecomposeKConfig c = cuda::ChooseStagedConfig(p, SmCount(), s);
          c.staged_cp_async = cp_async;
          if (!cuda::CanRouteDecomposeK(p, c).ok()) {
            applies = false;
            break;
          }
          auto ws = DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, c)).value();
          ASSERT_CUDA(cuda::ResetDecomposeKWorkspace(ws.get(), p, c, nullptr));
          DeviceCase d = MakeDeviceCase(in, true);
          Poison(d);
          ASSERT_CUDA(cuda::LaunchDecomposeKRouter(p, d.args, c, ws.get(), ws.bytes(), nullptr));
          ASSERT_CUDA(cudaDeviceSynchronize());
          out[cp_async] = Download(d, true);
        }
        if (!applies) continue;
        ++ran;
        const std::string where = absl::StrCat(Describe(in, seed), " splits=", s);
        EXPECT_EQ(CompareWithReference(spec, ref, out[0].ids.data(), out[0].weights.data(), 1e-3),
                  "")
            << where;
        ExpectSameBits(out[0], out[1], where);
        for (float w : out[0].weights) ASSERT_FALSE(std::isnan(w)) << where;
      }
    }
  }
  EXPECT_GE(ran, int(specs.size()));
}

// The staged router pairs (DecomposeKConfig::staged_router_pairs: a router CTA gathers two
// tokens and each half of it routes one) give the bits of the staged routers of one token,
// which CheckConfigTwice checks against the reference: the same sums in the same order,
// the same epilogue on four warps instead of eight. (Where a grid row has fewer CTAs than
// the chunk has tokens, the routers without pairs take several tokens, a warp each, whose
// weights are summed in another order: there both are checked against the reference
// only.) Every family the pairs apply to,
// grouped routers of whole columns and random ungrouped ones of 8 to 256 experts (an element
// a thread up to 128 experts, both tokens' expert e in thread e past it), odd token counts
// (the last pair router has one token), several chunks, both dtypes, two split counts;
// plainly and under PDL, three launches on one workspace. Where they cannot route (more
// than 256 experts; a softmax over all experts before the top-k) the check refuses them.
TEST(GpuStaged, RouterPairsGiveTheBitsOfOneTokenRouters) {
  SKIP_WITHOUT_GPU();
  std::mt19937 pick(static_cast<uint32_t>(FreshSeed()));
  std::vector<RouterSpec> specs;
  for (const auto& preset : FamilyPresets()) specs.push_back(preset.spec);
  for (int experts : {8, 40, 100, 129, 160, 200, 256}) {
    RouterSpec s = RandomUngroupedSpec(experts, pick);
    s.hidden = experts % 2 ? 2056 : 4096;  // 2056: not whole 64-element stages
    specs.push_back(s);
  }
  for (int experts : {128, 256}) {  // groups of whole columns (GroupColumnRankedRouteToken)
    RouterSpec s = RandomWholeColumnGroupsSpec(experts, pick, /*any_top_k=*/false);
    s.hidden = 3072;
    specs.push_back(s);
  }
  int ran = 0, bitwise = 0;
  for (const RouterSpec& spec : specs) {
    for (int tokens : {33, 64, 97, 128, 255}) {
      const DType dt = tokens % 2 ? DType::kFP16 : DType::kBF16;
      const uint64_t seed = FreshSeed();
      const RouterInputs in = MakeRouterInputs(spec, tokens, dt, dt, seed);
      const RouteProblem p{spec, tokens, dt, dt};
      const auto ref = in.Reference();
      const int splits = cuda::ChooseStagedConfig(p, SmCount()).k_splits;
      for (int s : {splits, std::max(1, splits / 2)}) {
        const cuda::DecomposeKConfig one = cuda::ChooseStagedConfig(p, SmCount(), s);
        cuda::DecomposeKConfig pairs = one;
        pairs.staged_router_pairs = true;
        const std::string where = absl::StrCat(Describe(in, seed), " splits=", s);
        const absl::Status can = cuda::CanRouteDecomposeK(p, pairs);
        if (!can.ok()) {  // refused by name where the routers of one token would run
          if (cuda::CanRouteDecomposeK(p, one).ok()) {
            EXPECT_NE(std::string(can.message()).find("staged_router_pairs"), std::string::npos)
                << can << " " << where;
          }
          continue;
        }
        if (!CheckConfigTwice(in, ref, one, where)) continue;
        const int row_ctas =
            (spec.experts + cuda::kStagedTileExperts - 1) / cuda::kStagedTileExperts * one.k_splits;
        const bool one_token_routers = row_ctas >= std::min(tokens, cuda::kStagedTileTokens);
        for (bool pdl : {false, true}) {
          const HostOut b = LaunchOnOneWorkspace(in, pairs, pdl, 3);
          EXPECT_EQ(CompareWithReference(spec, ref, b.ids.data(), b.weights.data(), 1e-3), "")
              << where << " pdl=" << pdl;
          for (float w : b.weights) ASSERT_FALSE(std::isnan(w)) << where;
          if (one_token_routers)
            ExpectSameBits(LaunchOnOneWorkspace(in, one, pdl, 1), b,
                           absl::StrCat(where, " pdl=", pdl));
        }
        ++ran;
        bitwise += one_token_routers;
      }
    }
  }
  EXPECT_GE(ran, int(specs.size()));  // most specs at most token counts
  EXPECT_GE(bitwise, int(specs.size()) / 2);
}

TEST(GpuStaged, ConfigChecksNameTheProblem) {
  SKIP_WITHOUT_GPU();
  const RouteProblem p{FindPreset("deepseek_v3").value().spec, 64, DType::kBF16, DType::kBF16};
  cuda::DecomposeKConfig c = cuda::ChooseStagedConfig(p, SmCount());
  ASSERT_TRUE(cuda::CanRouteDecomposeK(p, c).ok()) << cuda::CanRouteDecomposeK(p, c);
  auto expect_refused = [&](const cuda::DecomposeKConfig& bad, const char* words) {
    const absl::Status status = cuda::CanRouteDecomposeK(p, bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << words;
    EXPECT_NE(std::string(status.message()).find(words), std::string::npos) << status;
  };
  cuda::DecomposeKConfig bad = c;
  bad.polled = false;
  expect_refused(bad, "staged needs the polled reduction");
  bad = c;
  bad.dedicated_routers = true;
  expect_refused(bad, "staged needs the polled reduction");
  bad = c;
  bad.k_splits = 113;  // DeepSeek-V3's 7168 are 112 stages
  expect_refused(bad, "leaves some empty");
  bad = c;
  bad.k_splits = 9;  // 13 stages a CTA
  expect_refused(bad, "that fit");
  bad = cuda::ChooseStagedConfig({p.spec, 256, DType::kBF16, DType::kBF16}, SmCount(), 40);
  expect_refused(bad, "SMs");  // 4 expert tiles x 4 chunks x 38 splits
  bad = c;
  bad.staged_router_pairs = true;
  EXPECT_TRUE(cuda::CanRouteDecomposeK(p, bad).ok()) << cuda::CanRouteDecomposeK(p, bad);
  bad.staged = false;
  expect_refused(bad, "staged_router_pairs applies to the staged tiles only");
  // Router pairs: where a grid row has fewer CTAs than half the chunk's tokens (Qwen3-30B's
  // 2 expert tiles x 3 splits), past 256 experts (Kimi K2), and for a spec one CTA cannot
  // route token by token (a softmax over all experts kept before the top-k).
  auto expect_pairs_refused = [&](const RouterSpec& spec, int splits, const char* words) {
    const RouteProblem q{spec, 64, DType::kBF16, DType::kBF16};
    cuda::DecomposeKConfig pairs = cuda::ChooseStagedConfig(q, SmCount(), splits);
    ASSERT_TRUE(cuda::CanRouteDecomposeK(q, pairs).ok()) << spec.family;
    pairs.staged_router_pairs = true;
    const absl::Status status = cuda::CanRouteDecomposeK(q, pairs);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << words;
    EXPECT_NE(std::string(status.message()).find(words), std::string::npos) << status;
  };
  expect_pairs_refused(FindPreset("qwen3_30b").value().spec, 3, "fewer than the chunk's 64");
  expect_pairs_refused(FindPreset("kimi_k2").value().spec, 0, "at most 256 experts");
  RouterSpec softmax_first = FindPreset("qwen3_30b").value().spec;  // softmax, then top 8
  softmax_first.renormalize = false;  // so the weights need the softmax over all 128
  expect_pairs_refused(softmax_first, 0, "one CTA routes alone");
}

// Under PDL a staged launch keeps to one CTA per SM whatever its stages: with two, CTAs of
// later launches sat beside the routers and the gather took 3.6-6.4 us (bench/NOTES.md,
// session 35). Without PDL it asks only for what it needs: at 6 stages (96 KB) two fit.
TEST(GpuStaged, LaunchesUnderPdlKeepToOneCtaPerSm) {
  SKIP_WITHOUT_GPU();
  // The instances: bf16 / fp16 x up to 256 experts, more, and up to 256 with router pairs.
  const std::pair<bool, bool> wide_pairs[] = {{false, false}, {true, false}, {false, true}};
  for (bool bf16 : {true, false}) {
    for (const auto& [wide, pairs] : wide_pairs) {
      for (int stages = 1; stages <= cuda::kStagedMaxStages; ++stages) {
        const size_t smem = cuda::StagedDynamicSmemBytes(stages, 0);
        const absl::StatusOr<int> ctas =
            cuda::StagedCtasPerSm(bf16, wide, smem, /*pdl=*/true, pairs);
        ASSERT_TRUE(ctas.ok()) << ctas.status();
        EXPECT_EQ(*ctas, 1) << "bf16 " << bf16 << " wide " << wide << " pairs " << pairs
                            << " stages " << stages;
      }
    }
  }
  for (const auto& [wide, pairs] : wide_pairs) {
    const absl::StatusOr<int> ctas =
        cuda::StagedCtasPerSm(true, wide, cuda::StagedDynamicSmemBytes(6, 0), /*pdl=*/false, pairs);
    ASSERT_TRUE(ctas.ok()) << ctas.status();
    EXPECT_GE(*ctas, 2) << "wide " << wide << " pairs " << pairs;
  }
  EXPECT_FALSE(cuda::StagedCtasPerSm(true, /*wide_experts=*/true,
                                     cuda::StagedDynamicSmemBytes(6, 0),
                                     /*pdl=*/true, /*router_pairs=*/true)
                   .ok());  // no such instance
}

// The one-token router CTA's top-k runs on the few experts that reach a threshold taken
// from the columns' best two keys, and on all of them when more than 32 reach it. Here the
// correction bias lifts the first 64 experts' selection keys above every other expert's,
// so all 64 reach the threshold (the full top-k runs); the other rows keep random biases
// (the few-candidates path). Both must route like the reference.
TEST(GpuFused, ManyExpertsReachingTheThresholdRouteLikeTheReference) {
  SKIP_WITHOUT_GPU();
  for (const char* family : {"deepseek_v3", "kimi_k2", "glm4_moe"}) {
    for (bool lifted : {false, true}) {
      const uint64_t seed = FreshSeed();
      RouterInputs in =
          MakeRouterInputs(FindPreset(family).value().spec, 1, DType::kBF16, DType::kBF16, seed);
      ASSERT_TRUE(in.spec.has_correction_bias) << family;
      if (lifted)
        for (int e = 0; e < 64; ++e) in.correction_bias[e] += 1.0f;
      RouteProblem p{in.spec, 1, in.hidden_dtype, in.weight_dtype};
      auto plan = cuda::CudaRouterPlan::Create(p, SmCount()).value();
      ASSERT_TRUE(plan->config().polled) << family;  // a router CTA with one token
      DeviceCase d = MakeDeviceCase(in, false);
      for (int rep = 0; rep < 2; ++rep) {
        Poison(d);
        ASSERT_TRUE(plan->Route(d.args, nullptr).ok());
        ASSERT_CUDA(cudaDeviceSynchronize());
        HostOut h;
        ExpectMatchesReference(in, d, false,
                               Describe(in, seed) + " lifted=" + (lifted ? "true" : "false"), &h);
        if (lifted) {
          for (int i = 0; i < in.spec.top_k; ++i) EXPECT_LT(h.ids[i], 64) << Describe(in, seed);
        }
      }
    }
  }
}

// Exact ties: expert e's router row (and biases) copies expert e - gap's for every e whose
// (e / gap) is odd, so twins gap apart get bit-identical logits and scores. The tie rule
// says the lower id wins and comes first: a chosen upper twin must directly follow its
// lower twin. This drives the epilogue's exact fallback, which random inputs almost never
// reach. Twins 8 and 32 apart sit in other lanes' registers and other lane-layout columns
// than twins 1 apart (for the column-ranked top-k of 33-128 experts: other column warps,
// where slot order breaks the tie).
TEST(GpuFused, ExactTiesPickTheLowerIdFirst) {
  SKIP_WITHOUT_GPU();
  std::vector<RouterSpec> specs;
  for (const char* family : {"deepseek_v3", "kimi_k2", "glm4_moe", "qwen3_30b", "mixtral",
                             "llama4_scout", "gpt_oss_20b", "gpt_oss_120b", "llama4_maverick"})
    specs.push_back(FindPreset(family).value().spec);
  // Ungrouped routers with lanes past the experts in their last column (the counting
  // top-k's padding keys tie with each other there): 24 experts in one warp, 40 and 100
  // over 2 and 4 column warps, 200 over 7 (warp 0 ranks 56 candidates, two a lane), 300
  // over 10 and 500 over 16 (three and four warps rank 80 and 128 candidates, twins 32
  // apart in different ranking warps).
  for (const auto& [experts, top_k] : {std::pair{24, 4}, std::pair{40, 6}, std::pair{100, 8},
                                       std::pair{200, 8}, std::pair{300, 8}, std::pair{500, 8}}) {
    RouterSpec s = FindPreset("qwen3_30b").value().spec;
    s.family = "ragged_ungrouped";
    s.experts = experts;
    s.top_k = top_k;
    specs.push_back(s);
  }
  for (const RouterSpec& spec : specs)
    for (int gap : {1, 8, 32})
      for (int tokens : {1, 7, 16, 40}) {  // 16: a warp a token in the cluster router (33-128)
        if (2 * gap > spec.experts || (gap > 1 && tokens == 40)) continue;
        const uint64_t seed = FreshSeed();
        RouterInputs in = MakeRouterInputs(spec, tokens, DType::kBF16, DType::kBF16, seed);
        const int E = in.spec.experts, H = in.spec.hidden;
        const size_t row_bytes = size_t(H) * DTypeSize(in.weight_dtype);
        auto upper_twin = [gap](int e) { return (e / gap) % 2 == 1; };
        for (int e = gap; e < E; ++e) {
          if (!upper_twin(e)) continue;
          std::memcpy(in.weight.data() + e * row_bytes, in.weight.data() + (e - gap) * row_bytes,
                      row_bytes);
          std::copy_n(in.weight_f.begin() + size_t(e - gap) * H, H,
                      in.weight_f.begin() + size_t(e) * H);
          if (!in.router_bias.empty()) in.router_bias[e] = in.router_bias[e - gap];
          if (!in.correction_bias.empty()) in.correction_bias[e] = in.correction_bias[e - gap];
        }
        RouteProblem p{in.spec, tokens, in.hidden_dtype, in.weight_dtype};
        auto plan = cuda::CudaRouterPlan::Create(p, SmCount()).value();
        DeviceCase d = MakeDeviceCase(in, false);
        Poison(d);
        ASSERT_TRUE(plan->Route(d.args, nullptr).ok());
        ASSERT_CUDA(cudaDeviceSynchronize());
        HostOut h;
        ExpectMatchesReference(in, d, false, Describe(in, seed), &h);
        const int K = in.spec.top_k;
        for (int t = 0; t < tokens; ++t)
          for (int i = 0; i < K; ++i) {
            const int id = h.ids[size_t(t) * K + i];
            if (!upper_twin(id)) continue;
            ASSERT_GT(i, 0) << Describe(in, seed) << " token " << t << ": upper twin " << id
                            << " chosen first (twins " << gap << " apart)";
            EXPECT_EQ(h.ids[size_t(t) * K + i - 1], id - gap)
                << Describe(in, seed) << " token " << t << " slot " << i << " (twins " << gap
                << " apart)";
          }
      }
}

TEST(GpuFused, GraphReplayAndBackToBackLaunchesStayCorrect) {
  SKIP_WITHOUT_GPU();
  // DeepSeek-V3: polled and staged plans; Qwen3-30B: on sm_90+ a cluster whose rank 0
  // routes up to 16 tokens.
  for (const char* family : {"deepseek_v3", "qwen3_30b"}) {
    for (int tokens : {1, 16, 200}) {
      RouterSpec s = FindPreset(family).value().spec;
      const uint64_t seed = FreshSeed();
      RouterInputs in = MakeRouterInputs(s, tokens, DType::kBF16, DType::kBF16, seed);
      RouteProblem p{s, tokens, DType::kBF16, DType::kBF16};
      auto plan = cuda::CudaRouterPlan::Create(p, SmCount()).value();
      DeviceCase d = MakeDeviceCase(in, false);
      auto stream = MakeStream().value();
      // Eager run: the expected answer.
      Poison(d);
      ASSERT_CUDA(plan->Launch(d.args, stream.get()));
      ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
      HostOut first = Download(d, false);
      EXPECT_EQ(
          CompareWithReference(s, in.Reference(), first.ids.data(), first.weights.data(), 1e-3), "")
          << Describe(in, seed);
      // 200 launches back to back (counters must reset themselves), with PDL on.
      Poison(d);
      for (int i = 0; i < 200; ++i) ASSERT_CUDA(plan->Launch(d.args, stream.get(), /*pdl=*/i % 2));
      ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
      HostOut many = Download(d, false);
      EXPECT_EQ(many.ids, first.ids);
      EXPECT_EQ(0,
                std::memcmp(many.weights.data(), first.weights.data(), first.weights.size() * 4));
      // Captured into a graph of 16 launches, replayed 10 times: identical bits.
      const CudaGraphExec exec = CaptureGraph(stream.get(), [&] {
        cudaError_t e = cudaSuccess;
        for (int i = 0; i < 16 && e == cudaSuccess; ++i)
          e = plan->Launch(d.args, stream.get(), true);
        return e;
      });
      ASSERT_TRUE(exec);
      Poison(d);
      for (int i = 0; i < 10; ++i) ASSERT_CUDA(cudaGraphLaunch(exec.get(), stream.get()));
      ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
      HostOut replay = Download(d, false);
      EXPECT_EQ(replay.ids, first.ids);
      EXPECT_EQ(0,
                std::memcmp(replay.weights.data(), first.weights.data(), first.weights.size() * 4));
    }
  }
}

// Plans autotuned with and without PDL (each timed the way it will be launched, cached
// under separate keys) both route like the reference, launched that way.
TEST(GpuAutotune, PlansTunedWithAndWithoutPdlRouteCorrectly) {
  SKIP_WITHOUT_GPU();
  const std::string cache = "/tmp/moe_gpu_test_tune_" + std::to_string(getpid());
  std::remove(cache.c_str());
  for (const char* family : {"deepseek_v3", "mixtral"}) {
    for (int tokens : {1, 16}) {
      const uint64_t seed = FreshSeed();
      const RouterSpec s = FindPreset(family).value().spec;
      RouterInputs in = MakeRouterInputs(s, tokens, DType::kBF16, DType::kBF16, seed);
      RouteProblem p{s, tokens, DType::kBF16, DType::kBF16};
      DeviceCase d = MakeDeviceCase(in, false);
      auto stream = MakeStream().value();
      for (bool pdl : {false, true}) {
        cuda::AutotuneOptions tune;
        tune.enabled = true;
        tune.iterations = 3;
        tune.cache_file = cache;
        tune.pdl = pdl;
        cuda::DecomposeKConfig tuned;
        for (int pass = 0; pass < 2; ++pass) {  // the second plan comes from the cache
          // The timings the autotuner reports (router_bench --candidates): on the tuning
          // pass every candidate, the chosen one the fastest; none from the cache.
          std::vector<cuda::CandidateTiming> timings;
          tune.timings = &timings;
          auto plan = cuda::CudaRouterPlan::Create(p, SmCount(), tune, &d.args, stream.get());
          ASSERT_TRUE(plan.ok()) << plan.status();
          if (pass == 0) {
            ASSERT_FALSE(timings.empty());
            float chosen = -1, fastest = timings[0].us;
            for (const auto& t : timings) {
              EXPECT_TRUE(std::isfinite(t.us) && t.us > 0) << t.us;
              fastest = std::min(fastest, t.us);
              if (cuda::SameTunedConfig(t.config, (*plan)->config())) chosen = t.us;
            }
            EXPECT_EQ(chosen, fastest) << Describe(in, seed) << " pdl=" << pdl;
            // Under PDL every 32-expert polled candidate is also timed one CTA per SM;
            // without PDL the option means nothing and is never a candidate.
            int one_cta = 0, other = 0;
            for (const auto& t : timings) {
              if (!t.config.polled || t.config.staged) continue;
              ++(t.config.pdl_one_cta_per_sm ? one_cta : other);
            }
            EXPECT_EQ(one_cta, pdl ? other : 0) << Describe(in, seed) << " pdl=" << pdl;
            tuned = (*plan)->config();
          } else {
            EXPECT_TRUE(timings.empty()) << timings.size();
            // The cache line holds the whole config, launch options included.
            EXPECT_TRUE(cuda::SameTunedConfig((*plan)->config(), tuned))
                << Describe(in, seed) << " pdl=" << pdl;
          }
          Poison(d);
          for (int i = 0; i < 3; ++i) ASSERT_CUDA((*plan)->Launch(d.args, stream.get(), pdl));
          ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
          ExpectMatchesReference(
              in, d, false,
              absl::StrCat(Describe(in, seed), " pdl=", pdl ? "true" : "false", " pass=", pass));
        }
      }
    }
  }
  // One key per (shape, launch mode).
  std::ifstream file(cache);
  int lines = 0, pdl_lines = 0;
  for (std::string line; std::getline(file, line); ++lines)
    pdl_lines += line.find(":pdl") != std::string::npos;
  EXPECT_EQ(lines, 8);
  EXPECT_EQ(pdl_lines, 4);
  std::remove(cache.c_str());
}

// A cache line the problem refuses (here router pairs without the staged tiles) is tuned
// again once; the line that tuning appends serves the next plan. Before, the first line of a
// key was the only one read: a refused line had the plan tuned again at every start, each
// appending a line.
TEST(GpuAutotune, ARefusedCacheLineIsTunedAgainOnceAndTheNewLineServes) {
  SKIP_WITHOUT_GPU();
  const std::string cache = "/tmp/moe_gpu_test_refused_" + std::to_string(getpid());
  const RouterSpec s = FindPreset("mixtral").value().spec;
  const uint64_t seed = FreshSeed();
  RouterInputs in = MakeRouterInputs(s, 1, DType::kBF16, DType::kBF16, seed);
  const RouteProblem p{s, 1, DType::kBF16, DType::kBF16};
  DeviceCase d = MakeDeviceCase(in, false);
  auto stream = MakeStream().value();
  int device = 0;
  ASSERT_CUDA(cudaGetDevice(&device));
  const std::string key =
      cuda::AutotuneCacheKey(p, cuda::ProbeDevice(device).name, SmCount(), /*pdl=*/false);
  {
    std::ofstream out(cache, std::ios::trunc);
    // mainloop tiles splits cluster polled cooperative dedicated staged one_cta pairs
    // after_gemm gemm_tile gemm_tile_m gemm_tma gemm_cublas
    out << key << " 0 1 8 0 1 0 0 0 0 1 0 0 0 0 0\n";
  }
  cuda::AutotuneOptions tune;
  tune.enabled = true;
  tune.iterations = 3;
  tune.cache_file = cache;
  cuda::DecomposeKConfig tuned;
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<cuda::CandidateTiming> timings;
    tune.timings = &timings;
    auto plan = cuda::CudaRouterPlan::Create(p, SmCount(), tune, &d.args, stream.get());
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_FALSE((*plan)->config().staged_router_pairs);
    if (pass == 0) {
      EXPECT_FALSE(timings.empty()) << "the refused line was not tuned again";
      tuned = (*plan)->config();
    } else {
      EXPECT_TRUE(timings.empty()) << "tuned again: the new line did not serve";
      EXPECT_TRUE(cuda::SameTunedConfig((*plan)->config(), tuned));
    }
    Poison(d);
    ASSERT_CUDA((*plan)->Launch(d.args, stream.get(), false));
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    ExpectMatchesReference(in, d, false, absl::StrCat(Describe(in, seed), " pass=", pass));
  }
  std::ifstream file(cache);
  int lines = 0;
  for (std::string line; std::getline(file, line);) ++lines;
  EXPECT_EQ(lines, 2);
  std::remove(cache.c_str());
}

// The router launched with PDL right behind a slow kernel that writes its hidden states
// (and lets it start at once): weights may be read early, hidden states only after
// griddepcontrol.wait. Reading them earlier would route the poisoned bytes.
TEST(GpuFused, PdlWaitsForTheKernelThatWritesTheHiddenStates) {
  SKIP_WITHOUT_GPU();
  for (const char* family : {"deepseek_v3", "mixtral"}) {
    // 40: the two-tile, dedicated-router, one-CTA-a-SM plain launch of 17-64 tokens (Mixtral;
    // DeepSeek-V3 the staged tiles).
    for (int tokens : {1, 16, 40, 100}) {
      const uint64_t seed = FreshSeed();
      RouterInputs in = MakeRouterInputs(FindPreset(family).value().spec, tokens, DType::kBF16,
                                         DType::kBF16, seed);
      RouteProblem p{in.spec, tokens, in.hidden_dtype, in.weight_dtype};
      auto plan = cuda::CudaRouterPlan::Create(p, SmCount()).value();
      DeviceCase d = MakeDeviceCase(in, true);
      auto staged = Upload(in.hidden);
      auto stream = MakeStream().value();
      // A polled plan also launched cooperatively under PDL, kept to one CTA per SM and with
      // dedicated routers (the autotuner's other choices), where the grid fits, at the
      // heuristic's split count and at the one-pass count (a warp's weights all loaded
      // before the wait). From 32 tokens also the staged tiles (an autotuner candidate), both
      // launch kinds.
      std::vector<cuda::DecomposeKConfig> configs;
      const cuda::DecomposeKConfig polled = cuda::ChooseDecomposeKConfig(
          p, SmCount(), /*allow_polled=*/true, /*cut_decode_splits=*/true,
          /*allow_rank_zero_routes=*/false);
      std::vector<int> split_counts = {polled.k_splits,
                                       cuda::PolledOnePassSplits(p, polled.token_tiles)};
      // Two token tiles: also the count whose warps take the pass of 2 K steps, whose
      // whole K range is then loaded before the wait.
      if (polled.token_tiles == 2) split_counts.push_back(cuda::PolledShortPassSplits(p));
      // Each count once: the heuristic's is the short-pass count where that fits (Mixtral t=16).
      std::sort(split_counts.begin(), split_counts.end());
      split_counts.erase(std::unique(split_counts.begin(), split_counts.end()), split_counts.end());
      for (int splits : split_counts) {
        for (int variant = 0; variant < 8; ++variant) {
          cuda::DecomposeKConfig c = polled;
          c.k_splits = splits;
          c.pdl_cooperative = c.polled && variant % 2 == 1;
          c.dedicated_routers = c.polled && variant / 2 % 2 == 1;
          c.pdl_one_cta_per_sm = c.polled && !c.staged && variant / 4 == 1;
          // The two counts can be equal (DeepSeek-V3 at one token: 7 and 7).
          if (std::none_of(configs.begin(), configs.end(), [&](const cuda::DecomposeKConfig& o) {
                return cuda::SameTunedConfig(o, c);
              }))
            configs.push_back(c);
        }
      }
      if (tokens >= 32) {
        for (int variant = 0; variant < 8; ++variant) {
          cuda::DecomposeKConfig c = cuda::ChooseStagedConfig(p, SmCount());
          c.pdl_cooperative = variant % 2 == 1;
          // TMA copies (sm_90+) read the hidden states through the async proxy: the case
          // that needs a proxy fence after the wait (tma_device.cuh).
          c.staged_cp_async = variant / 2 % 2 == 1;
          c.staged_router_pairs = variant / 4 == 1;  // the pairs: an instance of their own
          configs.push_back(c);
        }
      }
      // From 64 tokens also routing after the staged-tile GEMM (two launches): the GEMM reads
      // the hidden states after its wait, the epilogue kernel the logits after its own.
      if (tokens >= 64) {
        for (const cuda::DecomposeKConfig& c :
             cuda::AutotuneCandidates(p, cuda::CurrentDecomposeKDevice(SmCount()), true))
          if (c.route_after_gemm) configs.push_back(c);
      }
      // The heuristic's plan (Mixtral on sm_90+: a cluster whose rank 0 routes), and that
      // kernel at 4 and 8 splits (CanRouteDecomposeK skips clusters before sm_90).
      configs.push_back(plan->config());
      if (in.spec.experts <= 32) {
        for (int cluster : {4, 8})
          configs.push_back({cuda::Mainloop::kTensorCore, /*token_tiles=*/1, cluster, cluster});
      }
      for (size_t rep = 0; rep < 2 * configs.size(); ++rep) {  // each config twice
        const cuda::DecomposeKConfig& config = configs[rep % configs.size()];
        if (!cuda::CanRouteDecomposeK(p, config).ok()) continue;
        auto ws = DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, config)).value();
        ASSERT_CUDA(cuda::ResetDecomposeKWorkspace(ws.get(), p, config, stream.get()));
        Poison(d);
        FillAndWait(const_cast<void*>(d.args.hidden), 0x7f, in.hidden.size());
        ASSERT_CUDA(LaunchSlowProducer(const_cast<void*>(d.args.hidden), staged.get(),
                                       in.hidden.size(), /*delay_ns=*/20000, stream.get()));
        ASSERT_CUDA(cuda::LaunchDecomposeKRouter(p, d.args, config, ws.get(), ws.bytes(),
                                                 stream.get(),
                                                 /*pdl=*/true));
        ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
        HostOut h = Download(d, true);
        EXPECT_EQ(
            CompareWithReference(in.spec, in.Reference(), h.ids.data(), h.weights.data(), 1e-3), "")
            << Describe(in, seed) << " rep=" << rep << " splits=" << config.k_splits
            << " config polled=" << config.polled << " pdl_cooperative=" << config.pdl_cooperative
            << " pdl_one_cta_per_sm=" << config.pdl_one_cta_per_sm
            << " dedicated_routers=" << config.dedicated_routers << " staged=" << config.staged
            << " staged_cp_async=" << config.staged_cp_async
            << " staged_router_pairs=" << config.staged_router_pairs
            << " route_after_gemm=" << config.route_after_gemm << " gemm_tile=" << config.gemm_tile
            << "x" << config.gemm_tile_m << " cluster=" << config.cluster;
      }
    }
  }
}

// The server's sequence: the stage-in kernel reads hidden states from mapped page-locked
// memory and the router, launched behind it under PDL, must route on them, not on what
// the device buffer held before (poisoned with huge values each time), eager and as a
// captured graph replayed with new hidden states written into the same host buffer.
TEST(GpuStageIn, RouterUnderPdlRoutesTheStagedHiddenStates) {
  SKIP_WITHOUT_GPU();
  for (const char* family : {"deepseek_v3", "qwen3_30b"}) {
    for (int tokens : {1, 16, 256}) {
      RouterSpec spec = FindPreset(family).value().spec;
      RouteProblem p{spec, tokens, DType::kBF16, DType::kBF16};
      auto plan = cuda::CudaRouterPlan::Create(p, SmCount()).value();
      const uint64_t seed0 = FreshSeed();
      RouterInputs in = MakeRouterInputs(spec, tokens, DType::kBF16, DType::kBF16, seed0);
      DeviceCase d = MakeDeviceCase(in, false);
      auto pinned = PinnedBuffer::Allocate(in.hidden.size()).value();
      void* mapped = nullptr;
      ASSERT_CUDA(cudaHostGetDevicePointer(&mapped, pinned.get(), 0));
      auto stream = MakeStream().value();
      // Device-clock stamps around the pair, as the server times it: start by the stage-in
      // kernel, end by the completion-stamp kernel behind the router.
      auto stamps = PinnedBuffer::Allocate(2 * sizeof(unsigned long long)).value();
      void* mapped_stamps = nullptr;
      ASSERT_CUDA(cudaHostGetDevicePointer(&mapped_stamps, stamps.get(), 0));
      auto* ns = static_cast<unsigned long long*>(mapped_stamps);
      auto enqueue = [&] {
        cudaError_t e = cuda::LaunchStageIn(mapped, const_cast<void*>(d.args.hidden),
                                            in.hidden.size(), stream.get(), ns);
        if (e == cudaSuccess) e = plan->Launch(d.args, stream.get(), /*pdl=*/true);
        if (e == cudaSuccess) e = cuda::LaunchCompletionStamp(ns + 1, stream.get());
        return e;
      };
      const CudaGraphExec exec = CaptureGraph(stream.get(), enqueue);
      ASSERT_TRUE(exec);
      for (int rep = 0; rep < 4; ++rep) {
        // Same weights, fresh hidden states each time (the reference follows them).
        const uint64_t seed = rep == 0 ? seed0 : FreshSeed();
        RouterInputs next = MakeRouterInputs(spec, tokens, DType::kBF16, DType::kBF16, seed);
        in.hidden = next.hidden;
        in.hidden_f = next.hidden_f;
        std::memcpy(pinned.get(), in.hidden.data(), in.hidden.size());
        Poison(d);
        FillAndWait(const_cast<void*>(d.args.hidden), 0x7f, in.hidden.size());
        std::memset(stamps.get(), 0, 2 * sizeof(unsigned long long));
        if (rep % 2 == 0) {
          ASSERT_CUDA(enqueue());
        } else {
          ASSERT_CUDA(cudaGraphLaunch(exec.get(), stream.get()));
        }
        ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
        const auto* host_ns = static_cast<const volatile unsigned long long*>(stamps.get());
        EXPECT_GT(host_ns[0], 0u);
        EXPECT_GT(host_ns[1], host_ns[0]) << "the end stamp comes after the router";
        EXPECT_LT(host_ns[1] - host_ns[0], 1'000'000'000ull) << "under a second";
        std::vector<uint8_t> staged(in.hidden.size());
        ASSERT_CUDA(
            cudaMemcpy(staged.data(), d.args.hidden, staged.size(), cudaMemcpyDeviceToHost));
        EXPECT_EQ(staged, in.hidden) << family << " tokens=" << tokens << " rep=" << rep;
        ExpectMatchesReference(in, d, false,
                               absl::StrCat(Describe(in, seed), " weights seed=", seed0,
                                            " rep=", rep, rep % 2 ? " graph" : " eager"));
      }
    }
  }
  // Ragged or misaligned copies are refused, not truncated.
  auto dst = DeviceBuffer::Allocate(64).value();
  EXPECT_EQ(cuda::LaunchStageIn(dst.get(), dst.get(), 24, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::LaunchStageIn(dst.as<char>() + 8, dst.get(), 16, nullptr), cudaErrorInvalidValue);
}

// One captured LaunchStageInFrom of `rows` rows of `row_bytes` reading its source from
// cells, with its row marks and destination: what the two cells tests replay.
struct CellsStageIn {
  CellsStageIn(int rows, size_t row_bytes)
      : rows(rows),
        bytes(rows * row_bytes),
        cells(PinnedBuffer::Allocate(cuda::kStageSourceCellsBytes).value()),
        flags(PinnedBuffer::Allocate(rows).value()),
        dst(DeviceBuffer::Allocate(bytes).value()),
        stream(MakeStream().value()) {
    void* mapped_flags = nullptr;
    if (cudaHostGetDevicePointer(&mapped_cells, cells.get(), 0) != cudaSuccess ||
        cudaHostGetDevicePointer(&mapped_flags, flags.get(), 0) != cudaSuccess)
      return;
    const cuda::FiniteCheck check{static_cast<uint8_t*>(mapped_flags), row_bytes, DType::kBF16};
    exec = CaptureGraph(stream.get(), [&] {
      return cuda::LaunchStageInFrom(mapped_cells, dst.get(), bytes, stream.get(), nullptr, check);
    });
  }
  // Clears the row marks and poisons the destination; then the graph may be launched.
  void Reset() {
    std::memset(flags.get(), 0, rows);
    FillAndWait(dst.get(), 0x7f, bytes);
  }
  std::vector<uint8_t> Copied() {
    std::vector<uint8_t> copied(bytes);
    EXPECT_EQ(cudaMemcpy(copied.data(), dst.get(), bytes, cudaMemcpyDeviceToHost), cudaSuccess);
    return copied;
  }
  const int rows;
  const size_t bytes;
  PinnedBuffer cells, flags;
  DeviceBuffer dst;
  CudaStream stream;
  void* mapped_cells = nullptr;
  CudaGraphExec exec;  // empty when set-up failed
};

// The stage-in that takes its source from cells (the server's per-request input blocks):
// one captured graph, replayed after the host names a different source each time, copies
// exactly the named buffer, with that buffer's non-finite rows marked. At 1 token, at 16
// (56 blocks) and at 40 (more blocks than cells: the grid is capped and strides). Missing
// cells are refused.
TEST(GpuStageIn, StageInFromCellsCopiesWhicheverBufferTheHostNames) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(FreshSeed());
  for (const int rows : {1, 16, 40}) {
    constexpr int kSources = 3, kHidden = 7168;
    const size_t row_bytes = size_t(kHidden) * 2, bytes = rows * row_bytes;
    auto region = PinnedBuffer::Allocate(kSources * bytes).value();
    std::vector<std::vector<uint8_t>> want(kSources, std::vector<uint8_t>(bytes));
    for (int i = 0; i < kSources; ++i) {
      for (size_t e = 0; e < bytes / 2; ++e)
        StoreFromFloat(want[i].data(), DType::kBF16, e, float(int(rng() % 2001) - 1000) / 64);
      // A NaN in row i of source i only.
      StoreFromFloat(want[i].data(), DType::kBF16, size_t(i % rows) * kHidden + 5,
                     std::numeric_limits<float>::quiet_NaN());
      std::memcpy(region.as<uint8_t>() + i * bytes, want[i].data(), bytes);
    }
    void* mapped_region = nullptr;
    ASSERT_CUDA(cudaHostGetDevicePointer(&mapped_region, region.get(), 0));
    CellsStageIn stage(rows, row_bytes);
    ASSERT_TRUE(stage.exec);
    for (int rep = 0; rep < 12; ++rep) {
      const int i = int(rng() % kSources);
      cuda::SetStageInSource(stage.cells.get(), static_cast<const char*>(mapped_region) + i * bytes,
                             bytes);
      stage.Reset();
      ASSERT_CUDA(cudaGraphLaunch(stage.exec.get(), stage.stream.get()));
      ASSERT_CUDA(cudaStreamSynchronize(stage.stream.get()));
      EXPECT_TRUE(stage.Copied() == want[i])
          << "rows " << rows << " rep " << rep << " source " << i;
      for (int r = 0; r < rows; ++r)
        EXPECT_EQ(stage.flags.as<uint8_t>()[r], r == i % rows ? 1 : 0)
            << "rows " << rows << " rep " << rep << " row " << r;
    }
  }
  auto dst = DeviceBuffer::Allocate(16).value();
  EXPECT_EQ(cuda::LaunchStageInFrom(nullptr, dst.get(), 16, nullptr), cudaErrorInvalidValue);
}

// The stage-in launched before its source is written (the server's deferred copy): the host
// poisons an input block of a pool with chunk marks, opens a fill of it (BlockFill: a
// generation new to every fill, each chunk marked once whole, as the server marks them),
// launches, then writes the block through the fill in pieces with pauses; the copy must hold
// the written bytes, not the poison, and the non-finite row be marked. The device may wait on
// the first chunks only (the rest written before the fill). At 1 token, 16 (56 chunks) and 40
// (more chunks than cells: blocks wait on several).
TEST(GpuStageIn, StageInWaitsForEachChunkMarkWhileTheHostWrites) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(FreshSeed());
  for (const int rows : {1, 16, 40}) {
    constexpr int kHidden = 7168;
    const size_t row_bytes = size_t(kHidden) * 2, bytes = rows * row_bytes;
    const size_t chunks = (bytes + cuda::kStageBlockBytes - 1) / cuda::kStageBlockBytes;
    const size_t marks_bytes = InputPool::marks_bytes_per_block(bytes);
    auto region = PinnedBuffer::Allocate(bytes).value();
    auto marks = PinnedBuffer::Allocate(marks_bytes).value();
    std::memset(marks.get(), 0, marks_bytes);
    void *mapped_region = nullptr, *mapped_marks = nullptr;
    ASSERT_CUDA(cudaHostGetDevicePointer(&mapped_region, region.get(), 0));
    ASSERT_CUDA(cudaHostGetDevicePointer(&mapped_marks, marks.get(), 0));
    InputPool pool(region.as<char>(), mapped_region, bytes, /*blocks=*/1);
    pool.SetChunkMarks(marks.as<char>(), mapped_marks);
    CellsStageIn stage(rows, row_bytes);
    ASSERT_TRUE(stage.exec);
    for (int rep = 0; rep < 6; ++rep) {
      std::vector<uint8_t> want(bytes);
      for (size_t e = 0; e < bytes / 2; ++e)
        StoreFromFloat(want.data(), DType::kBF16, e, float(int(rng() % 2001) - 1000) / 64);
      const int bad_row = int(rng() % rows);
      StoreFromFloat(want.data(), DType::kBF16, size_t(bad_row) * kHidden + 11,
                     std::numeric_limits<float>::infinity());
      HiddenBytes block;
      ASSERT_TRUE(pool.TryAcquire(bytes, &block));
      // Waited-for chunks: all of them, or the first ones with the rest written already.
      const size_t waited = rep % 2 == 0 ? chunks : 1 + rng() % chunks;
      const size_t early = std::min(bytes, waited * cuda::kStageBlockBytes);
      std::memset(block.mutable_data(), 0xee, early);  // poison where the copy must wait
      std::memcpy(block.mutable_data() + early, want.data() + early, bytes - early);
      BlockFill fill = block.BeginFill();
      const ChunkMarks fill_marks = block.marks();
      ASSERT_EQ(fill_marks.chunks, chunks);
      cuda::StageChunkMarks m;
      m.device_marks = fill_marks.device_marks;
      m.generation = fill_marks.generation;
      m.chunks = uint32_t(waited);
      cuda::SetStageInSource(stage.cells.get(), block.device_view(), bytes, m);
      stage.Reset();
      ASSERT_CUDA(cudaGraphLaunch(stage.exec.get(), stage.stream.get()));
      // Three pieces cut anywhere in the waited part; the fill marks each chunk once whole.
      size_t a = rng() % early, b = rng() % early;
      if (a > b) std::swap(a, b);
      for (auto [from, to] : {std::pair{size_t(0), a}, {a, b}, {b, early}}) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        fill.Write(want.data() + from, to - from);
      }
      fill.Finish();  // marks the chunks written before the fill
      ASSERT_CUDA(cudaStreamSynchronize(stage.stream.get()));
      EXPECT_TRUE(stage.Copied() == want)
          << "rows " << rows << " rep " << rep << " waited " << waited;
      for (int r = 0; r < rows; ++r)
        EXPECT_EQ(stage.flags.as<uint8_t>()[r], r == bad_row ? 1 : 0)
            << "rows " << rows << " row " << r;
    }
    // Back to no marks: the same graph copies at once.
    std::memset(region.get(), 0x11, bytes);
    cuda::SetStageInSource(stage.cells.get(), mapped_region, bytes);
    stage.Reset();
    ASSERT_CUDA(cudaGraphLaunch(stage.exec.get(), stage.stream.get()));
    ASSERT_CUDA(cudaStreamSynchronize(stage.stream.get()));
    EXPECT_TRUE(stage.Copied() == std::vector<uint8_t>(bytes, 0x11)) << "rows " << rows;
  }
}

// The device-side finite check, through both ways in: the stage-in kernel (rows read from
// mapped host memory) and the check kernel (rows already in device memory). Finite values
// chosen to trip a wrong mask (largest finite, subnormals, negative zero) fill every row;
// NaN, +inf and -inf are planted at a row's first and last element and in the upper and
// lower half of a 32-bit word. Exactly the planted rows are marked; the copy is exact.
TEST(GpuStageIn, MarksExactlyTheRowsThatAreNotFinite) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(FreshSeed());
  const float nasty[] = {0.0f, -0.0f, 1e-40f, -1e-40f, 65504.0f, -65504.0f, 3.0e38f, -3.0e38f};
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  for (DType dt : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    const int rows = 37, hidden = 2880;
    const size_t row_bytes = size_t(hidden) * DTypeSize(dt), bytes = rows * row_bytes;
    std::vector<uint8_t> host(bytes);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < hidden; ++i) {
        float v = nasty[rng() % 8];
        if (dt == DType::kFP16 && std::fabs(v) > 65504.0f) v = v > 0 ? 65504.0f : -65504.0f;
        StoreFromFloat(host.data(), dt, size_t(r) * hidden + i, v);
      }
    std::vector<uint8_t> want(rows, 0);
    const int planted[][2] = {{0, 0}, {3, hidden - 1}, {10, 1}, {11, 2}, {20, 1437}, {36, 0}};
    for (const auto& at : planted) {
      StoreFromFloat(host.data(), dt, size_t(at[0]) * hidden + at[1], bad[rng() % 3]);
      want[at[0]] = 1;
    }
    auto pinned = PinnedBuffer::Allocate(bytes).value();
    std::memcpy(pinned.get(), host.data(), bytes);
    void* mapped = nullptr;
    ASSERT_CUDA(cudaHostGetDevicePointer(&mapped, pinned.get(), 0));
    auto dst = DeviceBuffer::Allocate(bytes).value();
    auto flags = PinnedBuffer::Allocate(rows).value();
    void* mapped_flags = nullptr;
    ASSERT_CUDA(cudaHostGetDevicePointer(&mapped_flags, flags.get(), 0));
    const cuda::FiniteCheck check{static_cast<uint8_t*>(mapped_flags), row_bytes, dt};
    for (bool staged : {true, false}) {
      std::memset(flags.get(), 0, rows);
      ASSERT_CUDA(cudaMemset(dst.get(), 0x7f, bytes));
      if (staged) {
        ASSERT_CUDA(cuda::LaunchStageIn(mapped, dst.get(), bytes, nullptr, nullptr, check));
      } else {
        ASSERT_CUDA(cudaMemcpy(dst.get(), host.data(), bytes, cudaMemcpyHostToDevice));
        ASSERT_CUDA(cuda::LaunchCheckFiniteRows(dst.get(), bytes, check, nullptr));
      }
      ASSERT_CUDA(cudaDeviceSynchronize());
      std::vector<uint8_t> got(static_cast<uint8_t*>(flags.get()),
                               static_cast<uint8_t*>(flags.get()) + rows);
      EXPECT_EQ(got, want) << DTypeName(dt) << (staged ? " stage-in" : " check kernel");
      std::vector<uint8_t> copied(bytes);
      ASSERT_CUDA(cudaMemcpy(copied.data(), dst.get(), bytes, cudaMemcpyDeviceToHost));
      EXPECT_EQ(copied, host) << DTypeName(dt);
    }
  }
  auto dev = DeviceBuffer::Allocate(64).value();
  uint8_t* flag = nullptr;
  EXPECT_EQ(cuda::LaunchCheckFiniteRows(dev.get(), 64, {flag, 24, DType::kBF16}, nullptr),
            cudaErrorInvalidValue);  // no flags
  EXPECT_EQ(
      cuda::LaunchCheckFiniteRows(dev.get(), 64, {dev.as<uint8_t>(), 24, DType::kBF16}, nullptr),
      cudaErrorInvalidValue);  // rows not whole vectors
}

// Hidden states are checked on the device as they pass, so a row with a NaN or an infinity
// reaches the router kernel. Routing is per token: every other row must still route exactly
// as the reference says, and the kernel must finish cleanly (no hang, no fault).
TEST(GpuFused, NonFiniteRowsSpoilOnlyTheirOwnOutputs) {
  SKIP_WITHOUT_GPU();
  for (const auto& preset : FamilyPresets()) {
    // 256: DeepSeek-V3 and Kimi K2 route after the staged-tile GEMM there.
    for (int tokens : {1, 5, 16, 100, 256}) {
      const uint64_t seed = FreshSeed();
      RouterInputs in = MakeRouterInputs(preset.spec, tokens, DType::kBF16, DType::kBF16, seed);
      const auto ref = in.Reference();
      std::vector<uint8_t> poisoned = in.hidden;
      std::vector<bool> bad_row(tokens, false);
      for (int t = 0; t < tokens; t += 3) {
        bad_row[t] = true;
        const float v = t % 2 ? std::numeric_limits<float>::infinity()
                              : std::numeric_limits<float>::quiet_NaN();
        StoreFromFloat(poisoned.data(), DType::kBF16, size_t(t) * in.spec.hidden + t % 7, v);
      }
      RouteProblem p{in.spec, tokens, DType::kBF16, DType::kBF16};
      auto plan = cuda::CudaRouterPlan::Create(p, SmCount()).value();
      DeviceCase d = MakeDeviceCase(in, false);
      ASSERT_CUDA(cudaMemcpy(const_cast<void*>(d.args.hidden), poisoned.data(), poisoned.size(),
                             cudaMemcpyHostToDevice));
      Poison(d);
      ASSERT_CUDA(plan->Launch(d.args, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      HostOut h = Download(d, false);
      auto good_ref = ref;
      good_ref.clear();
      std::vector<int32_t> good_ids;
      std::vector<float> good_weights;
      const int k = in.spec.top_k;
      for (int t = 0; t < tokens; ++t) {
        if (bad_row[t]) continue;
        good_ref.push_back(ref[t]);
        good_ids.insert(good_ids.end(), h.ids.begin() + t * k, h.ids.begin() + (t + 1) * k);
        good_weights.insert(good_weights.end(), h.weights.begin() + t * k,
                            h.weights.begin() + (t + 1) * k);
      }
      EXPECT_EQ(CompareWithReference(in.spec, good_ref, good_ids.data(), good_weights.data(), 1e-3),
                "")
          << Describe(in, seed) << " config polled=" << plan->config().polled
          << " route_after_gemm=" << plan->config().route_after_gemm;
    }
  }
}

// A GEMM shape of the tests below.
struct GemmCase {
  int m, n, k;
  DType dt;
};

// `elements` standard-normal values stored as `dt`: a GEMM operand.
std::vector<uint8_t> RandomOperand(size_t elements, DType dt, std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  std::vector<uint8_t> v(elements * DTypeSize(dt));
  for (size_t i = 0; i < elements; ++i) StoreFromFloat(v.data(), dt, i, normal(rng));
  return v;
}

// C = A·Bᵀ + bias in double, from the operands as stored (row-major [m, k] and [n, k]).
std::vector<double> DoubleReferenceGemm(const GemmCase& c, const std::vector<uint8_t>& a,
                                        const std::vector<uint8_t>& b,
                                        const std::vector<float>& bias) {
  std::vector<double> ref(size_t(c.m) * c.n);
  for (int i = 0; i < c.m; ++i)
    for (int j = 0; j < c.n; ++j) {
      double r = bias[j];
      for (int k = 0; k < c.k; ++k)
        r += double(LoadAsFloat(a.data(), c.dt, size_t(i) * c.k + k)) *
             double(LoadAsFloat(b.data(), c.dt, size_t(j) * c.k + k));
      ref[size_t(i) * c.n + j] = r;
    }
  return ref;
}

// C's relative L2 error against a double reference of the same layout; +inf where an
// element is not finite (NaN never passes), and `where` names the first such element.
double RelativeError(const std::vector<float>& got, const std::vector<double>& ref,
                     const std::string& where) {
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) {
      ADD_FAILURE() << where << ": element " << i << " is " << got[i];
      return INFINITY;
    }
    err2 += (got[i] - ref[i]) * (got[i] - ref[i]);
    ref2 += ref[i] * ref[i];
  }
  return std::sqrt(err2 / ref2);
}

// Every case both ways: the best Decompose-K config (the heuristic's, where it does not hand
// the shape to cuBLAS) and cuBLASLt (GemmTakesCublas' hand-off, forced on every shape): C
// within 1e-5 of a double reference, bit-identical across two launches.
TEST(GpuGemm, MatchesDoubleReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(FreshSeed());
  std::normal_distribution<float> normal;
  const GemmCase cases[] = {{16, 16, 8192, DType::kBF16},
                            {32, 32, 32768, DType::kBF16},
                            {64, 64, 65536, DType::kFP16},
                            {128, 128, 131072, DType::kBF16},
                            {3, 100, 1000, DType::kFP32},
                            {1, 1, 8, DType::kBF16},
                            {300, 700, 2048, DType::kBF16},
                            // Staged-tile kernel: ragged 64-tiles with many splits; one split
                            // (more tiles than SMs) with a part-filled last K stage.
                            {40, 200, 4096, DType::kFP16},
                            {256, 4000, 72, DType::kBF16},
                            // fp32 operands past the skinny shapes (cuBLAS's SGEMM, no TF32).
                            {200, 300, 1000, DType::kFP32},
                            // Few-row tiles on sm_90 (16: three ragged output tiles, a
                            // part-filled last K stage; 32: eight tiles of 16 x 256).
                            {12, 40, 65528, DType::kFP16},
                            {16, 256, 65536, DType::kBF16}};
  for (const GemmCase& c : cases) {
    const std::vector<uint8_t> a = RandomOperand(size_t(c.m) * c.k, c.dt, rng),
                               b = RandomOperand(size_t(c.n) * c.k, c.dt, rng);
    std::vector<float> bias(c.n);
    for (float& v : bias) v = normal(rng);
    cuda::GemmProblem p{c.m, c.n, c.k, c.dt};
    ASSERT_TRUE(cuda::CanGemmDecomposeK(p).ok());
    const cuda::DecomposeKConfig heuristic = cuda::ChooseGemmConfig(p, SmCount());
    const cuda::DecomposeKConfig decompose_k =
        cuda::ChooseGemmConfig(p, SmCount(), /*allow_cublas=*/false);
    cuda::DecomposeKConfig cublas;
    cublas.gemm_cublas = true;
    EXPECT_EQ(heuristic.gemm_cublas, cuda::GemmTakesCublas(p));
    EXPECT_FALSE(decompose_k.gemm_cublas);
    const std::vector<double> reference = DoubleReferenceGemm(c, a, b, bias);
    auto da = Upload(a), db = Upload(b), dbias = Upload(bias);
    auto dc = DeviceBuffer::Allocate(size_t(c.m) * c.n * 4).value();
    for (const cuda::DecomposeKConfig& cfg : {decompose_k, cublas}) {
      const std::string what = absl::StrCat(c.m, "x", c.n, "x", c.k, " S=", cfg.k_splits,
                                            " tile=", cfg.gemm_tile, " cublas=", cfg.gemm_cublas);
      auto ws = DeviceBuffer::Allocate(cuda::GemmWorkspaceBytes(p, cfg)).value();
      ASSERT_CUDA(cuda::ResetGemmWorkspace(ws.get(), p, cfg, nullptr));
      // Two launches, outputs poisoned before each: the second shows that the kernel left its
      // arrival counters (both levels past 24 splits) reset.
      std::vector<float> got(size_t(c.m) * c.n), first(got.size());
      for (int launch = 0; launch < 2; ++launch) {
        ASSERT_CUDA(cudaMemset(dc.get(), 0xff, dc.bytes()));
        ASSERT_CUDA(cuda::LaunchGemm(p, da.get(), db.get(), dbias.as<float>(), dc.as<float>(), cfg,
                                     ws.get(), ws.bytes(), nullptr));
        std::swap(first, got);
        ASSERT_CUDA(cudaMemcpy(got.data(), dc.get(), got.size() * 4, cudaMemcpyDeviceToHost));
      }
      // Deterministic: a fixed summation order (cuBLAS: one cached algorithm), so
      // bit-identical launches.
      ASSERT_EQ(std::memcmp(first.data(), got.data(), got.size() * 4), 0) << what;
      // The staged tiles' two ways of loading a stage (TMA on sm_90+, cp.async) feed the
      // same MMAs in the same order: the same bits. (Few-row tiles have no cp.async form:
      // without the TMA they run 64-tiles, another order of sums, which
      // EveryStagedTileMatchesTheReference holds to the reference's tolerance.)
      if (cfg.gemm_tile >= 64) {
        EXPECT_EQ(cfg.gemm_tma, cuda::TileGemmTmaSupported());
        auto other = cfg;
        other.gemm_tma = !cfg.gemm_tma;
        std::vector<float> again(got.size());
        ASSERT_CUDA(cudaMemset(dc.get(), 0xff, dc.bytes()));
        ASSERT_CUDA(cuda::LaunchGemm(p, da.get(), db.get(), dbias.as<float>(), dc.as<float>(),
                                     other, ws.get(), ws.bytes(), nullptr));
        ASSERT_CUDA(cudaMemcpy(again.data(), dc.get(), again.size() * 4, cudaMemcpyDeviceToHost));
        EXPECT_EQ(std::memcmp(again.data(), got.data(), got.size() * 4), 0)
            << what << " tma=" << other.gemm_tma;
      }
      EXPECT_LT(RelativeError(got, reference, what), 1e-5) << what;
    }
  }
  EXPECT_FALSE(cuda::CanGemmDecomposeK({1, 1, 131080, DType::kBF16}).ok());
  EXPECT_FALSE(cuda::CanGemmDecomposeK({1, 1, 12, DType::kBF16}).ok());
}

// Two staged-tile GEMMs whose grids each fill the GPU (128 x 128 tiles, one CTA per SM,
// splits that wait for each other) on two streams at once: the cooperative launch keeps
// either grid from holding half the SMs while waiting for the other half. Both finish, with
// the results of one GEMM alone. The square 128-tile is forced: the heuristic's 64 x 128
// tiles fit two a SM, so two of their grids could share the GPU without the launch's help.
TEST(GpuGemm, ConcurrentGridWideGemmsOnTwoStreamsFinish) {
  SKIP_WITHOUT_GPU();
  const cuda::GemmProblem p{128, 128, 65536, DType::kBF16};
  auto cfg = cuda::ChooseGemmConfig(p, SmCount());
  ASSERT_EQ(cfg.gemm_tile, 128);
  cfg.gemm_tile_m = 0;
  cfg.k_splits = cuda::TileGemmSplits(p.m, p.n, p.k, cfg.gemm_tile, SmCount());
  ASSERT_GT(cfg.k_splits, SmCount() / 2);
  std::mt19937_64 rng(FreshSeed());
  auto da = Upload(RandomOperand(size_t(p.m) * p.k, p.dtype, rng)),
       db = Upload(RandomOperand(size_t(p.n) * p.k, p.dtype, rng));
  const size_t c_bytes = size_t(p.m) * p.n * 4;
  std::vector<DeviceBuffer> ws, dc;
  std::vector<CudaStream> streams;
  for (int i = 0; i < 3; ++i) {  // [2]: the lone reference run
    ws.push_back(DeviceBuffer::Allocate(cuda::GemmWorkspaceBytes(p, cfg)).value());
    ASSERT_CUDA(cuda::ResetGemmWorkspace(ws.back().get(), p, cfg, nullptr));
    dc.push_back(DeviceBuffer::Allocate(c_bytes).value());
    ASSERT_CUDA(cudaMemset(dc.back().get(), 0xff, c_bytes));
    streams.push_back(MakeStream().value());
  }
  ASSERT_CUDA(cuda::LaunchDecomposeKGemm(p, da.get(), db.get(), nullptr, dc[2].as<float>(), cfg,
                                         ws[2].get(), streams[2].get()));
  ASSERT_CUDA(cudaDeviceSynchronize());
  for (int rep = 0; rep < 10; ++rep)
    for (int s = 0; s < 2; ++s)
      ASSERT_CUDA(cuda::LaunchDecomposeKGemm(p, da.get(), db.get(), nullptr, dc[s].as<float>(), cfg,
                                             ws[s].get(), streams[s].get()));
  ASSERT_CUDA(cudaDeviceSynchronize());
  std::vector<float> reference(c_bytes / 4), got(c_bytes / 4);
  ASSERT_CUDA(cudaMemcpy(reference.data(), dc[2].get(), c_bytes, cudaMemcpyDeviceToHost));
  for (const float v : reference) ASSERT_TRUE(std::isfinite(v));
  for (int s = 0; s < 2; ++s) {
    ASSERT_CUDA(cudaMemcpy(got.data(), dc[s].get(), c_bytes, cudaMemcpyDeviceToHost));
    EXPECT_EQ(std::memcmp(got.data(), reference.data(), c_bytes), 0) << "stream " << s;
  }
}

// Under PDL (LaunchDecomposeKGemm's `pdl`, moe_gemm_ex's MOE_GEMM_PDL) the GEMM reads B
// before griddepcontrol.wait and A after it, and lets the next launch in before it reduces.
// Every path (staged 64 x 128 and 64-tiles, with a split's stages all loaded before the wait
// or only the first ones; the few-row 16- and 32-tiles; one split; the router kernels'
// tensor-core and FMA mainloops; the square 128-tiles in EveryStagedTileMatchesTheReference)
// must give the plain launch's bits:
// - behind a slow kernel that writes A (poisoned with huge values before): reading A
//   before the wait would see the poison;
// - back to back on one workspace and stream, alternating two operand sets, eager and as
//   a replayed graph: a launch reducing while the next one streams must not mix them up.
TEST(GpuGemm, PdlLaunchesGiveThePlainLaunchBits) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(FreshSeed());
  std::normal_distribution<float> normal;
  // 64 x 64 x 32768: 64-tiles of 4 stages a split, all before the wait; 64 x 64 x 65536: 8,
  // 2 of them before. 32 x 32 x 65536: 32-tiles, 4 of a split's 8 stages before.
  const GemmCase cases[] = {{128, 128, 131072, DType::kBF16}, {128, 128, 32768, DType::kBF16},
                            {64, 64, 65536, DType::kFP16},    {64, 64, 32768, DType::kBF16},
                            {40, 200, 4096, DType::kFP16},    {256, 4000, 72, DType::kBF16},
                            {16, 16, 8192, DType::kBF16},     {32, 32, 65536, DType::kBF16},
                            {3, 100, 1000, DType::kFP32}};
  auto stream = MakeStream().value();
  for (const GemmCase& c : cases) {
    const std::string where = absl::StrCat(c.m, "x", c.n, "x", c.k);
    const cuda::GemmProblem p{c.m, c.n, c.k, c.dt};
    const size_t a_bytes = size_t(c.m) * c.k * DTypeSize(c.dt);
    const size_t c_bytes = size_t(c.m) * c.n * 4;
    std::vector<DeviceBuffer> da, db;
    for (int set = 0; set < 2; ++set) {
      da.push_back(Upload(RandomOperand(size_t(c.m) * c.k, c.dt, rng)));
      db.push_back(Upload(RandomOperand(size_t(c.n) * c.k, c.dt, rng)));
    }
    std::vector<float> bias(c.n);
    for (float& v : bias) v = normal(rng);
    auto dbias = Upload(bias);
    // The Decompose-K paths; cuBLAS (which launches plainly) has GpuCApi's tests.
    const auto cfg = cuda::ChooseGemmConfig(p, SmCount(), /*allow_cublas=*/false);
    const std::string what = absl::StrCat(where, " tile=", cfg.gemm_tile, " S=", cfg.k_splits);
    auto ws = DeviceBuffer::Allocate(cuda::GemmWorkspaceBytes(p, cfg)).value();
    ASSERT_CUDA(cuda::ResetGemmWorkspace(ws.get(), p, cfg, stream.get()));
    auto launch = [&](int set, void* out, bool pdl) {
      return cuda::LaunchDecomposeKGemm(p, da[set].get(), db[set].get(), dbias.as<float>(),
                                        static_cast<float*>(out), cfg, ws.get(), stream.get(), pdl);
    };
    // The plain launches' bits, one per operand set.
    std::vector<std::vector<float>> want(2, std::vector<float>(c_bytes / 4));
    for (int set = 0; set < 2; ++set) {
      auto out = DeviceBuffer::Allocate(c_bytes).value();
      FillAndWait(out.get(), 0xff, c_bytes);
      ASSERT_CUDA(launch(set, out.get(), false));
      ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
      ASSERT_CUDA(cudaMemcpy(want[set].data(), out.get(), c_bytes, cudaMemcpyDeviceToHost));
      for (const float v : want[set]) ASSERT_TRUE(std::isfinite(v)) << what;
    }
    auto expect_bits = [&](const DeviceBuffer& out, int set, const std::string& how) {
      std::vector<float> got(c_bytes / 4);
      ASSERT_CUDA(cudaMemcpy(got.data(), out.get(), c_bytes, cudaMemcpyDeviceToHost));
      EXPECT_EQ(std::memcmp(got.data(), want[set].data(), c_bytes), 0) << what << " " << how;
    };
    // Behind a slow producer of A.
    {
      auto staged = DeviceBuffer::Allocate(a_bytes).value();
      ASSERT_CUDA(cudaMemcpy(staged.get(), da[0].get(), a_bytes, cudaMemcpyDeviceToDevice));
      FillAndWait(da[0].get(), 0x7f, a_bytes);
      auto out = DeviceBuffer::Allocate(c_bytes).value();
      FillAndWait(out.get(), 0xff, c_bytes);
      ASSERT_CUDA(
          LaunchSlowProducer(da[0].get(), staged.get(), a_bytes, /*delay_ns=*/20000, stream.get()));
      ASSERT_CUDA(launch(0, out.get(), true));
      ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
      expect_bits(out, 0, "behind a slow producer of A");
    }
    // Back to back, eager, then the same sequence captured and replayed twice.
    constexpr int kChain = 6;
    std::vector<DeviceBuffer> outs;
    for (int i = 0; i < kChain; ++i) outs.push_back(DeviceBuffer::Allocate(c_bytes).value());
    auto poison_all = [&] {
      for (auto& o : outs) FillAndWait(o.get(), 0xff, c_bytes);
    };
    auto record = [&]() -> cudaError_t {
      for (int i = 0; i < kChain; ++i) {
        const cudaError_t err = launch(i % 2, outs[i].get(), true);
        if (err != cudaSuccess) return err;
      }
      return cudaSuccess;
    };
    poison_all();
    ASSERT_CUDA(record());
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    for (int i = 0; i < kChain; ++i) expect_bits(outs[i], i % 2, absl::StrCat("eager ", i));
    CudaGraphExec exec = CaptureGraph(stream.get(), record);
    ASSERT_TRUE(exec.get() != nullptr) << what;
    for (int replay = 0; replay < 2; ++replay) {
      poison_all();
      ASSERT_CUDA(cudaGraphLaunch(exec.get(), stream.get()));
      ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
      for (int i = 0; i < kChain; ++i)
        expect_bits(outs[i], i % 2, absl::StrCat("graph replay ", replay, " launch ", i));
    }
  }
}

// Every staged tile the kernels have (64 x 64, 128 x 128, 64 rows of A by 128 of B, and the
// few-row 16 x 16 and 32 x 32), forced on each shape whatever the heuristic would pick,
// ragged edges included: C within 1e-5 of a double reference, bit-identical across two
// launches and under PDL behind a slow producer of A (the 64 x 128, 64 x 64 and few-row
// tiles launch under PDL: they load B before the wait). TMA and cp.async stages give the
// same bits; a few-row tile without the TMA runs 64-tiles of the same splits (another order
// of sums), within 1e-5 of the reference too.
TEST(GpuGemm, EveryStagedTileMatchesTheReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(FreshSeed());
  std::normal_distribution<float> normal;
  struct Tile {
    int n_rows, m_rows;  // rows of B and of A a CTA tile covers
  };
  // The last three have fewer rows than any tile (the heuristic gives them the router
  // kernels): the TMA boxes and cp.async copies past the operands' rows zero-fill.
  const GemmCase cases[] = {{128, 128, 32768, DType::kBF16},
                            {100, 300, 20000, DType::kFP16},
                            {16, 16, 8192, DType::kBF16},
                            {3, 100, 1000, DType::kFP16},
                            {1, 8, 131072, DType::kBF16}};
  auto stream = MakeStream().value();
  for (const GemmCase& c : cases) {
    const cuda::GemmProblem p{c.m, c.n, c.k, c.dt};
    const std::vector<uint8_t> a = RandomOperand(size_t(c.m) * c.k, c.dt, rng),
                               b = RandomOperand(size_t(c.n) * c.k, c.dt, rng);
    std::vector<float> bias(c.n);
    for (float& v : bias) v = normal(rng);
    const std::vector<double> ref = DoubleReferenceGemm(c, a, b, bias);
    auto da = Upload(a), db = Upload(b), dbias = Upload(bias);
    const size_t a_bytes = a.size(), c_bytes = size_t(c.m) * c.n * 4;
    for (const Tile tile :
         {Tile{64, 64}, Tile{128, 128}, Tile{128, 64}, Tile{16, 16}, Tile{32, 32}}) {
      cuda::DecomposeKConfig cfg;
      cfg.gemm_tma = cuda::TileGemmTmaSupported();
      cfg.gemm_tile = tile.n_rows;
      cfg.gemm_tile_m = tile.m_rows == tile.n_rows ? 0 : tile.m_rows;
      cfg.k_splits = cuda::TileGemmSplits(c.m, c.n, c.k, cfg.gemm_tile, SmCount(), cfg.gemm_tile_m);
      const std::string what = absl::StrCat(c.m, "x", c.n, "x", c.k, " tile=", tile.m_rows, "x",
                                            tile.n_rows, " S=", cfg.k_splits);
      auto ws = DeviceBuffer::Allocate(cuda::GemmWorkspaceBytes(p, cfg)).value();
      ASSERT_CUDA(cuda::ResetGemmWorkspace(ws.get(), p, cfg, stream.get()));
      auto out = DeviceBuffer::Allocate(c_bytes).value();
      auto run = [&](const cuda::DecomposeKConfig& config, bool pdl) {
        std::vector<float> got(c_bytes / 4);
        FillAndWait(out.get(), 0xff, c_bytes);
        EXPECT_EQ(cuda::LaunchDecomposeKGemm(p, da.get(), db.get(), dbias.as<float>(),
                                             out.as<float>(), config, ws.get(), stream.get(), pdl),
                  cudaSuccess)
            << what;
        EXPECT_EQ(cudaStreamSynchronize(stream.get()), cudaSuccess) << what;
        EXPECT_EQ(cudaMemcpy(got.data(), out.get(), c_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
        return got;
      };
      const std::vector<float> first = run(cfg, false);
      EXPECT_LT(RelativeError(first, ref, what), 1e-5) << what;
      EXPECT_EQ(std::memcmp(run(cfg, false).data(), first.data(), c_bytes), 0)
          << what << ": a second launch";
      auto other = cfg;
      other.gemm_tma = !cfg.gemm_tma;
      const std::vector<float> other_got = run(other, false);
      const bool few_row_fallback = tile.n_rows < 64 && cfg.gemm_tma;
      if (few_row_fallback)
        EXPECT_LT(RelativeError(other_got, ref, what + " (64-tile fallback)"), 1e-5)
            << what << ": tma=" << other.gemm_tma;
      else
        EXPECT_EQ(std::memcmp(other_got.data(), first.data(), c_bytes), 0)
            << what << ": tma=" << other.gemm_tma;
      // Under PDL behind a kernel that writes A late (A poisoned until then).
      auto staged = DeviceBuffer::Allocate(a_bytes).value();
      ASSERT_CUDA(cudaMemcpy(staged.get(), da.get(), a_bytes, cudaMemcpyDeviceToDevice));
      FillAndWait(da.get(), 0x7f, a_bytes);
      FillAndWait(out.get(), 0xff, c_bytes);
      ASSERT_CUDA(
          LaunchSlowProducer(da.get(), staged.get(), a_bytes, /*delay_ns=*/20000, stream.get()));
      ASSERT_CUDA(cuda::LaunchDecomposeKGemm(p, da.get(), db.get(), dbias.as<float>(),
                                             out.as<float>(), cfg, ws.get(), stream.get(),
                                             /*pdl=*/true));
      ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
      std::vector<float> got(c_bytes / 4);
      ASSERT_CUDA(cudaMemcpy(got.data(), out.get(), c_bytes, cudaMemcpyDeviceToHost));
      EXPECT_EQ(std::memcmp(got.data(), first.data(), c_bytes), 0)
          << what << ": under PDL behind a slow producer of A";
    }
  }
}

// The C ABI's flag: moe_gemm_ex with MOE_GEMM_PDL, back to back on one workspace, gives
// moe_gemm's bits (64 x 64 x 65536: staged 64-tiles, launched under PDL on sm_90).
TEST(GpuCApi, GemmPdlFlagGivesThePlainBits) {
  SKIP_WITHOUT_GPU();
  const int m = 64, n = 64, k = 65536;
  std::mt19937_64 rng(FreshSeed());
  auto da = Upload(RandomOperand(size_t(m) * k, DType::kBF16, rng)),
       db = Upload(RandomOperand(size_t(n) * k, DType::kBF16, rng));
  const size_t bytes = moe_gemm_workspace_bytes(m, n, k, MOE_BF16);
  ASSERT_GT(bytes, 0u);
  auto ws = DeviceBuffer::Allocate(bytes).value();
  FillAndWait(ws.get(), 0, bytes);
  auto stream = MakeStream().value();
  const size_t c_bytes = size_t(m) * n * 4;
  auto plain = DeviceBuffer::Allocate(c_bytes).value();
  FillAndWait(plain.get(), 0xff, c_bytes);
  ASSERT_EQ(moe_gemm(m, n, k, MOE_BF16, da.get(), db.get(), nullptr, plain.as<float>(), ws.get(),
                     bytes, stream.get()),
            MOE_OK)
      << moe_last_error();
  std::vector<DeviceBuffer> outs;
  for (int i = 0; i < 4; ++i) {
    outs.push_back(DeviceBuffer::Allocate(c_bytes).value());
    FillAndWait(outs.back().get(), 0xff, c_bytes);
  }
  for (auto& o : outs)
    ASSERT_EQ(moe_gemm_ex(m, n, k, MOE_BF16, da.get(), db.get(), nullptr, o.as<float>(), ws.get(),
                          bytes, stream.get(), MOE_GEMM_PDL),
              MOE_OK)
        << moe_last_error();
  ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  std::vector<float> want(c_bytes / 4), got(c_bytes / 4);
  ASSERT_CUDA(cudaMemcpy(want.data(), plain.get(), c_bytes, cudaMemcpyDeviceToHost));
  for (const float v : want) ASSERT_TRUE(std::isfinite(v));
  for (size_t i = 0; i < outs.size(); ++i) {
    ASSERT_CUDA(cudaMemcpy(got.data(), outs[i].get(), c_bytes, cudaMemcpyDeviceToHost));
    EXPECT_EQ(std::memcmp(got.data(), want.data(), c_bytes), 0) << "launch " << i;
  }
}

// The C ABI hands the shapes past the skinny ones to cuBLASLt (GemmTakesCublas): 300 x 700 x
// 2048 here, with C and the bias only 4-byte aligned and the workspace only 16-byte aligned
// (cuBLASLt's algorithms must be picked for the real alignments). C within 1e-5 of a double
// reference, with and without the bias; MOE_GEMM_PDL (a plain launch for cuBLAS) and a
// replayed CUDA graph give the eager call's bits; a short workspace is refused.
TEST(GpuCApi, GemmHandsLargeShapesToCublas) {
  SKIP_WITHOUT_GPU();
  const GemmCase c{300, 700, 2048, DType::kBF16};
  ASSERT_TRUE(cuda::GemmTakesCublas({c.m, c.n, c.k, c.dt}));
  std::mt19937_64 rng(FreshSeed());
  std::normal_distribution<float> normal;
  const std::vector<uint8_t> a = RandomOperand(size_t(c.m) * c.k, c.dt, rng),
                             b = RandomOperand(size_t(c.n) * c.k, c.dt, rng);
  std::vector<float> bias(c.n + 1);  // [0] pads: the bias starts at [1]
  for (float& v : bias) v = normal(rng);
  const std::vector<float> real_bias(bias.begin() + 1, bias.end()), zeros(c.n, 0.0f);
  auto da = Upload(a), db = Upload(b), dbias = Upload(bias);
  const float* bias_at = dbias.as<float>() + 1;
  const size_t bytes = moe_gemm_workspace_bytes(c.m, c.n, c.k, MOE_BF16);
  ASSERT_GE(bytes, size_t(32) << 20);
  auto ws_buffer = DeviceBuffer::Allocate(bytes + 16).value();
  void* ws = ws_buffer.as<char>() + 16;
  const size_t c_elems = size_t(c.m) * c.n, c_bytes = c_elems * 4;
  std::vector<DeviceBuffer> outs;
  for (int i = 0; i < 4; ++i) outs.push_back(DeviceBuffer::Allocate(c_bytes + 4).value());
  auto out = [&](int i) { return outs[i].as<float>() + 1; };
  auto poison_all = [&] {
    for (auto& o : outs) FillAndWait(o.get(), 0xff, o.bytes());
  };
  auto stream = MakeStream().value();
  auto gemm = [&](int i, const float* with_bias, unsigned flags, size_t ws_bytes = 0) {
    return moe_gemm_ex(c.m, c.n, c.k, MOE_BF16, da.get(), db.get(), with_bias, out(i), ws,
                       ws_bytes != 0 ? ws_bytes : bytes, stream.get(), flags);
  };
  auto fetch = [&](int i) {
    std::vector<float> got(c_elems);
    EXPECT_EQ(cudaStreamSynchronize(stream.get()), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(got.data(), out(i), c_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
    return got;
  };
  poison_all();
  ASSERT_EQ(gemm(0, bias_at, 0), MOE_OK) << moe_last_error();
  ASSERT_EQ(gemm(1, nullptr, 0), MOE_OK) << moe_last_error();
  const std::vector<float> with_bias = fetch(0), without = fetch(1);
  for (int pass = 0; pass < 2; ++pass) {
    const std::vector<float>& got = pass == 0 ? with_bias : without;
    const std::vector<double> ref = DoubleReferenceGemm(c, a, b, pass == 0 ? real_bias : zeros);
    const std::string how = pass == 0 ? "with the bias" : "without";
    EXPECT_LT(RelativeError(got, ref, how), 1e-5) << how;
  }
  poison_all();
  ASSERT_EQ(gemm(2, bias_at, MOE_GEMM_PDL), MOE_OK) << moe_last_error();
  EXPECT_EQ(std::memcmp(fetch(2).data(), with_bias.data(), c_bytes), 0) << "MOE_GEMM_PDL";
  CudaGraphExec exec = CaptureGraph(stream.get(), [&]() -> cudaError_t {
    if (gemm(0, bias_at, MOE_GEMM_PDL) != MOE_OK || gemm(3, nullptr, 0) != MOE_OK)
      return cudaErrorUnknown;
    return cudaSuccess;
  });
  ASSERT_TRUE(exec.get() != nullptr) << moe_last_error();
  for (int replay = 0; replay < 2; ++replay) {
    poison_all();
    ASSERT_CUDA(cudaGraphLaunch(exec.get(), stream.get()));
    EXPECT_EQ(std::memcmp(fetch(0).data(), with_bias.data(), c_bytes), 0) << "replay " << replay;
    EXPECT_EQ(std::memcmp(fetch(3).data(), without.data(), c_bytes), 0) << "replay " << replay;
  }
  EXPECT_EQ(gemm(0, bias_at, 0, bytes - 1), MOE_INVALID_ARGUMENT);
  EXPECT_NE(std::string(moe_last_error()).find("workspace"), std::string::npos) << moe_last_error();
}

// The server's two slots launch under PDL on two streams at once, and the autotuner may
// pick plain launches whose grids keep to one CTA per SM and fill more than half the SMs
// (GLM-4.5 t=64: 100 CTAs of the polled kernel; DeepSeek-V3 t=64: 112 staged tiles). Their
// routers wait for the rest of their grid, so two such grids must never each hold part of
// the SMs while waiting for the other's: blocks of a later grid (same priority) are
// dispatched only once every block of an earlier one has been. Launched back to back on two
// streams, every launch must finish (a watchdog, not a hang) with the lone launch's bits.
// Also the heuristic's own plain launch at 17-64 tokens (GLM-4.5 t=24: two token tiles,
// dedicated routers, 132 CTAs on 132 SMs), where this device's heuristic takes one.
TEST(GpuPolled, PlainOneCtaPerSmLaunchesFromTwoStreamsFinish) {
  SKIP_WITHOUT_GPU();
  struct Case {
    const char* family;
    int tokens;
    bool staged;
    bool heuristic = false;
  };
  for (const Case& c : {Case{"glm4_moe", 64, false}, Case{"deepseek_v3", 64, true},
                        Case{"glm4_moe", 24, false, true}}) {
    const RouterSpec s = FindPreset(c.family).value().spec;
    const uint64_t seed = FreshSeed();
    const RouterInputs in = MakeRouterInputs(s, c.tokens, DType::kBF16, DType::kBF16, seed);
    const RouteProblem p{s, c.tokens, DType::kBF16, DType::kBF16};
    cuda::DecomposeKConfig config;
    int ctas = 0;
    if (c.heuristic) {
      config = cuda::ChooseDecomposeKConfig(p, SmCount());
      if (!config.polled || config.staged || !config.dedicated_routers || config.pdl_cooperative)
        continue;  // this device size's heuristic launches another way
      ctas = (c.tokens + 15) / 16 * ((s.experts + 31) / 32 * config.k_splits + 16);
    } else if (c.staged) {
      config = cuda::ChooseStagedConfig(p, SmCount());
      ctas =
          (s.experts + cuda::kStagedTileExperts - 1) / cuda::kStagedTileExperts * config.k_splits;
    } else {
      config = cuda::ChoosePolledConfig(p, SmCount(), /*token_tiles=*/4);
      config.k_splits = 10;
      config.dedicated_routers = false;
      config.pdl_one_cta_per_sm = true;
      ctas = (s.experts + 31) / 32 * config.k_splits * ((c.tokens + 31) / 32);
    }
    config.pdl_cooperative = false;
    const std::string where = absl::StrCat(c.family, " t=", c.tokens, " ", ctas, " CTAs");
    ASSERT_TRUE(cuda::CanRouteDecomposeK(p, config).ok()) << where;
    ASSERT_GT(2 * ctas, SmCount()) << where;  // two grids cannot sit side by side
    std::vector<DeviceCase> d;
    std::vector<DeviceBuffer> ws;
    std::vector<CudaStream> streams;
    for (int i = 0; i < 3; ++i) {  // [2]: the lone reference run
      d.push_back(MakeDeviceCase(in, false));
      ws.push_back(DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, config)).value());
      streams.push_back(MakeStream().value());
      ASSERT_CUDA(cuda::ResetDecomposeKWorkspace(ws[i].get(), p, config, streams[i].get()));
      Poison(d[i]);
    }
    ASSERT_CUDA(cuda::LaunchDecomposeKRouter(p, d[2].args, config, ws[2].get(), ws[2].bytes(),
                                             streams[2].get(),
                                             /*pdl=*/true));
    ASSERT_CUDA(cudaDeviceSynchronize());
    const HostOut lone = Download(d[2], false);
    EXPECT_EQ(CompareWithReference(s, in.Reference(), lone.ids.data(), lone.weights.data(), 1e-3),
              "")
        << Describe(in, seed) << " " << where;
    for (int rep = 0; rep < 200; ++rep)
      for (int i = 0; i < 2; ++i)
        ASSERT_CUDA(cuda::LaunchDecomposeKRouter(p, d[i].args, config, ws[i].get(), ws[i].bytes(),
                                                 streams[i].get(), /*pdl=*/true));
    // Spinning grids would hang cudaDeviceSynchronize: poll with a deadline instead, and
    // end the process (its context and grids with it) if it passes.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (int i = 0; i < 2; ++i) {
      cudaError_t e;
      while ((e = cudaStreamQuery(streams[i].get())) == cudaErrorNotReady) {
        if (std::chrono::steady_clock::now() > deadline) {
          std::fprintf(stderr, "FATAL: %s: 400 launches on two streams still running after 30 s\n",
                       where.c_str());
          std::_Exit(3);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      ASSERT_CUDA(e);
    }
    for (int i = 0; i < 2; ++i) {
      const HostOut got = Download(d[i], false);
      EXPECT_EQ(got.ids, lone.ids) << where << " stream " << i;
      EXPECT_EQ(0, std::memcmp(got.weights.data(), lone.weights.data(), lone.weights.size() * 4))
          << where << " stream " << i;
    }
  }
}

// A plain PDL launch relies on grids of one priority reaching the SMs in launch order
// (the test above); from a stream of higher priority, whose grids overtake others, it is
// launched cooperatively instead, and still routes like the reference.
TEST(GpuPolled, PlainPdlLaunchesFromAHigherPriorityStreamAreCooperative) {
  SKIP_WITHOUT_GPU();
  int least = 0, greatest = 0;
  ASSERT_CUDA(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  if (least == greatest) GTEST_SKIP() << "this device has one stream priority";
  cudaStream_t raw = nullptr;
  ASSERT_CUDA(cudaStreamCreateWithPriority(&raw, cudaStreamNonBlocking, greatest));
  const CudaStream high(raw);
  const CudaStream plain = MakeStream().value();
  const RouterSpec s = FindPreset("glm4_moe").value().spec;
  const RouteProblem p{s, 64, DType::kBF16, DType::kBF16};
  cuda::DecomposeKConfig config = cuda::ChoosePolledConfig(p, SmCount(), /*token_tiles=*/4);
  config.pdl_cooperative = false;
  config.pdl_one_cta_per_sm = true;
  ASSERT_TRUE(cuda::CanRouteDecomposeK(p, config).ok());
  EXPECT_FALSE(cuda::LaunchesCooperatively(config, /*pdl=*/true, plain.get()));
  EXPECT_TRUE(cuda::LaunchesCooperatively(config, /*pdl=*/true, high.get()));
  EXPECT_TRUE(cuda::LaunchesCooperatively(config, /*pdl=*/false, plain.get()));
  cuda::DecomposeKConfig cooperative = config;
  cooperative.pdl_cooperative = true;
  EXPECT_TRUE(cuda::LaunchesCooperatively(cooperative, /*pdl=*/true, plain.get()));
  const uint64_t seed = FreshSeed();
  const RouterInputs in = MakeRouterInputs(s, p.tokens, DType::kBF16, DType::kBF16, seed);
  DeviceCase d = MakeDeviceCase(in, false);
  auto ws = DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, config)).value();
  ASSERT_CUDA(cuda::ResetDecomposeKWorkspace(ws.get(), p, config, high.get()));
  Poison(d);
  for (int i = 0; i < 20; ++i)
    ASSERT_CUDA(
        cuda::LaunchDecomposeKRouter(p, d.args, config, ws.get(), ws.bytes(), high.get(), true));
  ASSERT_CUDA(cudaStreamSynchronize(high.get()));
  const HostOut h = Download(d, false);
  EXPECT_EQ(CompareWithReference(s, in.Reference(), h.ids.data(), h.weights.data(), 1e-3), "")
      << Describe(in, seed);
}

// Launch flags are checked before anything touches the device, so this runs without a GPU
// (and in CI): an unknown bit is refused by name, not ignored.
TEST(GpuCApi, UnknownLaunchFlagsAreRefused) {
  moe_router_spec spec;
  ASSERT_EQ(moe_router_preset("mixtral", &spec), MOE_OK);
  for (unsigned flags : {2u, 0x80000000u, MOE_ROUTE_PDL | 4u}) {
    EXPECT_EQ(moe_route_ex(&spec, 1, MOE_BF16, MOE_BF16, nullptr, nullptr, nullptr, nullptr,
                           nullptr, nullptr, nullptr, nullptr, 0, nullptr, flags),
              MOE_INVALID_ARGUMENT)
        << flags;
    EXPECT_NE(std::string(moe_last_error()).find("flags"), std::string::npos) << flags;
    EXPECT_EQ(moe_gemm_ex(16, 16, 64, MOE_BF16, nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                          nullptr, flags),
              MOE_INVALID_ARGUMENT)
        << flags;
    EXPECT_NE(std::string(moe_last_error()).find("MOE_GEMM_PDL"), std::string::npos) << flags;
  }
}

// Operands not 16-byte aligned would fault in the kernels' vector loads (and the GEMM's TMA
// maps refuse them), workspaces in their vector stores: refused by name before anything
// touches the device, so this also runs without a GPU. The pointers are host memory that
// is never read.
TEST(GpuCApi, MisalignedOperandsAreRefused) {
  moe_router_spec spec;
  ASSERT_EQ(moe_router_preset("mixtral", &spec), MOE_OK);
  alignas(16) static char buf[64];
  const char* aligned = buf;
  const char* off = buf + 8;
  void* const off_workspace = buf + 4;
  auto route = [&](const void* hidden, const void* weight, void* workspace = nullptr) {
    return moe_route(&spec, 1, MOE_BF16, MOE_BF16, hidden, weight, nullptr, nullptr, nullptr,
                     nullptr, nullptr, workspace, 64, nullptr);
  };
  auto gemm = [&](const void* a, const void* b, void* workspace = nullptr) {
    return moe_gemm(16, 16, 64, MOE_BF16, a, b, nullptr,
                    reinterpret_cast<float*>(const_cast<char*>(aligned)), workspace, 64, nullptr);
  };
  EXPECT_EQ(route(off, aligned), MOE_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(moe_last_error()), "hidden: not 16-byte aligned");
  EXPECT_EQ(route(aligned, off), MOE_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(moe_last_error()), "weight: not 16-byte aligned");
  EXPECT_EQ(gemm(off, aligned), MOE_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(moe_last_error()), "a: not 16-byte aligned");
  EXPECT_EQ(gemm(aligned, off), MOE_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(moe_last_error()), "b: not 16-byte aligned");
  EXPECT_EQ(route(aligned, aligned, off_workspace), MOE_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(moe_last_error()), "workspace: not 16-byte aligned");
  EXPECT_EQ(gemm(aligned, aligned, off_workspace), MOE_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(moe_last_error()), "workspace: not 16-byte aligned");
}

// moe_route_config / moe_gemm_config name the config moe_route / moe_gemm launch on this
// device (the heuristic's for device 0's SMs), for every family at decode, prefill and
// two-launch token counts, and for GEMMs on both sides of the cuBLASLt hand-off.
// On every device, as its current device: the C ABI sizes its heuristic by the caller's
// current device (it probed device 0 only, whatever the caller had set), and whether it may
// use clusters and the TMA is that device's answer.
TEST(GpuCApi, ConfigNamesWhatTheLaunchRunsOnTheCurrentDevice) {
  SKIP_WITHOUT_GPU();
  int devices = 0;
  ASSERT_EQ(cudaGetDeviceCount(&devices), cudaSuccess);
  for (int device = 0; device < devices; ++device) {
    const cuda::DeviceInfo info = cuda::ProbeDevice(device);
    if (!info.available) continue;
    ASSERT_EQ(cudaSetDevice(device), cudaSuccess);
    const std::string where = absl::StrCat("device ", device, " (", info.name, "): ");
    // Clusters and the TMA are asked of the current device (once per process, it was).
    EXPECT_EQ(cuda::CurrentDeviceIsSm90OrNewer(), info.major >= 9) << where;
    for (const auto& preset : FamilyPresets()) {
      moe_router_spec spec;
      ASSERT_EQ(moe_router_preset(preset.name.c_str(), &spec), MOE_OK);
      for (int tokens : {1, 16, 64, 128, 200, 256}) {
        RouteProblem p;
        p.spec = preset.spec;
        p.tokens = tokens;
        const char* text = moe_route_config(&spec, tokens, MOE_BF16, MOE_BF16);
        ASSERT_NE(text, nullptr) << where << preset.name << " t=" << tokens << ": "
                                 << moe_last_error();
        const auto config = cuda::ChooseDecomposeKConfig(p, info.sm_count);
        EXPECT_EQ(std::string(text), cuda::DescribeDecomposeKConfig(config))
            << where << preset.name << " t=" << tokens;
        EXPECT_EQ(moe_route_workspace_bytes(&spec, tokens, MOE_BF16, MOE_BF16),
                  cuda::DecomposeKWorkspaceBytes(p, config))
            << where << preset.name << " t=" << tokens;
      }
    }
    for (const auto& [m, n, k] :
         {std::tuple{16, 16, 131072}, std::tuple{128, 128, 65536}, std::tuple{300, 700, 2048}}) {
      const char* text = moe_gemm_config(m, n, k, MOE_BF16);
      ASSERT_NE(text, nullptr) << where << m << "x" << n << "x" << k << ": " << moe_last_error();
      const cuda::GemmProblem p{m, n, k, DType::kBF16};
      EXPECT_EQ(std::string(text),
                cuda::DescribeDecomposeKConfig(cuda::ChooseGemmConfig(p, info.sm_count)))
          << where << m << "x" << n << "x" << k;
    }
    EXPECT_EQ(std::string(moe_gemm_config(300, 700, 2048, MOE_BF16)), "cublasLt gemm") << where;
  }
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
}

TEST(GpuCApi, RoutesAndReportsErrors) {
  SKIP_WITHOUT_GPU();
  moe_router_spec spec;
  ASSERT_EQ(moe_router_preset("deepseek_v3", &spec), MOE_OK);
  EXPECT_NE(moe_router_preset("nope", &spec), MOE_OK);
  EXPECT_NE(std::string(moe_last_error()).find("nope"), std::string::npos);
  ASSERT_EQ(moe_router_preset("deepseek_v3", &spec), MOE_OK);
  const uint64_t seed = FreshSeed();
  RouterInputs in =
      MakeRouterInputs(FindPreset("deepseek_v3").value().spec, 4, DType::kBF16, DType::kBF16, seed);
  DeviceCase d = MakeDeviceCase(in, false);
  Poison(d);
  const size_t bytes = moe_route_workspace_bytes(&spec, 4, MOE_BF16, MOE_BF16);
  ASSERT_GT(bytes, 0u);
  auto ws = DeviceBuffer::Allocate(bytes).value();
  ASSERT_CUDA(cudaMemset(ws.get(), 0, bytes));
  ASSERT_EQ(moe_route(&spec, 4, MOE_BF16, MOE_BF16, d.args.hidden, d.args.weight, nullptr,
                      d.args.correction_bias, d.args.expert_ids, d.args.expert_weights, nullptr,
                      ws.get(), bytes, nullptr),
            MOE_OK)
      << moe_last_error();
  ASSERT_CUDA(cudaDeviceSynchronize());
  HostOut h = Download(d, false);
  EXPECT_EQ(CompareWithReference(in.spec, in.Reference(), h.ids.data(), h.weights.data(), 1e-3),
            "");
  EXPECT_EQ(moe_route(&spec, 300, MOE_BF16, MOE_BF16, d.args.hidden, d.args.weight, nullptr,
                      d.args.correction_bias, d.args.expert_ids, d.args.expert_weights, nullptr,
                      ws.get(), bytes, nullptr),
            MOE_INVALID_ARGUMENT);
  EXPECT_NE(std::string(moe_last_error()).find("tokens"), std::string::npos);
  EXPECT_EQ(moe_route(&spec, 4, MOE_BF16, MOE_BF16, d.args.hidden, d.args.weight, nullptr, nullptr,
                      d.args.expert_ids, d.args.expert_weights, nullptr, ws.get(), bytes, nullptr),
            MOE_INVALID_ARGUMENT);
  EXPECT_NE(std::string(moe_last_error()).find("correction_bias"), std::string::npos);
}

// moe_route_ex with MOE_ROUTE_PDL: eight launches back to back on one stream and one
// workspace, each on its own hidden states, route like the reference (the workspace's
// counters and slots are handed from launch to launch under PDL; a slot left full would
// hand one launch's partial to the next), and leave the workspace zero, as the header
// promises. Decode batches (cluster, polled) and 128 tokens (the staged router, the wide
// instance for Kimi K2). moe_route is moe_route_ex with flags 0 (RoutesAndReportsErrors);
// unknown flags: UnknownLaunchFlagsAreRefused.
TEST(GpuCApi, PdlFlagRoutesBackToBackLaunches) {
  SKIP_WITHOUT_GPU();
  for (const auto& [family, tokens] : {std::pair{"mixtral", 4}, std::pair{"deepseek_v3", 4},
                                       std::pair{"deepseek_v3", 128}, std::pair{"kimi_k2", 128}}) {
    moe_router_spec spec;
    ASSERT_EQ(moe_router_preset(family, &spec), MOE_OK);
    const RouterSpec s = FindPreset(family).value().spec;
    const size_t bytes = moe_route_workspace_bytes(&spec, tokens, MOE_BF16, MOE_BF16);
    ASSERT_GT(bytes, 0u);
    auto ws = DeviceBuffer::Allocate(bytes).value();
    FillAndWait(ws.get(), 0, bytes);
    auto stream = MakeStream().value();
    const RouterInputs base = MakeRouterInputs(s, tokens, DType::kBF16, DType::kBF16, FreshSeed());
    std::vector<RouterInputs> inputs;
    std::vector<DeviceCase> cases;
    for (int i = 0; i < 8; ++i) {
      RouterInputs in = base;  // the same weights and biases, new hidden states
      const RouterInputs other =
          MakeRouterInputs(s, tokens, DType::kBF16, DType::kBF16, FreshSeed());
      in.hidden = other.hidden;
      in.hidden_f = other.hidden_f;
      cases.push_back(MakeDeviceCase(in, false));
      inputs.push_back(std::move(in));
      Poison(cases.back());
    }
    for (const DeviceCase& d : cases) {
      ASSERT_EQ(moe_route_ex(&spec, tokens, MOE_BF16, MOE_BF16, d.args.hidden, d.args.weight,
                             d.args.router_bias, d.args.correction_bias, d.args.expert_ids,
                             d.args.expert_weights, nullptr, ws.get(), bytes, stream.get(),
                             MOE_ROUTE_PDL),
                MOE_OK)
          << moe_last_error();
    }
    ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
    for (size_t i = 0; i < cases.size(); ++i) {
      HostOut h = Download(cases[i], false);
      EXPECT_EQ(
          CompareWithReference(s, inputs[i].Reference(), h.ids.data(), h.weights.data(), 1e-3), "")
          << family << " t=" << tokens << " launch " << i;
    }
    // The part that must be zero at a launch (the C ABI's config, as moe_route_ex picks it).
    const RouteProblem problem{s, tokens, DType::kBF16, DType::kBF16};
    const size_t zeroed =
        cuda::DecomposeKZeroedBytes(problem, cuda::ChooseDecomposeKConfig(problem, SmCount()));
    ASSERT_LE(zeroed, bytes);
    std::vector<unsigned char> left(zeroed);
    ASSERT_CUDA(cudaMemcpy(left.data(), ws.get(), zeroed, cudaMemcpyDeviceToHost));
    const size_t nonzero =
        size_t(std::count_if(left.begin(), left.end(), [](unsigned char b) { return b != 0; }));
    EXPECT_EQ(nonzero, 0u) << family << " t=" << tokens << ": of the " << zeroed
                           << " bytes that must stay zero";
  }
}

}  // namespace
}  // namespace moe::testing

namespace moe {
void PrintTo(const FamilyPreset& p, std::ostream* os) { *os << p.name; }
}  // namespace moe
