#include "tests/test_data.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace moe::testing {

uint64_t FreshSeed() {
  static uint64_t base = [] {
    uint64_t first =
        static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    if (const char* s = std::getenv("MOE_TEST_SEED")) first = std::strtoull(s, nullptr, 10);
    // Once per process, so a failing run (ctest prints its output) says how to replay it:
    // the same seed and the same test filter give the same inputs.
    std::fprintf(stderr, "fresh test inputs from MOE_TEST_SEED=%llu\n",
                 static_cast<unsigned long long>(first));
    return first;
  }();
  return base++;
}

void DrawRoutingVariant(std::mt19937& pick, RouterSpec& s) {
  s.scoring = static_cast<Scoring>(pick() % 3);
  s.order = static_cast<RoutingOrder>(pick() % 2);
  s.has_router_bias = pick() % 2;
  s.has_correction_bias = pick() % 2;
  s.renormalize = pick() % 2;
}

RouterInputs MakeRouterInputs(const RouterSpec& spec, int tokens, DType hidden_dtype,
                              DType weight_dtype, uint64_t seed) {
  RouterInputs in;
  in.spec = spec;
  in.tokens = tokens;
  in.hidden_dtype = hidden_dtype;
  in.weight_dtype = weight_dtype;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float w_scale = 1.0f / std::sqrt(static_cast<float>(spec.hidden));
  auto fill = [&](size_t count, DType dt, float scale, std::vector<uint8_t>* raw,
                  std::vector<float>* exact) {
    raw->resize(count * DTypeSize(dt));
    exact->resize(count);
    for (size_t i = 0; i < count; ++i) {
      StoreFromFloat(raw->data(), dt, i, scale * normal(rng));
      (*exact)[i] = LoadAsFloat(raw->data(), dt, i);
    }
  };
  fill(size_t(tokens) * spec.hidden, hidden_dtype, 1.0f, &in.hidden, &in.hidden_f);
  fill(size_t(spec.experts) * spec.hidden, weight_dtype, w_scale, &in.weight, &in.weight_f);
  if (spec.has_router_bias) {
    in.router_bias.resize(spec.experts);
    for (float& b : in.router_bias) b = 0.1f * normal(rng);
  }
  if (spec.has_correction_bias) {
    in.correction_bias.resize(spec.experts);
    for (float& b : in.correction_bias) b = 0.05f * normal(rng);
  }
  return in;
}

}  // namespace moe::testing
