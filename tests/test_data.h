// Random router inputs for tests: raw bytes in the requested dtypes plus their exact
// float values for the reference. Fresh seeds per case.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/dtype.h"
#include "kernels/router_spec.h"
#include "tests/reference_router.h"

namespace moe::testing {

struct RouterInputs {
  RouterSpec spec;
  int tokens = 0;
  DType hidden_dtype = DType::kBF16;
  DType weight_dtype = DType::kBF16;
  std::vector<uint8_t> hidden;  // raw [tokens, hidden]
  std::vector<uint8_t> weight;  // raw [experts, hidden]
  std::vector<float> router_bias;
  std::vector<float> correction_bias;
  std::vector<float> hidden_f;  // exact float values of `hidden`
  std::vector<float> weight_f;  // exact float values of `weight`

  std::vector<ReferenceToken> Reference() const {
    return ReferenceRoute(spec, tokens, hidden_f, weight_f, router_bias, correction_bias);
  }
};

// Normal(0,1) hidden states, weights scaled for unit-variance logits, small biases.
RouterInputs MakeRouterInputs(const RouterSpec& spec, int tokens, DType hidden_dtype,
                              DType weight_dtype, uint64_t seed);

// A seed that differs on every call and every run. The first is printed to stderr once per
// process, so a failure can be replayed with MOE_TEST_SEED (and the same test filter).
uint64_t FreshSeed();

// Draws a random spec's routing variant into `s`, in this order: scoring, routing order,
// router bias, correction bias, renormalisation (each uniformly).
void DrawRoutingVariant(std::mt19937& pick, RouterSpec& s);

}  // namespace moe::testing
