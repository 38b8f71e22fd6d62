// The CUDA backend: weights uploaded once per model. Batches run on kSlots executor slots
// — each a stream, its events, pinned staging buffers, device buffers and its own
// CudaRouterPlans per (model, token bucket, dtype) — so two batches are in flight at once
// (one copying while the other computes). A batch is: the hidden states in (a stage-in
// kernel reading mapped host memory, with the router launched under PDL so its weights
// stream meanwhile; for batches over 256 KiB, or where the device cannot map host memory, a
// copy-engine transfer),
// the router kernel (writing its outputs straight into page-locked host memory where the
// device can; else copy-outs follow). With graphs on, each (model, layer, token bucket,
// dtype, logits) gets one CUDA graph per slot of that sequence, captured on first use and
// replayed after: one launch per batch. A graph computes the whole bucket (rows past the
// batch hold earlier inputs, and their outputs are ignored; tokens are independent).
// The stage-in kernel takes its source from cells the host fills before each launch: the
// slot's pinned_in after a staging copy, or, for a lone request parsed into a block of the
// backend's input pool (page-locked, mapped; input_pool()), that block itself, with no
// copy on the host.
// Hidden states are checked for NaN and infinities on the device as they pass (the stage-in
// kernel, or a check kernel after a copy-engine transfer), marking rows the batcher turns
// into INVALID_ARGUMENT for their request alone (ChecksFiniteOnDevice). Device time: the device
// clock around stage-in batches, CUDA events around the others. Any CUDA failure marks the backend
// unhealthy (fail-stop: the health service then says NOT_SERVING and an orchestrator restarts the
// process).
#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/backend.h"
#include "server/streaming_copy.h"

#ifdef MOE_HAVE_CUDA
#include <cstring>

#include "kernels/config_description.h"
#include "kernels/cuda_device.h"
#include "kernels/cuda_raii.h"
#include "kernels/cuda_router.h"
#include "kernels/stage_in.h"
#include "kernels/status_macros.h"
#endif

