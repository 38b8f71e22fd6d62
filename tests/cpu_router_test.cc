// CPU backend vs the double-precision reference: every family preset, many shapes, all
// dtypes, the tie rule, limits and non-finite inputs.
#include "kernels/cpu_router.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "kernels/cpu_dot.h"
#include "kernels/routing_epilogue.h"
#include "tests/test_data.h"

namespace moe::testing {
namespace {

// A float's bit pattern: "to the bit" comparisons (-0.0 != +0.0, NaNs by payload).
uint32_t BitsOf(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits;
}

struct Outputs {
  std::vector<int32_t> ids;
  std::vector<float> weights;
  std::vector<float> logits;
};

// Runs the CPU backend on poisoned outputs.
Outputs RunCpu(CpuRouter& router, const RouterInputs& in, bool want_logits = false) {
  RouteProblem p{in.spec, in.tokens, in.hidden_dtype, in.weight_dtype};
  Outputs out;
  out.ids.assign(size_t(in.tokens) * in.spec.top_k, -7);
  out.weights.assign(out.ids.size(), std::numeric_limits<float>::quiet_NaN());
  if (want_logits)
    out.logits.assign(size_t(in.tokens) * in.spec.experts, std::numeric_limits<float>::quiet_NaN());
  RouteArgs args;
  args.hidden = in.hidden.data();
  args.weight = in.weight.data();
  args.router_bias = in.router_bias.empty() ? nullptr : in.router_bias.data();
  args.correction_bias = in.correction_bias.empty() ? nullptr : in.correction_bias.data();
  args.expert_ids = out.ids.data();
  args.expert_weights = out.weights.data();
  args.logits = want_logits ? out.logits.data() : nullptr;
  std::vector<uint8_t> ws(router.WorkspaceBytes(p));
  auto status = router.Route(p, args, ws.data(), ws.size());
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

void ExpectMatchesReference(CpuRouter& router, const RouterInputs& in, uint64_t seed) {
  Outputs out = RunCpu(router, in);
  const std::string diff =
      CompareWithReference(in.spec, in.Reference(), out.ids.data(), out.weights.data(), 1e-3);
  EXPECT_EQ(diff, "") << in.spec.family << " tokens=" << in.tokens << " experts=" << in.spec.experts
                      << " hidden=" << in.spec.hidden << " x=" << DTypeName(in.hidden_dtype)
                      << " w=" << DTypeName(in.weight_dtype) << " seed=" << seed;
}

class FamilyTest : public ::testing::TestWithParam<FamilyPreset> {};

TEST_P(FamilyTest, MatchesReferenceOnFreshRandomInputs) {
  CpuRouter router(2);
  const FamilyPreset& preset = GetParam();
  const DType dtypes[] = {DType::kBF16, DType::kFP16, DType::kFP32};
  for (int tokens : {1, 7, 64}) {
    for (DType dt : dtypes) {
      const uint64_t seed = FreshSeed();
      ExpectMatchesReference(router, MakeRouterInputs(preset.spec, tokens, dt, dt, seed), seed);
    }
  }
  // Mixed dtypes: fp32 activations against bf16 weights (DeepSeek-V3 routes in fp32).
  const uint64_t seed = FreshSeed();
  ExpectMatchesReference(router, MakeRouterInputs(preset.spec, 3, DType::kFP32, DType::kBF16, seed),
                         seed);
}

TEST_P(FamilyTest, FullBatchOf256Tokens) {
  CpuRouter router(2);
  const uint64_t seed = FreshSeed();
  ExpectMatchesReference(
      router, MakeRouterInputs(GetParam().spec, 256, DType::kBF16, DType::kBF16, seed), seed);
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, FamilyTest, ::testing::ValuesIn(FamilyPresets()),
                         [](const auto& info) { return info.param.name; });

// Shapes across the whole supported range, with randomly drawn routing variants.
TEST(CpuRouterShapes, SweepExpertsHiddenTokens) {
  CpuRouter router(2);
  std::mt19937 pick(static_cast<uint32_t>(FreshSeed()));
  const int experts_list[] = {8, 16, 32, 64, 128, 160, 256, 384, 512};
  const int hidden_list[] = {2048, 2880, 4096, 7168, 8};
  const int tokens_list[] = {1, 2, 31, 128, 256};
  int cases = 0;
  for (int experts : experts_list) {
    for (int hidden : hidden_list) {
      RouterSpec s;
      s.family = "sweep";
      s.hidden = hidden;
      s.experts = experts;
      s.top_k = std::min<int>(experts, 1 + pick() % kMaxTopK);
      DrawRoutingVariant(pick, s);
      s.scaling_factor = pick() % 2 ? 1.0f : 2.5f;
      if (experts % 8 == 0 && experts >= 64) {
        s.n_group = 8;
        s.topk_group = 4;
        s.top_k = std::min(s.top_k, 4 * experts / 8);
      }
      ASSERT_TRUE(ValidateSpec(s).ok()) << ValidateSpec(s);
      // Keep the reference's double work bounded: big hidden with few tokens.
      const int tokens = tokens_list[pick() % 5];
      const int t = hidden * experts * int64_t{tokens} > 100'000'000 ? 7 : tokens;
      const uint64_t seed = FreshSeed();
      ExpectMatchesReference(router, MakeRouterInputs(s, t, DType::kBF16, DType::kBF16, seed),
                             seed);
      ++cases;
    }
  }
  EXPECT_EQ(cases, 45);
}

TEST(CpuRouterTies, EqualScoresPickTheLowerExpertId) {
  CpuRouter router(2);
  // Every weight row equal: every logit equal, so the tie rule alone decides.
  for (const char* family :
       {"deepseek_v3", "qwen3_30b", "mixtral", "gpt_oss_20b", "llama4_scout"}) {
    FamilyPreset preset = FindPreset(family).value();
    RouterSpec spec = preset.spec;
    spec.hidden = 64;
    RouterInputs in = MakeRouterInputs(spec, 3, DType::kBF16, DType::kBF16, FreshSeed());
    for (int e = 1; e < spec.experts; ++e)
      std::copy(in.weight.begin(), in.weight.begin() + spec.hidden * 2,
                in.weight.begin() + size_t(e) * spec.hidden * 2);
    std::fill(in.router_bias.begin(), in.router_bias.end(), 0.25f);
    std::fill(in.correction_bias.begin(), in.correction_bias.end(), 0.0f);
    Outputs out = RunCpu(router, in);
    for (int t = 0; t < 3; ++t)
      for (int i = 0; i < spec.top_k; ++i)
        EXPECT_EQ(out.ids[t * spec.top_k + i], i) << family << " token " << t;
  }
}

TEST(CpuRouterTies, TiedPairIsOrderedByIdAndGroupsTooBreakByLowerId) {
  // Logits given directly to the epilogue: experts 5 and 3 tie at the top.
  RouterSpec spec = FindPreset("qwen3_30b").value().spec;
  std::vector<float> logits(spec.experts, 0.0f);
  logits[5] = 4.0f;
  logits[3] = 4.0f;
  logits[9] = 3.0f;
  std::vector<float> scratch(EpilogueScratchFloats(spec));
  std::vector<int32_t> ids(spec.top_k);
  std::vector<float> w(spec.top_k);
  RouteOneToken(spec, logits.data(), nullptr, ids.data(), w.data(), scratch.data());
  EXPECT_EQ(ids[0], 3);
  EXPECT_EQ(ids[1], 5);
  EXPECT_EQ(ids[2], 9);
  EXPECT_EQ(ids[3], 0);  // the rest tie at 0: lowest ids first
  EXPECT_EQ(ids[4], 1);
  EXPECT_FLOAT_EQ(w[0], w[1]);

  // DeepSeek-V3 groups: groups 2 and 6 tie for the last kept place; group 2 wins.
  RouterSpec ds = FindPreset("deepseek_v3").value().spec;
  std::vector<float> l(ds.experts, -10.0f);
  std::vector<float> cb(ds.experts, 0.0f);
  for (int g : {0, 1, 4}) l[g * 32] = l[g * 32 + 1] = 5.0f;
  for (int g : {6, 2}) l[g * 32 + 7] = l[g * 32 + 8] = 1.0f;
  std::vector<float> s2(EpilogueScratchFloats(ds));
  std::vector<int32_t> ids2(ds.top_k);
  std::vector<float> w2(ds.top_k);
  RouteOneToken(ds, l.data(), cb.data(), ids2.data(), w2.data(), s2.data());
  std::vector<int32_t> want = {0, 1, 32, 33, 128, 129, 71, 72};
  EXPECT_EQ(ids2, want);
}

// The GPU routes every spec in its CheapestEquivalentSpec form: that form must route like
// the spec itself, against the reference of the original spec, on fresh random inputs.
TEST(CheapestEquivalentSpec, RoutesLikeTheSpecItReplaces) {
  CpuRouter router(2);
  int rewritten = 0;
  for (const FamilyPreset& preset : FamilyPresets()) {
    const RouterSpec cheap = CheapestEquivalentSpec(preset.spec);
    const bool changed = cheap.order != preset.spec.order;
    rewritten += changed;
    if (!changed) {
      EXPECT_EQ(cheap.renormalize, preset.spec.renormalize) << preset.name;
      continue;
    }
    EXPECT_EQ(preset.spec.scoring, Scoring::kSoftmax) << preset.name;
    EXPECT_TRUE(preset.spec.renormalize) << preset.name;
    for (int tokens : {1, 7, 33}) {
      const uint64_t seed = FreshSeed();
      RouterInputs in = MakeRouterInputs(preset.spec, tokens, DType::kBF16, DType::kBF16, seed);
      const auto reference = in.Reference();
      in.spec = cheap;
      Outputs out = RunCpu(router, in);
      EXPECT_EQ(
          CompareWithReference(preset.spec, reference, out.ids.data(), out.weights.data(), 1e-4),
          "")
          << preset.name << " tokens=" << tokens << " seed=" << seed;
    }
  }
  EXPECT_GE(rewritten, 3);  // qwen3_235b, qwen3_30b, mixtral
  // Not rewritten: softmax without renormalisation needs the sum over all experts, and a
  // correction bias or groups make the selection depend on the scores, not the logits.
  for (const char* name : {"deepseek_v2_lite", "deepseek_v3", "kimi_k2", "gpt_oss_20b"}) {
    const RouterSpec spec = FindPreset(name).value().spec;
    EXPECT_EQ(CheapestEquivalentSpec(spec).order, spec.order) << name;
  }
  RouterSpec grouped = FindPreset("qwen3_30b").value().spec;
  grouped.n_group = 4;
  grouped.topk_group = 2;
  EXPECT_EQ(CheapestEquivalentSpec(grouped).order, RoutingOrder::kScoreThenTopK);
  RouterSpec biased = FindPreset("qwen3_30b").value().spec;
  biased.has_correction_bias = true;
  EXPECT_EQ(CheapestEquivalentSpec(biased).order, RoutingOrder::kScoreThenTopK);
}

TEST(CpuRouterLogits, ReturnedLogitsMatchReference) {
  CpuRouter router(2);
  RouterSpec spec = FindPreset("gpt_oss_20b").value().spec;
  RouterInputs in = MakeRouterInputs(spec, 5, DType::kBF16, DType::kBF16, FreshSeed());
  Outputs out = RunCpu(router, in, /*want_logits=*/true);
  auto ref = in.Reference();
  for (int t = 0; t < 5; ++t)
    for (int e = 0; e < spec.experts; ++e)
      EXPECT_NEAR(out.logits[t * spec.experts + e], ref[t].logits[e], 1e-4);
}

// The batcher merges requests, so a token's answer must not depend on the tokens routed
// with it: tokens 0-3 of a batch of 7 go through the 4 x 4 dot-product block, the rest
// and a token alone through the one-token loop. Ids, weights and logits bit for bit.
TEST(CpuRouterBatching, ATokensResultDoesNotDependOnItsBatch) {
  CpuRouter router(2);
  for (const char* family : {"deepseek_v3", "qwen3_30b", "mixtral"}) {
    const RouterSpec spec = FindPreset(family).value().spec;
    const uint64_t seed = FreshSeed();
    const RouterInputs batch = MakeRouterInputs(spec, 7, DType::kBF16, DType::kBF16, seed);
    const Outputs together = RunCpu(router, batch, /*want_logits=*/true);
    const size_t row_bytes = size_t(spec.hidden) * DTypeSize(batch.hidden_dtype);
    for (int t = 0; t < batch.tokens; ++t) {
      RouterInputs one = batch;
      one.tokens = 1;
      one.hidden.assign(batch.hidden.begin() + t * row_bytes,
                        batch.hidden.begin() + (t + 1) * row_bytes);
      const Outputs alone = RunCpu(router, one, /*want_logits=*/true);
      const int k = spec.top_k, e = spec.experts;
      const std::string where = absl::StrCat(family, " token ", t, " seed ", seed);
      EXPECT_EQ(std::memcmp(alone.ids.data(), together.ids.data() + t * k, k * 4), 0) << where;
      EXPECT_EQ(std::memcmp(alone.weights.data(), together.weights.data() + t * k, k * 4), 0)
          << where;
      EXPECT_EQ(std::memcmp(alone.logits.data(), together.logits.data() + size_t(t) * e, e * 4), 0)
          << where;
    }
  }
}

// DotFloat4x4 is DotFloat sixteen times at once, to the bit, at every length (whole
// 16-float steps, tails, both).
TEST(CpuDot, FourByFourIsBitIdenticalToDotFloat) {
  std::mt19937 rng(static_cast<uint32_t>(FreshSeed()));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int n : {1, 7, 15, 16, 17, 31, 100, 1023, 1024}) {
    std::vector<float> data(8 * size_t(n));
    for (float& v : data) v = normal(rng);
    const float* const a[4] = {&data[0], &data[n], &data[2 * n], &data[3 * n]};
    const float* const b[4] = {&data[4 * n], &data[5 * n], &data[6 * n], &data[7 * n]};
    float out[4][4];
    DotFloat4x4(a, b, n, out);
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) {
        const float want = DotFloat(a[r], b[c], n);
        EXPECT_EQ(BitsOf(out[r][c]), BitsOf(want))
            << "n=" << n << " r=" << r << " c=" << c << ": " << out[r][c] << " vs " << want << " ("
            << CpuDotLevelName() << ")";
      }
  }
}

// DotFloatBf16 is DotFloat on the converted row, to the bit, at every length; rows with
// subnormal, zero, negative and large bf16 values.
TEST(CpuDot, Bf16RowIsBitIdenticalToDotFloatOnTheConvertedRow) {
  std::mt19937 rng(static_cast<uint32_t>(FreshSeed()));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int n : {1, 7, 15, 16, 17, 31, 100, 1023, 1024, 7168}) {
    std::vector<float> a(n), converted(n);
    std::vector<uint16_t> b(n);
    for (int i = 0; i < n; ++i) {
      a[i] = normal(rng);
      const float scale = i % 5 == 0 ? 1e-39f : i % 7 == 0 ? 0.0f : i % 11 == 0 ? 1e30f : 1.0f;
      b[i] = FloatToBf16(normal(rng) * scale);
    }
    ConvertToFloat(b.data(), DType::kBF16, 0, n, converted.data());
    const float got = DotFloatBf16(a.data(), b.data(), n);
    const float want = DotFloat(a.data(), converted.data(), n);
    EXPECT_EQ(BitsOf(got), BitsOf(want))
        << "n=" << n << ": " << got << " vs " << want << " (" << CpuDotLevelName() << ")";
  }
}

