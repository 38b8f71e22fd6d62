// The routing epilogue on the CPU: one token's logits -> expert ids and weights,
// following RouterSpec's semantics exactly (see router_spec.h). Stateless and
// thread-safe; the caller provides scratch space.
#pragma once

#include <cstdint>

#include "kernels/router_spec.h"

namespace moe {

// Floats of scratch RouteOneToken needs.
inline int EpilogueScratchFloats(const RouterSpec& spec) { return 2 * spec.experts + 64; }

// logits: [experts], router bias already added. correction_bias may be null unless the
// spec has one. ids/weights: [top_k]. scratch: EpilogueScratchFloats(spec) floats.
void RouteOneToken(const RouterSpec& spec, const float* logits, const float* correction_bias,
                   int32_t* ids, float* weights, float* scratch);

}  // namespace moe