namespace moe {

#ifdef MOE_HAVE_CUDA
namespace {

constexpr int kSlots = 2;

// Plans are made per power-of-two token bucket; a plan serves any count up to its bucket.
int TokenBucket(int tokens) {
  int b = 1;
  while (b < tokens) b *= 2;
  return std::min(b, kMaxTokens);
}

// Batches with up to this many bytes of hidden states (per token bucket) go in by the
// stage-in kernel; larger ones by the copy engine. A large copy by the engine runs beside the
// other slot's kernels, where the stage-in kernel would hold the router's CTAs waiting on a
// long PCIe read (H100, 64 streaming callers of 16 tokens, all batches 256 tokens: 6.5k
// requests/s with the kernel for every batch, 11.8k in the previous run with the engine).
constexpr size_t kStageKernelMaxBytes = kInputBlockBytes;
// A deferred fill's marks are the stage-in's chunk marks.
static_assert(kFillChunkBytes == cuda::kStageBlockBytes, "a fill chunk is a stage-in pass");
static_assert(kFillMarkStride == cuda::kStageMarkStride, "one mark line each");

constexpr int kBuckets = 9;  // 1, 2, 4, ..., 256 tokens
constexpr int kDTypes = 3;
int BucketIndex(int bucket) {
  int i = 0;
  while ((1 << i) < bucket) ++i;
  return i;
}

// Positions of a model's plans ([bucket][dtype]) and graphs ([layer][bucket][dtype][logits]).
size_t PlanIndex(int bucket, DType dtype) {
  return size_t(BucketIndex(bucket)) * kDTypes + int(dtype);
}
size_t GraphIndex(int layer, int bucket, DType dtype, bool logits) {
  return (size_t(layer) * kBuckets * kDTypes + PlanIndex(bucket, dtype)) * 2 + logits;
}

// A slot's plans and graphs for one model, found by position: no string-keyed lookups on
// the hot path (they cost 1-2 us a batch at one caller on the H100 host).
struct SlotModelState {
  std::vector<std::unique_ptr<cuda::CudaRouterPlan>> plans;  // PlanIndex
  std::vector<CudaGraphExec> graphs;                         // GraphIndex
};

struct ResidentModel {
  std::shared_ptr<const RouterModel> model;  // host copy: spec and shapes
  DeviceBuffer weights;                      // [layers, experts, hidden]
  DeviceBuffer biases;                       // [layers, 2, experts]: router, correction
  size_t layer_bytes = 0;
  // Per slot (Slot::index); only the thread holding that slot touches its entry.
  mutable std::vector<SlotModelState> per_slot;
  // Configs tuned by the first slot to need them (PlanIndex), reused by the others, with
  // where each came from (reported by KernelChoices).
  struct Tuned {
    cuda::DecomposeKConfig config;
    cuda::ConfigSource source = cuda::ConfigSource::kHeuristic;
    float us = 0;
  };
  mutable absl::Mutex tuned_mu;
  mutable std::vector<std::optional<Tuned>> tuned ABSL_GUARDED_BY(tuned_mu);
};

// One executor: everything a batch in flight needs for itself.
struct Slot {
  int index = 0;  // into ResidentModel::per_slot
  CudaStream stream;
  CudaEvent start, stop;
  PinnedBuffer pinned_in, pinned_out;
  DeviceBuffer dev_in, dev_out;  // dev_out only without mapped_out
  // pinned_out as the device sees it, when the device can write host memory directly:
  // the kernel then writes its outputs there and no copy-out is needed (two copy nodes
  // fewer, ~4 us of a lone request). Null: outputs go to dev_out and are copied out.
  char* mapped_out = nullptr;
  // pinned_in as the device sees it, when small batches go in by the stage-in kernel.
  const char* mapped_in = nullptr;
  // Where that kernel reads its source address (LaunchStageInFrom): the host names
  // mapped_in there, or a lone request's input-pool block, before each launch
  // (SetStageInSource). Host view, device view.
  PinnedBuffer source_cells;
  const void* mapped_source_cells = nullptr;
  // Those batches are timed by the device clock, not events: [start, end] ns written by the
  // stage-in kernel and a completion-stamp kernel into page-locked memory (host view, device
  // view).
  PinnedBuffer stamps;
  unsigned long long* mapped_stamps = nullptr;
  // A byte a row, set by the kernels that see the hidden states when the row is not finite
  // (cuda::FiniteCheck): the host's view and the device's.
  PinnedBuffer nonfinite;
  uint8_t* mapped_nonfinite = nullptr;
};

class CudaBackend : public RouterBackend {
 public:
  CudaBackend(cuda::DeviceInfo info, CudaBackendOptions options)
      : info_(std::move(info)), options_(std::move(options)) {}

