// What the server is doing in its life (loading its models, serving, stopped by a failed
// device, draining after a signal), read by its health answers over HTTP: the metrics
// endpoint's /healthz and /readyz (MetricsHttpServer). gRPC's health service and the
// moe_router_serving gauge are set from the same phase by the server (server_main.cc).
// HTTP probes matter where gRPC ones cannot reach: Kubernetes' built-in gRPC probes speak
// plaintext only, so a server started with --tls_cert needs HTTP ones. Thread-safe.
#pragma once

#include <atomic>

namespace moe {

enum class ServingPhase {
  kLoading,       // started, models not yet loaded: alive, not ready
  kServing,       // alive and ready
  kDeviceFailed,  // the GPU failed (a sticky CUDA error): neither; restart the process
  kDraining,      // a signal came: finishing accepted calls, taking no new ones; alive
};

// "loading", "serving", "device_failed", "draining".
const char* ServingPhaseName(ServingPhase phase);

// Ready: the phase in which new calls are routed. Alive: the process is of use, or will
// be, without a restart (a failed device is not).
inline bool IsReady(ServingPhase phase) { return phase == ServingPhase::kServing; }
inline bool IsAlive(ServingPhase phase) { return phase != ServingPhase::kDeviceFailed; }

class ServingState {
 public:
  ServingPhase phase() const { return phase_.load(std::memory_order_acquire); }
  // A failed device stays failed: a drain after it must not make the process look alive.
  void Set(ServingPhase phase);

 private:
  std::atomic<ServingPhase> phase_{ServingPhase::kLoading};
};

}  // namespace moe
