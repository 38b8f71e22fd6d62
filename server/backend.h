// RouterBackend: where batches are computed — the CPU backend or the fused CUDA kernel.
// A backend holds every loaded model's weights (resident on its device) and executes one
// batch at a time per call. Implementations are thread-safe for concurrent Route calls
// unless stated otherwise; the batcher calls Route from its worker thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/input_pool.h"
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
  // [tokens], set by a backend that checks hidden states on the device
  // (ChecksFiniteOnDevice): 1 where the row holds a NaN or an infinity, else 0. That row's
  // outputs are then meaningless; every other row's are unaffected.
  uint8_t* nonfinite_rows = nullptr;
  // The device's view of `hidden` when the backend can read it in place (a lone request's
  // block of the backend's input_pool()), and how many bytes from there it may read; else
  // null and 0.
  const void* hidden_device = nullptr;
  size_t hidden_device_bytes = 0;
  // A lone request's block, whose bytes may still be being written (HiddenBytes::BeginFill),
  // for a backend that StagesWhileFilling(): its WaitFilled() comes first on any path that
  // reads `hidden` on the host; null for a merged batch.
  const HiddenBytes* hidden_fill = nullptr;
  // The chunk marks a stage-in waits on for bytes still being written (chunks == 0: all are
  // there), asked as late as possible: a fill finished by then costs the device no poll.
  ChunkMarks pending_marks() const {
    return hidden_fill != nullptr ? hidden_fill->marks() : ChunkMarks{};
  }
};

// The kernel a backend launches for one (model, token bucket, hidden-state dtype): what an
// operator reads in the load log, the kernel-info metric and ModelInfo.kernels.
struct KernelChoice {
  int tokens = 0;  // the bucket: batches of up to this many tokens (a power of two)
  DType hidden_dtype = DType::kBF16;
  std::string config;   // cuda::DescribeDecomposeKConfig
  std::string source;   // "autotuned", "cache" or "heuristic" (cuda::ConfigSourceName)
  double tuned_us = 0;  // its median per call when autotuned at load, else 0
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
  // True when Route() marks non-finite rows (BatchIO::nonfinite_rows) as the hidden states
  // pass through the device: requests then skip the host's finite check, which at 16
  // DeepSeek-V3 tokens read 229 KB in ~19 us on the H100 host.
  virtual bool ChecksFiniteOnDevice() const { return false; }
  // Where requests' hidden states should be parsed to so that this backend reads them in
  // place (BatchIO::hidden_device); null when it has no such memory.
  virtual InputPool* input_pool() { return nullptr; }
  // True when Route() takes a lone request whose bytes are still being filled
  // (BatchIO::pending_marks); otherwise the batcher waits for the fill first.
  virtual bool StagesWhileFilling() const { return false; }
  // False once the device failed in a way the process cannot recover from.
  virtual bool healthy() const { return true; }
  // The kernels chosen so far for a loaded model, by token bucket then dtype: every bucket
  // of its weight dtype after LoadModel, others once a batch of that dtype needed one. Empty
  // for a backend with no per-bucket choice (the CPU backend) or a model not loaded.
  virtual std::vector<KernelChoice> KernelChoices(const std::string& /*model*/) const { return {}; }
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
  // Blocks of kInputBlockBytes, page-locked and mapped, that requests' hidden states are
  // parsed into (input_pool()): a lone request's stage-in then reads its block in place,
  // with no staging copy on the host. Needs zero_copy_input; 0: no pool.
  int input_pool_blocks = 128;
  // Hidden states are copied into page-locked memory the device reads (those blocks, and
  // the slots' staging buffers) with non-temporal stores (StreamingCopy): no fetching of
  // lines the device read last time, and no snooping of the copying core by its reads.
  bool pinned_input_streaming_stores = true;
  // Input blocks get chunk marks, so a lone request is handed to its worker before its
  // hidden states are copied out of gRPC's message, and the stage-in waits for each chunk
  // on the device: the launch and the transfer overlap the copy.
  bool stage_while_filling = true;
};

// The input pool's block size: the most hidden-state bytes a batch goes in with by the
// stage-in kernel (larger ones take a copy-engine transfer from a staging buffer).
inline constexpr size_t kInputBlockBytes = 256 << 10;

// Null with `error` set when CUDA is not compiled in or no usable device exists.
std::unique_ptr<RouterBackend> MakeCudaBackend(const CudaBackendOptions& options,
                                               std::string* error);

}  // namespace moe