  absl::Status Init() {
    CUDA_RETURN_STATUS_IF_ERROR(cudaSetDevice(info_.ordinal));
    const size_t hidden_bytes = size_t(kMaxTokens) * kMaxHidden * 4;
    const size_t out_bytes = size_t(kMaxTokens) * (kMaxExperts + 2 * kMaxTopK) * 4;
    for (int i = 0; i < kSlots; ++i) {
      auto slot = std::make_unique<Slot>();
      ASSIGN_OR_RETURN(slot->stream, MakeStream());
      ASSIGN_OR_RETURN(slot->start, MakeEvent());
      ASSIGN_OR_RETURN(slot->stop, MakeEvent());
      ASSIGN_OR_RETURN(slot->pinned_in, PinnedBuffer::Allocate(hidden_bytes));
      std::memset(slot->pinned_in.get(), 0, hidden_bytes);  // defined rows past a first batch
      ASSIGN_OR_RETURN(slot->pinned_out, PinnedBuffer::Allocate(out_bytes));
      ASSIGN_OR_RETURN(slot->dev_in, DeviceBuffer::Allocate(hidden_bytes));
      void* mapped = nullptr;
      if (info_.can_map_host_memory &&
          cudaHostGetDevicePointer(&mapped, slot->pinned_out.get(), 0) == cudaSuccess)
        slot->mapped_out = static_cast<char*>(mapped);
      cudaGetLastError();  // no mapping is not an error: copy-outs are used instead
      if (options_.zero_copy_input && info_.can_map_host_memory &&
          cudaHostGetDevicePointer(&mapped, slot->pinned_in.get(), 0) == cudaSuccess) {
        ASSIGN_OR_RETURN(slot->stamps, PinnedBuffer::Allocate(2 * sizeof(unsigned long long)));
        void* stamps = nullptr;
        ASSIGN_OR_RETURN(slot->source_cells, PinnedBuffer::Allocate(cuda::kStageSourceCellsBytes));
        void* cells = nullptr;
        if (cudaHostGetDevicePointer(&stamps, slot->stamps.get(), 0) == cudaSuccess &&
            cudaHostGetDevicePointer(&cells, slot->source_cells.get(), 0) == cudaSuccess) {
          slot->mapped_in = static_cast<const char*>(mapped);
          slot->mapped_stamps = static_cast<unsigned long long*>(stamps);
          slot->mapped_source_cells = cells;
          cuda::SetStageInSource(slot->source_cells.get(), slot->mapped_in,
                                 cuda::kStageSourceCells * cuda::kStageBlockBytes);
        }
      }
      cudaGetLastError();  // nor here: a copy-engine transfer is used instead
      if (info_.can_map_host_memory) {
        ASSIGN_OR_RETURN(slot->nonfinite, PinnedBuffer::Allocate(kMaxTokens));
        if (cudaHostGetDevicePointer(&mapped, slot->nonfinite.get(), 0) == cudaSuccess)
          slot->mapped_nonfinite = static_cast<uint8_t*>(mapped);
      }
      cudaGetLastError();  // without it the host checks hidden states (ChecksFiniteOnDevice)
      if (slot->mapped_out == nullptr) {
        ASSIGN_OR_RETURN(slot->dev_out, DeviceBuffer::Allocate(out_bytes));
      }
      slot->index = i;
      free_slots_.push_back(slot.get());
      slots_.push_back(std::move(slot));
    }
    // Asked on every request and batch; fixed once the slots exist.
    checks_finite_on_device_ = std::all_of(slots_.begin(), slots_.end(), [](const auto& slot) {
      return slot->mapped_nonfinite != nullptr;
    });
    return MakeInputPool();
  }

  std::string name() const override { return "cuda"; }
  std::string device() const override { return info_.name; }
  int concurrency() const override { return kSlots; }
  // Every batch's rows are checked as they pass: by the stage-in kernel, or by a check
  // kernel after a copy-engine transfer. Needs device-mapped host memory for the marks.
  bool ChecksFiniteOnDevice() const override { return checks_finite_on_device_; }
  bool healthy() const override { return healthy_.load(); }
  InputPool* input_pool() override { return input_pool_.get(); }
  // With chunk marks, a lone request's stage-in waits for each chunk on the device.
  bool StagesWhileFilling() const override {
    return input_pool_ != nullptr && input_pool_->has_chunk_marks();
  }

  absl::Status LoadModel(const RouterModel& model) override {
    CUDA_RETURN_STATUS_IF_ERROR(cudaSetDevice(info_.ordinal));
    auto r = std::make_shared<ResidentModel>();
    r->model = std::make_shared<const RouterModel>(model);
    r->layer_bytes = model.layers[0].weight.size();
    r->per_slot.resize(kSlots);
    for (SlotModelState& state : r->per_slot) {
      state.plans.resize(kBuckets * kDTypes);
      state.graphs.resize(size_t(model.num_layers()) * kBuckets * kDTypes * 2);
    }
    {
      absl::MutexLock lock(&r->tuned_mu);
      r->tuned.resize(kBuckets * kDTypes);
    }
    const size_t e = model.spec.experts;
    ASSIGN_OR_RETURN(r->weights, DeviceBuffer::Allocate(r->layer_bytes * model.num_layers()));
    ASSIGN_OR_RETURN(r->biases, DeviceBuffer::Allocate(2 * 4 * e * model.num_layers()));
    for (int l = 0; l < model.num_layers(); ++l) {
      const auto& layer = model.layers[l];
      CUDA_RETURN_STATUS_IF_ERROR(cudaMemcpy(r->weights.as<char>() + r->layer_bytes * l,
                                             layer.weight.data(), r->layer_bytes,
                                             cudaMemcpyHostToDevice));
      if (!layer.router_bias.empty())
        CUDA_RETURN_STATUS_IF_ERROR(cudaMemcpy(r->biases.as<float>() + 2 * e * l,
                                               layer.router_bias.data(), 4 * e,
                                               cudaMemcpyHostToDevice));
      if (!layer.correction_bias.empty())
        CUDA_RETURN_STATUS_IF_ERROR(cudaMemcpy(r->biases.as<float>() + 2 * e * l + e,
                                               layer.correction_bias.data(), 4 * e,
                                               cudaMemcpyHostToDevice));
    }
    RETURN_IF_ERROR(WarmUp(*r));
    absl::MutexLock lock(&mu_);
    models_[model.name] = std::move(r);
    return absl::OkStatus();
  }

