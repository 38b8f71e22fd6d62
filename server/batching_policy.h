// The batching decision as a pure function, tested with a fake clock: given the oldest
// queued request's arrival, the tokens queued and the limits, launch now or wait until
// when? Stateless; thread-safe.
#pragma once

#include <cstdint>

namespace moe {

struct BatchingLimits {
  int max_batch_tokens = 256;
  int64_t max_queue_delay_us = 0;  // 0: launch as soon as the device is free
};

struct BatchDecision {
  bool launch_now = false;
  int64_t wait_until_us = 0;  // when !launch_now: re-decide at this time (or on arrival)
};

// now_us and oldest_arrival_us on the same clock; queued_tokens > 0.
inline BatchDecision DecideBatch(int64_t now_us, int64_t oldest_arrival_us, int queued_tokens,
                                 const BatchingLimits& limits) {
  if (queued_tokens >= limits.max_batch_tokens || limits.max_queue_delay_us <= 0) return {true, 0};
  const int64_t deadline = oldest_arrival_us + limits.max_queue_delay_us;
  if (now_us >= deadline) return {true, 0};
  return {false, deadline};
}

}  // namespace moe