TEST(CpuRouterLimits, RejectsProblemsOutsideTheLimitsNamingTheField) {
  RouterSpec ok = FindPreset("deepseek_v3").value().spec;
  ASSERT_TRUE(ValidateSpec(ok).ok());
  auto expect_bad = [](const RouterSpec& s, int tokens, const char* field) {
    auto status = CpuRouter::CanRoute({s, tokens, DType::kBF16, DType::kBF16});
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(status.message().find(field), absl::string_view::npos) << status;
  };
  RouterSpec s = ok;
  expect_bad(s, 0, "tokens");
  expect_bad(s, kMaxTokens + 1, "tokens");
  s = ok;
  s.hidden = 7170;
  expect_bad(s, 1, "hidden");
  s = ok;
  s.hidden = kMaxHidden + 8;
  expect_bad(s, 1, "hidden");
  s = ok;
  s.experts = kMaxExperts + 1;
  s.n_group = 1;
  s.topk_group = 1;
  expect_bad(s, 1, "experts");
  s = ok;
  s.top_k = kMaxTopK + 1;
  expect_bad(s, 1, "top_k");
  s = ok;
  s.experts = 8;
  s.n_group = 1;
  s.topk_group = 1;
  s.top_k = 9;
  expect_bad(s, 1, "top_k");
  s = ok;
  s.n_group = 7;
  expect_bad(s, 1, "n_group");
  s = ok;
  s.topk_group = 9;
  expect_bad(s, 1, "topk_group");
  s = ok;
  s.scaling_factor = std::nanf("");
  expect_bad(s, 1, "scaling_factor");
  // Just inside the limits is fine.
  s = ok;
  s.hidden = kMaxHidden;
  s.experts = kMaxExperts;
  s.top_k = kMaxTopK;
  EXPECT_TRUE(CpuRouter::CanRoute({s, kMaxTokens, DType::kBF16, DType::kBF16}).ok());
}