  std::vector<KernelChoice> KernelChoices(const std::string& name) const override {
    std::shared_ptr<ResidentModel> r;
    {
      absl::MutexLock lock(&mu_);
      auto it = models_.find(name);
      if (it == models_.end()) return {};
      r = it->second;
    }
    std::vector<KernelChoice> out;
    absl::MutexLock lock(&r->tuned_mu);
    for (int bucket = 1; bucket <= kMaxTokens; bucket *= 2) {
      for (DType dtype : {DType::kBF16, DType::kFP16, DType::kFP32}) {
        const std::optional<ResidentModel::Tuned>& t = r->tuned[PlanIndex(bucket, dtype)];
        if (!t) continue;
        out.push_back({bucket, dtype, cuda::DescribeDecomposeKConfig(t->config),
                       cuda::ConfigSourceName(t->source), t->us});
      }
    }
    return out;
  }

  absl::StatusOr<double> Route(const std::string& name, int layer, const BatchIO& io) override {
    std::shared_ptr<ResidentModel> r;
    {
      absl::MutexLock lock(&mu_);
      auto it = models_.find(name);
      if (it == models_.end())
        return absl::NotFoundError(absl::StrCat("model: '", name, "' not loaded"));
      r = it->second;
    }
    if (layer < 0 || layer >= r->model->num_layers())
      return absl::NotFoundError(absl::StrCat("layer: ", layer, " out of range"));
    if (!healthy_) return absl::UnavailableError("the GPU failed earlier; restart the server");
    Slot* slot = AcquireSlot();
    auto result = RouteOnSlot(*r, layer, io, *slot);
    ReleaseSlot(slot);
    if (!result.ok() && result.status().code() == absl::StatusCode::kInternal) healthy_ = false;
    return result;
  }

 private:
  Slot* AcquireSlot() {
    absl::MutexLock lock(&slots_mu_);
    slots_mu_.Await(absl::Condition(
        +[](std::deque<Slot*>* free) { return !free->empty(); }, &free_slots_));
    Slot* s = free_slots_.front();
    free_slots_.pop_front();
    return s;
  }
  void ReleaseSlot(Slot* s) {
    absl::MutexLock lock(&slots_mu_);
    free_slots_.push_back(s);
  }

  // The blocks requests are parsed into, when every slot's stage-in can read them in place.
  absl::Status MakeInputPool() {
    const int blocks = options_.input_pool_blocks;
    const bool in_place = std::all_of(slots_.begin(), slots_.end(), [](const auto& slot) {
      return slot->mapped_source_cells != nullptr;
    });
    if (blocks <= 0 || !in_place) return absl::OkStatus();
    ASSIGN_OR_RETURN(input_region_, PinnedBuffer::Allocate(size_t(blocks) * kInputBlockBytes));
    // Defined contents: a padded batch reads its block past the request's rows.
    std::memset(input_region_.get(), 0, size_t(blocks) * kInputBlockBytes);
    void* mapped = nullptr;
    if (cudaHostGetDevicePointer(&mapped, input_region_.get(), 0) != cudaSuccess) {
      cudaGetLastError();  // no pool: requests are parsed into heap memory and staged
      input_region_ = PinnedBuffer();
      return absl::OkStatus();
    }
    input_pool_ = std::make_unique<InputPool>(input_region_.as<char>(), mapped, kInputBlockBytes,
                                              blocks, options_.pinned_input_streaming_stores);
    if (!options_.stage_while_filling) return absl::OkStatus();
    // The blocks' chunk marks: requests may then be handed over before their bytes are in.
    const size_t marks_bytes = size_t(blocks) * InputPool::marks_bytes_per_block(kInputBlockBytes);
    ASSIGN_OR_RETURN(marks_region_, PinnedBuffer::Allocate(marks_bytes));
    std::memset(marks_region_.get(), 0, marks_bytes);
    void* mapped_marks = nullptr;
    if (cudaHostGetDevicePointer(&mapped_marks, marks_region_.get(), 0) != cudaSuccess) {
      cudaGetLastError();  // no marks: every request is copied in before it is handed over
      marks_region_ = PinnedBuffer();
      return absl::OkStatus();
    }
    input_pool_->SetChunkMarks(marks_region_.as<char>(), mapped_marks);
    return absl::OkStatus();
  }

