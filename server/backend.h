// RouterBackend: where batches are computed — the CPU backend or the fused CUDA kernel.
// A backend holds every loaded model's weights (resident on its device) and executes one
// batch at a time per call. Implementations are thread-safe for concurrent Route calls
// unless stated otherwise; the batcher calls Route from its worker thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/router_model.h"

namespace moe {

// One batch of tokens of one (model, layer): host buffers.
struct BatchIO {
  const void* hidden = nullptr;  // [tokens, hidden]
  DType hidden_dtype = DType::kBF16;
  int tokens = 0;
  int32_t* ids = nullptr;    // [tokens, top_k]
  float* weights = nullptr;  // [tokens, top_k]
  float* logits = nullptr;   // optional [tokens, experts]
};

class RouterBackend {
 public:
  virtual ~RouterBackend() = default;
  virtual std::string name() const = 0;    // "cpu" or "cuda"
  virtual std::string device() const = 0;  // device description
  // Makes the model's weights resident (uploads them once).
  virtual absl::Status LoadModel(const RouterModel& model) = 0;
  // Computes a batch; returns the compute time in seconds (device time on the GPU).
  virtual absl::StatusOr<double> Route(const std::string& model, int layer, const BatchIO& io) = 0;
  // Batches this backend can compute at once (the batcher runs that many workers).
  virtual int concurrency() const { return 1; }
  // False once the device failed in a way the process cannot recover from.
  virtual bool healthy() const { return true; }
};

std::unique_ptr<RouterBackend> MakeCpuBackend(int threads);
// Null with `error` set when CUDA is not compiled in or no usable device exists.
// graphs: replay one CUDA graph per (model, layer, token bucket) instead of launching.
std::unique_ptr<RouterBackend> MakeCudaBackend(int device, bool autotune,
                                               const std::string& tune_cache, bool graphs,
                                               std::string* error);

}  // namespace moe