TEST(CpuRouterLimits, WorkspaceTooSmallIsAnError) {
  CpuRouter router(2);
  RouterInputs in = MakeRouterInputs(FindPreset("mixtral").value().spec, 2, DType::kBF16,
                                     DType::kBF16, FreshSeed());
  RouteProblem p{in.spec, 2, DType::kBF16, DType::kBF16};
  std::vector<int32_t> ids(4);
  std::vector<float> w(4);
  RouteArgs args{in.hidden.data(), in.weight.data(), nullptr, nullptr,
                 ids.data(),       w.data(),         nullptr};
  std::vector<uint8_t> ws(router.WorkspaceBytes(p) - 1);
  EXPECT_EQ(router.Route(p, args, ws.data(), ws.size()).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CheckFinite, FindsNanAndInfInEveryDtype) {
  for (DType dt : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    std::vector<uint8_t> buf(16 * DTypeSize(dt));
    for (int i = 0; i < 16; ++i) StoreFromFloat(buf.data(), dt, i, 0.5f * i);
    EXPECT_TRUE(CheckFinite(buf.data(), dt, 16, "hidden_states").ok());
    for (float bad :
         {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
          std::numeric_limits<float>::quiet_NaN()}) {
      auto copy = buf;
      StoreFromFloat(copy.data(), dt, 11, bad);
      auto status = CheckFinite(copy.data(), dt, 16, "hidden_states");
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(status.message().find("hidden_states: element 11"), absl::string_view::npos)
          << status;
    }
  }
}

TEST(CheckFinite, FindsTheFirstBadElementAcrossBlocks) {
  for (DType dt : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    std::vector<uint8_t> buf(1000 * DTypeSize(dt));
    for (int i = 0; i < 1000; ++i) StoreFromFloat(buf.data(), dt, i, -3.0f + 0.01f * i);
    EXPECT_TRUE(CheckFinite(buf.data(), dt, 1000, "x").ok());
    for (int at : {0, 255, 256, 511, 999}) {
      auto copy = buf;
      StoreFromFloat(copy.data(), dt, at, std::numeric_limits<float>::infinity());
      if (at != 999) StoreFromFloat(copy.data(), dt, 999, std::nanf(""));
      auto status = CheckFinite(copy.data(), dt, 1000, "x");
      EXPECT_NE(status.message().find(absl::StrCat("x: element ", at, " ")),
                absl::string_view::npos)
          << status;
    }
  }
}

// The word-at-a-time test against a plain per-element one, on bit patterns chosen to trip
// it: largest finite values (exponent one short of all ones, either sign, any mantissa),
// smallest normals, zeros, and a non-finite value planted at random places, odd counts
// and odd start offsets included.
TEST(CheckFinite, WordTestAgreesWithThePerElementTestOnAdversarialBits) {
  std::mt19937_64 rng(FreshSeed());
  for (DType dt : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    const size_t size = DTypeSize(dt);
    const uint32_t exp = dt == DType::kBF16 ? 0x7f80u : dt == DType::kFP16 ? 0x7c00u : 0x7f800000u;
    const uint32_t lowest_exp_bit = exp & (~exp + 1);
    const uint32_t sign = dt == DType::kFP32 ? 0x80000000u : 0x8000u;
    const uint32_t mantissa = lowest_exp_bit - 1;
    auto random_finite = [&]() -> uint32_t {
      uint32_t v;
      switch (rng() % 4) {
        case 0:  // largest exponent short of all ones
          v = (exp - lowest_exp_bit) | (uint32_t(rng()) & mantissa);
          break;
        case 1:  // smallest normal
          v = lowest_exp_bit | (uint32_t(rng()) & mantissa);
          break;
        case 2:
          v = uint32_t(rng()) & mantissa;  // subnormal or zero
          break;
        default:
          v = uint32_t(rng()) & ~exp;  // any exponent but all ones
          if ((v & exp) == 0) v |= lowest_exp_bit;
      }
      return (rng() & 1) ? v | sign : v;
    };
    for (int trial = 0; trial < 300; ++trial) {
      const size_t count = 1 + rng() % 700, offset = rng() % 4;
      std::vector<uint8_t> buf((count + offset) * size + 1);
      uint8_t* data = buf.data() + offset * size + (trial % 2);  // odd addresses too
      auto put = [&](size_t i, uint32_t v) { std::memcpy(data + i * size, &v, size); };
      for (size_t i = 0; i < count; ++i) put(i, random_finite());
      size_t want = count;
      if (trial % 3 != 0) {  // two of three trials carry a non-finite value
        want = rng() % count;
        put(want, exp | (uint32_t(rng()) & mantissa) | ((rng() & 1) ? sign : 0));
      }
      auto status = CheckFinite(data, dt, count, "v");
      if (want == count) {
        EXPECT_TRUE(status.ok()) << DTypeName(dt) << " count=" << count << ": " << status;
      } else {
        EXPECT_NE(status.message().find(absl::StrCat("v: element ", want, " ")),
                  absl::string_view::npos)
            << DTypeName(dt) << " count=" << count << ": " << status;
      }
    }
  }
}

TEST(DTypeConversions, RoundTripAndRounding) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(FloatToBf16(1.00390625f), 0x3f80);  // halfway: round to even
  EXPECT_EQ(FloatToFp16(1.0f), 0x3c00);
  EXPECT_EQ(Fp16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(FloatToFp16(65520.0f), 0x7c00);  // overflows to infinity
  EXPECT_EQ(Fp16ToFloat(0x0001), 5.9604644775390625e-8f);
  EXPECT_EQ(FloatToFp16(5.9604644775390625e-8f), 0x0001);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1000.0f, 1000.0f);
  for (int i = 0; i < 10000; ++i) {
    float v = u(rng);
    EXPECT_EQ(FloatToFp16(Fp16ToFloat(FloatToFp16(v))), FloatToFp16(v));
    EXPECT_NEAR(Fp16ToFloat(FloatToFp16(v)), v, std::fabs(v) / 1024);
    EXPECT_NEAR(Bf16ToFloat(FloatToBf16(v)), v, std::fabs(v) / 128);
  }
}

}  // namespace
}  // namespace moe::testing