  // Where a batch's outputs land on the host (pinned_out: ids, weights, logits, each sized
  // for kMaxTokens rows) and where the kernel writes them.
  struct Outputs {
    char *ids, *weights, *logits;  // host
    RouteArgs args;                // the kernel's arguments; outputs in pinned_out when mapped
  };

  // Whether a batch of this bucket goes in by the stage-in kernel (and the router is launched
  // under PDL, with a plan tuned so), not the copy engine.
  static bool StagesByKernel(const Slot& slot, const RouterSpec& spec, int bucket, DType dtype) {
    return slot.mapped_in != nullptr &&
           size_t(bucket) * spec.hidden * DTypeSize(dtype) <= kStageKernelMaxBytes;
  }

  // Enqueues the hidden states' way in, the kernel for `tokens` rows and, when the outputs
  // are not mapped, the copy-outs. Timing: the device clock stamps where the stage-in
  // kernel is used (no event nodes: ~4 us less graph launch); else the slot's events
  // (`capturing`: they become graph nodes).
  cudaError_t EnqueueBatch(Slot& slot, const RouterModel& m, const Outputs& out,
                           const cuda::CudaRouterPlan& plan, int tokens, DType dtype,
                           bool capturing) {
    cudaStream_t stream = slot.stream.get();
    const size_t in_bytes = size_t(tokens) * m.spec.hidden * DTypeSize(dtype);
    const size_t ids_bytes = size_t(tokens) * m.spec.top_k * 4;
    const RouteProblem p{m.spec, tokens, dtype, m.weight_dtype};
    // External records become event nodes of a graph, so every replay times the kernel
    // (a plain record during capture only orders the capture and never fires).
    const unsigned record_flags = capturing ? cudaEventRecordExternal : cudaEventRecordDefault;
    const bool stage_kernel = StagesByKernel(slot, m.spec, TokenBucket(tokens), dtype);
    const cuda::FiniteCheck check{slot.mapped_nonfinite, size_t(m.spec.hidden) * DTypeSize(dtype),
                                  dtype};
    cudaError_t err;
    if (stage_kernel) {  // device time then includes the stage-in, which the router overlaps
      err = cuda::LaunchStageInFrom(slot.mapped_source_cells, slot.dev_in.get(), in_bytes, stream,
                                    slot.mapped_stamps, check);
    } else {
      err = cudaMemcpyAsync(slot.dev_in.get(), slot.pinned_in.get(), in_bytes,
                            cudaMemcpyHostToDevice, stream);
      if (err == cudaSuccess && check.bad_rows != nullptr)
        err = cuda::LaunchCheckFiniteRows(slot.dev_in.get(), in_bytes, check, stream);
      if (err == cudaSuccess)
        err = cudaEventRecordWithFlags(slot.start.get(), stream, record_flags);
    }
    // The bucket's plan: its config and workspace serve any smaller token count.
    if (err == cudaSuccess)
      err = cuda::LaunchDecomposeKRouter(p, out.args, plan.config(), plan.workspace(),
                                         plan.workspace_bytes(), stream, /*pdl=*/stage_kernel);
    if (err == cudaSuccess)
      err = stage_kernel ? cuda::LaunchCompletionStamp(slot.mapped_stamps + 1, stream)
                         : cudaEventRecordWithFlags(slot.stop.get(), stream, record_flags);
    if (slot.mapped_out != nullptr) return err;
    if (err == cudaSuccess)
      err =
          cudaMemcpyAsync(out.ids, out.args.expert_ids, ids_bytes, cudaMemcpyDeviceToHost, stream);
    if (err == cudaSuccess)
      err = cudaMemcpyAsync(out.weights, out.args.expert_weights, ids_bytes, cudaMemcpyDeviceToHost,
                            stream);
    if (err == cudaSuccess && out.args.logits)
      err = cudaMemcpyAsync(out.logits, out.args.logits, size_t(tokens) * m.spec.experts * 4,
                            cudaMemcpyDeviceToHost, stream);
    return err;
  }

