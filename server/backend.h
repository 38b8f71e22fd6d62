// RouterBackend: where batches are computed — the CPU backend or the fused CUDA kernel.
// A backend holds every loaded model's weights (resident on its device) and executes one
// batch at a time per call. Implementations are thread-safe for concurrent Route calls
// unless stated otherwise; the batcher calls Route from its worker thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/router_model.h"

namespace moe {

// Host memory for one request's hidden states that a backend can read in place (the CUDA
// backend: page-locked memory mapped into the device). The request's bytes are copied into
// it once, on the thread that validates them, in the same pass as the finite check; the
// batch's worker then copies nothing. Released (back to its backend's pool) on destruction.
class InputBuffer {
 public:
  virtual ~InputBuffer() = default;
  virtual char* data() = 0;
  virtual size_t capacity() const = 0;
};

// One batch of tokens of one (model, layer): host buffers.
struct BatchIO {
  const void* hidden = nullptr;  // [tokens, hidden]
  DType hidden_dtype = DType::kBF16;
  int tokens = 0;
  int32_t* ids = nullptr;    // [tokens, top_k]
  float* weights = nullptr;  // [tokens, top_k]
  float* logits = nullptr;   // optional [tokens, experts]
  // The buffer `hidden` lies in, when the batch is one request staged in the backend's
  // own InputBuffer (AcquireInputBuffer); then the backend may read it in place.
  InputBuffer* hidden_buffer = nullptr;
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
  // A buffer for `bytes` of one request's hidden states that Route() reads in place, or
  // null where the backend gains nothing from one (the CPU backend; the CUDA backend for
  // small or large requests, or when its pool is exhausted): then the request's own bytes
  // are used. Thread-safe.
  virtual std::unique_ptr<InputBuffer> AcquireInputBuffer(size_t /*bytes*/) { return nullptr; }
  // False once the device failed in a way the process cannot recover from.
  virtual bool healthy() const { return true; }
};

std::unique_ptr<RouterBackend> MakeCpuBackend(int threads);

struct CudaBackendOptions {
  int device = 0;          // CUDA device ordinal
  bool autotune = true;    // time the kernel's candidate configs at model load
  std::string tune_cache;  // file remembering tuned configs ("" for none)
  // Replay one CUDA graph per (model, layer, token bucket) instead of launching.
  bool graphs = true;
  // The router kernel's stage-in kernel reads the hidden states from mapped page-locked
  // memory while the router streams its weights (kernels/stage_in.h); false, or a device
  // that cannot map host memory: a copy-engine transfer before the router kernel.
  bool zero_copy_input = true;
  // A lone request of 64-256 KiB is copied into a page-locked buffer by the thread that
  // checks it (AcquireInputBuffer) and read there by the device; false: by the worker into
  // the slot's staging buffer, as every other batch. Needs zero_copy_input.
  bool in_place_input = true;
};

// Null with `error` set when CUDA is not compiled in or no usable device exists.
std::unique_ptr<RouterBackend> MakeCudaBackend(const CudaBackendOptions& options,
                                               std::string* error);

}  // namespace moe
