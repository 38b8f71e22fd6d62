#include "server/serving_state.h"

namespace moe {

const char* ServingPhaseName(ServingPhase phase) {
  switch (phase) {
    case ServingPhase::kLoading:
      return "loading";
    case ServingPhase::kServing:
      return "serving";
    case ServingPhase::kDeviceFailed:
      return "device_failed";
    case ServingPhase::kDraining:
      return "draining";
  }
  return "unknown";
}

void ServingState::Set(ServingPhase phase) {
  ServingPhase now = phase_.load(std::memory_order_acquire);
  // Compare-exchange, so a drain racing the batcher's failure report cannot undo it.
  while (now != ServingPhase::kDeviceFailed &&
         !phase_.compare_exchange_weak(now, phase, std::memory_order_acq_rel)) {
  }
}

}  // namespace moe