  // One graph per (model, layer, bucket, dtype, logits) and slot: EnqueueBatch captured.
  absl::StatusOr<CudaGraphExec> CaptureBatchGraph(Slot& slot, const RouterModel& m,
                                                  const Outputs& out,
                                                  const cuda::CudaRouterPlan& plan, int bucket,
                                                  DType dtype) {
    cudaStream_t stream = slot.stream.get();
    CUDA_RETURN_STATUS_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    cudaError_t err = EnqueueBatch(slot, m, out, plan, bucket, dtype, /*capturing=*/true);
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream, &graph);
    CudaGraph owned(graph);
    if (err == cudaSuccess) err = end;
    CUDA_RETURN_STATUS_IF_ERROR(err);
    cudaGraphExec_t exec;
    CUDA_RETURN_STATUS_IF_ERROR(cudaGraphInstantiate(&exec, graph, 0));
    return CudaGraphExec(exec);
  }

  // The kernel's arguments and the host side of the outputs for (layer) on `slot`.
  Outputs MakeOutputs(Slot& slot, const ResidentModel& r, int layer, bool logits) {
    const RouterSpec& spec = r.model->spec;
    const size_t e = spec.experts;
    // Output layout, the same in dev_out and pinned_out: logits, ids, weights.
    const size_t ids_offset = size_t(kMaxTokens) * kMaxExperts * 4;
    const size_t w_offset = ids_offset + size_t(kMaxTokens) * kMaxTopK * 4;
    char* host = slot.pinned_out.as<char>();
    char* kernel_out = slot.mapped_out != nullptr ? slot.mapped_out : slot.dev_out.as<char>();
    return Outputs{
        host + ids_offset, host + w_offset, host,
        RouteArgs{slot.dev_in.get(), r.weights.as<char>() + r.layer_bytes * layer,
                  spec.has_router_bias ? r.biases.as<float>() + 2 * e * layer : nullptr,
                  spec.has_correction_bias ? r.biases.as<float>() + 2 * e * layer + e : nullptr,
                  reinterpret_cast<int32_t*>(kernel_out + ids_offset),
                  reinterpret_cast<float*>(kernel_out + w_offset),
                  logits ? reinterpret_cast<float*>(kernel_out) : nullptr}};
  }

  // The slot's plan for (model, bucket, dtype). The first slot to need one tunes it (when
  // autotuning); the others reuse that config, so slots agree and tune once.
  absl::StatusOr<cuda::CudaRouterPlan*> PlanFor(Slot& slot, const ResidentModel& r, int bucket,
                                                DType dtype, const RouteArgs& args) {
    const RouterModel& m = *r.model;
    const size_t at = PlanIndex(bucket, dtype);
    auto& plan = r.per_slot[slot.index].plans[at];
    if (plan) return plan.get();
    const RouteProblem bp{m.spec, bucket, dtype, m.weight_dtype};
    std::optional<ResidentModel::Tuned> known;
    {
      absl::MutexLock lock(&r.tuned_mu);
      known = r.tuned[at];
    }
    if (known) {
      ASSIGN_OR_RETURN(
          plan, cuda::CudaRouterPlan::CreateWithConfig(bp, known->config, slot.stream.get()));
      return plan.get();
    }
    cuda::AutotuneOptions tune;
    tune.enabled = options_.autotune;
    tune.cache_file = options_.tune_cache;
    tune.pdl = StagesByKernel(slot, m.spec, bucket, dtype);  // then launched under PDL
    tune.rotate_layers = m.num_layers();
    tune.layer_stride_bytes = r.layer_bytes;
    RouteArgs tune_args = args;
    tune_args.weight = r.weights.get();  // layer 0; the tuner rotates over the layers
    tune_args.logits = nullptr;
    ASSIGN_OR_RETURN(plan, cuda::CudaRouterPlan::Create(bp, info_.sm_count, tune, &tune_args,
                                                        slot.stream.get()));
    absl::MutexLock lock(&r.tuned_mu);
    r.tuned[at] = ResidentModel::Tuned{plan->config(), plan->config_source(), plan->tuned_micros()};
    return plan.get();
  }