namespace moe {
// Short names in test listings instead of the struct's bytes.
void PrintTo(const FamilyPreset& p, std::ostream* os) { *os << p.name; }
}  // namespace moe

namespace moe::testing {
namespace {

// The reference's ids and weights laid out as a backend writes them ([token][slot]).
void ReferenceOutputs(const std::vector<ReferenceToken>& ref, std::vector<int32_t>* ids,
                      std::vector<float>* w) {
  for (const auto& r : ref) {
    ids->insert(ids->end(), r.ids.begin(), r.ids.end());
    for (double v : r.weights) w->push_back(static_cast<float>(v));
  }
}

TEST(CompareWithReference, CatchesWrongIdsWeightsAndNan) {
  RouterSpec spec = FindPreset("qwen3_30b").value().spec;
  RouterInputs in = MakeRouterInputs(spec, 4, DType::kBF16, DType::kBF16, FreshSeed());
  auto ref = in.Reference();
  std::vector<int32_t> ids;
  std::vector<float> w;
  ReferenceOutputs(ref, &ids, &w);
  EXPECT_EQ(CompareWithReference(spec, ref, ids.data(), w.data(), 1e-3), "");
  auto bad_w = w;
  bad_w[5] *= 1.01f;
  EXPECT_NE(CompareWithReference(spec, ref, ids.data(), bad_w.data(), 1e-3), "");
  bad_w = w;
  bad_w[2] = std::nanf("");
  EXPECT_NE(CompareWithReference(spec, ref, ids.data(), bad_w.data(), 1e-3), "");
  auto bad_ids = ids;
  // Replace the top choice with the reference's lowest-scoring expert.
  int worst = 0;
  for (int e = 0; e < spec.experts; ++e)
    if (ref[0].selection[e] < ref[0].selection[worst]) worst = e;
  bad_ids[0] = worst;
  EXPECT_NE(CompareWithReference(spec, ref, bad_ids.data(), w.data(), 1e-3), "");
  bad_ids = ids;
  std::swap(bad_ids[0], bad_ids[7]);  // wrong order
  EXPECT_NE(CompareWithReference(spec, ref, bad_ids.data(), w.data(), 1e-3), "");
  bad_ids = ids;
  bad_ids[1] = bad_ids[0];  // repeated
  EXPECT_NE(CompareWithReference(spec, ref, bad_ids.data(), w.data(), 1e-3), "");
}

// A weight that is a raw logit (scoring kNone) may be a near-zero sum of large terms; it is
// held to the logit's rounding bound (the one the ids are judged by) on top of 1e-3
// relative. Scored weights get no such term; a weight past the bound still fails.
TEST(CompareWithReference, RawLogitWeightsAreJudgedByTheirRoundingBound) {
  RouterSpec spec = FindPreset("qwen3_30b").value().spec;
  ASSERT_NE(spec.scoring, Scoring::kNone);
  for (const auto& r : MakeRouterInputs(spec, 2, DType::kBF16, DType::kBF16, 1).Reference())
    for (double t : r.weight_tolerance) EXPECT_EQ(t, 0.0);
  spec.scoring = Scoring::kNone;
  spec.renormalize = false;
  RouterInputs in = MakeRouterInputs(spec, 4, DType::kBF16, DType::kBF16, FreshSeed());
  auto ref = in.Reference();
  std::vector<int32_t> ids;
  std::vector<float> w;
  ReferenceOutputs(ref, &ids, &w);
  const double tol = ref[0].weight_tolerance[0], want = ref[0].weights[0];
  ASSERT_GT(tol, 0.0);
  auto near = w;
  near[0] = static_cast<float>(want + 0.5 * tol);
  EXPECT_EQ(CompareWithReference(spec, ref, ids.data(), near.data(), 1e-3), "");
  auto far = w;
  far[0] = static_cast<float>(want + 2 * (tol + 1e-3 * std::fabs(want) + 1e-6));
  EXPECT_NE(CompareWithReference(spec, ref, ids.data(), far.data(), 1e-3), "");
}

}  // namespace
}  // namespace moe::testing
