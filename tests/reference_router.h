// A naive double-precision reference of the router (tests only), written apart from the
// backends: sorts instead of selecting, computes every score in double. It also reports
// how close each token's decisions were, so comparisons can tell a real mismatch from
// a tie within rounding.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/router_spec.h"

namespace moe::testing {

struct ReferenceToken {
  std::vector<int32_t> ids;       // [top_k], descending selection order
  std::vector<double> weights;    // [top_k]
  std::vector<double> selection;  // [experts] selection scores
  std::vector<double> logits;     // [experts], router bias included
  std::vector<double> tolerance;  // [experts] rounding tolerance of each selection score
  // [top_k] rounding bound of each weight that is a raw logit (scoring kNone): such a
  // weight can be a near-zero sum of large terms, which no fp32 GEMM gets to a relative
  // precision; 0 for the scored weights.
  std::vector<double> weight_tolerance;
  bool group_near_tie = false;  // the kept groups were decided within rounding
};

// hidden: [tokens, hidden] and weight: [experts, hidden] as exact float values of the
// inputs (bf16/fp16 converted exactly). Biases may be empty when the spec has none.
std::vector<ReferenceToken> ReferenceRoute(const RouterSpec& spec, int tokens,
                                           const std::vector<float>& hidden,
                                           const std::vector<float>& weight,
                                           const std::vector<float>& router_bias,
                                           const std::vector<float>& correction_bias);

// Checks one backend's output for all tokens against the reference. Returns an empty
// string when it matches: ids equal except where the reference's boundary scores are
// within rounding; weights within rel_tol (relative, plus 1e-6 and a raw-logit weight's
// rounding bound) where the ids match; weights finite everywhere. Otherwise a description of the
// first mismatch.
std::string CompareWithReference(const RouterSpec& spec, const std::vector<ReferenceToken>& ref,
                                 const int32_t* ids, const float* weights, double rel_tol);

}  // namespace moe::testing