  // The slot's graph for (layer, bucket, dtype, logits), captured on first use.
  absl::StatusOr<cudaGraphExec_t> GraphFor(Slot& slot, const ResidentModel& r, int layer,
                                           int bucket, DType dtype, const Outputs& out,
                                           const cuda::CudaRouterPlan& plan) {
    auto& exec =
        r.per_slot[slot.index].graphs[GraphIndex(layer, bucket, dtype, out.args.logits != nullptr)];
    if (!exec) {
      ASSIGN_OR_RETURN(exec, CaptureBatchGraph(slot, *r.model, out, plan, bucket, dtype));
    }
    return exec.get();
  }

  // Everything a batch of the model's weight dtype may need, made before the first request:
  // every token bucket's plan (autotuned once, shared by the slots) and, with graphs, every
  // (layer, bucket) graph on every slot. Otherwise the first batch of a new size would wait
  // behind autotuning — hundreds of milliseconds, seen as a p99.9 of ~360 ms at 64 callers.
  absl::Status WarmUp(const ResidentModel& r) {
    const DType dtype = r.model->weight_dtype;
    if (dtype == DType::kFP32) return absl::OkStatus();  // fp32 weights: plans on demand
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot* slot = AcquireSlot();
      absl::Status status = [&]() -> absl::Status {
        CUDA_RETURN_STATUS_IF_ERROR(cudaSetDevice(info_.ordinal));
        std::vector<Outputs> outs;  // per layer, the same for every bucket
        outs.reserve(r.model->num_layers());
        for (int layer = 0; layer < r.model->num_layers(); ++layer)
          outs.push_back(MakeOutputs(*slot, r, layer, /*logits=*/false));
        for (int bucket = 1; bucket <= kMaxTokens; bucket *= 2) {
          ASSIGN_OR_RETURN(cuda::CudaRouterPlan * plan,
                           PlanFor(*slot, r, bucket, dtype, outs[0].args));
          if (!options_.graphs) continue;
          for (int layer = 0; layer < r.model->num_layers(); ++layer)
            RETURN_IF_ERROR(GraphFor(*slot, r, layer, bucket, dtype, outs[layer], *plan).status());
        }
        return absl::OkStatus();
      }();
      ReleaseSlot(slot);
      RETURN_IF_ERROR(status);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<double> RouteOnSlot(const ResidentModel& r, int layer, const BatchIO& io,
                                     Slot& slot) {
    CUDA_RETURN_STATUS_IF_ERROR(cudaSetDevice(info_.ordinal));
    const RouterModel& m = *r.model;
    const size_t e = m.spec.experts, k = m.spec.top_k;
    cudaStream_t stream = slot.stream.get();
    const Outputs out = MakeOutputs(slot, r, layer, io.logits != nullptr);
    const size_t row_bytes = size_t(m.spec.hidden) * DTypeSize(io.hidden_dtype);
    const int bucket = TokenBucket(io.tokens);
    const bool stage_kernel = StagesByKernel(slot, m.spec, bucket, io.hidden_dtype);
    // The stage-in reads the whole bucket (a graph's size): from the request's own block when
    // it holds that much, with no copy here; else from pinned_in, after one.
    const size_t bucket_bytes = size_t(bucket) * row_bytes;
    if (stage_kernel && io.hidden_device != nullptr && io.hidden_device_bytes >= bucket_bytes) {
      const ChunkMarks pending = io.pending_marks();
      cuda::StageChunkMarks marks;  // chunks still being written, waited for on the device
      marks.device_marks = pending.device_marks;
      marks.generation = pending.generation;
      marks.chunks = pending.chunks;
      cuda::SetStageInSource(slot.source_cells.get(), io.hidden_device, bucket_bytes, marks);
    } else {
      if (io.hidden_fill != nullptr) io.hidden_fill->WaitFilled();
      const size_t bytes = size_t(io.tokens) * row_bytes;
      if (options_.pinned_input_streaming_stores) {  // the device reads them next
        StreamingCopy(slot.pinned_in.get(), io.hidden, bytes);
      } else {
        std::memcpy(slot.pinned_in.get(), io.hidden, bytes);
      }
      if (stage_kernel)
        cuda::SetStageInSource(slot.source_cells.get(), slot.mapped_in, bucket_bytes);
    }
    // The kernels only ever set marks; the rows read back are cleared before each batch.
    if (slot.mapped_nonfinite != nullptr) std::memset(slot.nonfinite.get(), 0, io.tokens);
    ASSIGN_OR_RETURN(cuda::CudaRouterPlan * plan,
                     PlanFor(slot, r, bucket, io.hidden_dtype, out.args));
    if (options_.graphs) {
      ASSIGN_OR_RETURN(cudaGraphExec_t exec,
                       GraphFor(slot, r, layer, bucket, io.hidden_dtype, out, *plan));
      CUDA_RETURN_STATUS_IF_ERROR(cudaGraphLaunch(exec, stream));
    } else {
      CUDA_RETURN_STATUS_IF_ERROR(
          EnqueueBatch(slot, m, out, *plan, io.tokens, io.hidden_dtype, /*capturing=*/false));
    }
    CUDA_RETURN_STATUS_IF_ERROR(cudaStreamSynchronize(stream));
    const size_t ids_bytes = io.tokens * k * 4;
    std::memcpy(io.ids, out.ids, ids_bytes);
    std::memcpy(io.weights, out.weights, ids_bytes);
    if (io.logits) std::memcpy(io.logits, out.logits, io.tokens * e * 4);
    if (io.nonfinite_rows != nullptr) {
      if (slot.mapped_nonfinite == nullptr)
        return absl::FailedPreconditionError("this GPU does not check hidden states");
      std::memcpy(io.nonfinite_rows, slot.nonfinite.get(), io.tokens);
    }
    if (stage_kernel) {
      const volatile unsigned long long* ns = slot.stamps.as<unsigned long long>();
      return ns[1] > ns[0] ? double(ns[1] - ns[0]) * 1e-9 : 0.0;
    }
    // Timing is diagnostics: a failure to read the events is not a device failure.
    float ms = 0;
    if (cudaEventElapsedTime(&ms, slot.start.get(), slot.stop.get()) != cudaSuccess) {
      cudaGetLastError();
      ms = 0;
    }
    return ms * 1e-3;
  }

  const cuda::DeviceInfo info_;
  const CudaBackendOptions options_;
  std::atomic<bool> healthy_{true};
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<ResidentModel>> models_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Slot>> slots_;
  // Declared after the slots, so destroyed before them; both outlive every request.
  PinnedBuffer input_region_;
  PinnedBuffer marks_region_;  // the input blocks' chunk marks
  std::unique_ptr<InputPool> input_pool_;
  bool checks_finite_on_device_ = false;  // every slot has device-mapped row marks (Init)
  absl::Mutex slots_mu_;
  std::deque<Slot*> free_slots_ ABSL_GUARDED_BY(slots_mu_);
};

}  // namespace

std::unique_ptr<RouterBackend> MakeCudaBackend(const CudaBackendOptions& options,
                                               std::string* error) {
  auto info = cuda::ProbeDevice(options.device);
  if (!info.available) {
    *error = absl::StrCat("no usable CUDA device: ", info.reason);
    return nullptr;
  }
  // Spin rather than sleep while waiting for the GPU: the batch latency is a few tens of
  // microseconds, less than a sleeping thread's wake-up. Before the context exists.
  cudaSetDevice(info.ordinal);
  cudaSetDeviceFlags(cudaDeviceScheduleSpin);
  cudaGetLastError();
  auto backend = std::make_unique<CudaBackend>(info, options);
  auto status = backend->Init();
  if (!status.ok()) {
    *error = std::string(status.message());
    return nullptr;
  }
  return backend;
}

#else

std::unique_ptr<RouterBackend> MakeCudaBackend(const CudaBackendOptions&, std::string* error) {
  *error = "this build has no CUDA support";
  return nullptr;
}

#endif

}  // namespace moe
