// The CUDA backend: weights uploaded once per model; each batch is staged through pinned
// buffers, routed by a CudaRouterPlan per (model, token bucket, dtype) and timed with
// CUDA events. Route calls are serialised by a mutex (one stream).
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/backend.h"

#ifdef MOE_HAVE_CUDA
#include <cstring>

#include "kernels/cuda_device.h"
#include "kernels/cuda_raii.h"
#include "kernels/cuda_router.h"
#include "kernels/status_macros.h"
#endif

namespace moe {

#ifdef MOE_HAVE_CUDA
namespace {

// Plans are made per power-of-two token bucket; a plan serves any count up to its bucket.
int TokenBucket(int tokens) {
  int b = 1;
  while (b < tokens) b *= 2;
  return std::min(b, kMaxTokens);
}

class CudaBackend : public RouterBackend {
 public:
  CudaBackend(cuda::DeviceInfo info, bool autotune, std::string cache)
      : info_(std::move(info)), autotune_(autotune), cache_(std::move(cache)) {}

  absl::Status Init() {
    CUDA_RETURN_STATUS_IF_ERROR(cudaSetDevice(info_.ordinal));
    ASSIGN_OR_RETURN(stream_, MakeStream());
    ASSIGN_OR_RETURN(start_, MakeEvent());
    ASSIGN_OR_RETURN(stop_, MakeEvent());
    const size_t hidden_bytes = size_t(kMaxTokens) * kMaxHidden * 4;
    const size_t out_bytes = size_t(kMaxTokens) * kMaxExperts * 4;
    ASSIGN_OR_RETURN(pinned_in_, PinnedBuffer::Allocate(hidden_bytes));
    ASSIGN_OR_RETURN(pinned_out_, PinnedBuffer::Allocate(2 * out_bytes));
    ASSIGN_OR_RETURN(dev_in_, DeviceBuffer::Allocate(hidden_bytes));
    ASSIGN_OR_RETURN(dev_out_,
                     DeviceBuffer::Allocate(2 * out_bytes + 2 * size_t(kMaxTokens) * kMaxTopK * 4));
    return absl::OkStatus();
  }

  std::string name() const override { return "cuda"; }
  std::string device() const override { return info_.name; }

  absl::Status LoadModel(const RouterModel& model) override {
    absl::MutexLock lock(&mu_);
    CUDA_RETURN_STATUS_IF_ERROR(cudaSetDevice(info_.ordinal));
    Resident r;
    r.model = std::make_shared<RouterModel>(model);
    const size_t wbytes = model.layers[0].weight.size();
    const size_t e = model.spec.experts;
    ASSIGN_OR_RETURN(r.weights, DeviceBuffer::Allocate(wbytes * model.num_layers()));
    ASSIGN_OR_RETURN(r.biases, DeviceBuffer::Allocate(2 * 4 * e * model.num_layers()));
    for (int l = 0; l < model.num_layers(); ++l) {
      const auto& layer = model.layers[l];
      CUDA_RETURN_STATUS_IF_ERROR(cudaMemcpy(r.weights.as<char>() + wbytes * l, layer.weight.data(),
                                             wbytes, cudaMemcpyHostToDevice));
      if (!layer.router_bias.empty())
        CUDA_RETURN_STATUS_IF_ERROR(cudaMemcpy(r.biases.as<float>() + 2 * e * l,
                                               layer.router_bias.data(), 4 * e,
                                               cudaMemcpyHostToDevice));
      if (!layer.correction_bias.empty())
        CUDA_RETURN_STATUS_IF_ERROR(cudaMemcpy(r.biases.as<float>() + 2 * e * l + e,
                                               layer.correction_bias.data(), 4 * e,
                                               cudaMemcpyHostToDevice));
    }
    models_[model.name] = std::move(r);
    return absl::OkStatus();
  }

  absl::StatusOr<double> Route(const std::string& name, int layer, const BatchIO& io) override {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end())
      return absl::NotFoundError(absl::StrCat("model: '", name, "' not loaded"));
    Resident& r = it->second;
    const RouterModel& m = *r.model;
    if (layer < 0 || layer >= m.num_layers())
      return absl::NotFoundError(absl::StrCat("layer: ", layer, " out of range"));
    const int bucket = TokenBucket(io.tokens);
    auto key = std::make_tuple(bucket, int(io.hidden_dtype));
    auto& plan = r.plans[key];
    const size_t e = m.spec.experts, k = m.spec.top_k;
    const size_t wbytes = m.layers[0].weight.size();
    float* dev_logits = dev_out_.as<float>();
    int32_t* dev_ids = reinterpret_cast<int32_t*>(dev_logits + size_t(kMaxTokens) * kMaxExperts);
    float* dev_w = reinterpret_cast<float*>(dev_ids + size_t(kMaxTokens) * kMaxTopK);
    RouteArgs args{dev_in_.get(),
                   r.weights.as<char>() + wbytes * layer,
                   m.spec.has_router_bias ? r.biases.as<float>() + 2 * e * layer : nullptr,
                   m.spec.has_correction_bias ? r.biases.as<float>() + 2 * e * layer + e : nullptr,
                   dev_ids,
                   dev_w,
                   io.logits ? dev_logits : nullptr};
    const size_t in_bytes = size_t(io.tokens) * m.spec.hidden * DTypeSize(io.hidden_dtype);
    std::memcpy(pinned_in_.get(), io.hidden, in_bytes);
    CUDA_RETURN_STATUS_IF_ERROR(cudaMemcpyAsync(dev_in_.get(), pinned_in_.get(), in_bytes,
                                                cudaMemcpyHostToDevice, stream_.get()));
    if (!plan) {
      RouteProblem bp{m.spec, bucket, io.hidden_dtype, m.weight_dtype};
      cuda::AutotuneOptions tune;
      tune.enabled = autotune_;
      tune.cache_file = cache_;
      tune.rotate_layers = m.num_layers();
      tune.layer_stride_bytes = wbytes;
      RouteArgs tune_args = args;
      tune_args.weight = r.weights.get();  // layer 0; the tuner rotates over the layers
      tune_args.logits = nullptr;
      ASSIGN_OR_RETURN(
          plan, cuda::CudaRouterPlan::Create(bp, info_.sm_count, tune, &tune_args, stream_.get()));
    }
    RouteProblem p{m.spec, io.tokens, io.hidden_dtype, m.weight_dtype};
    CUDA_RETURN_STATUS_IF_ERROR(cudaEventRecord(start_.get(), stream_.get()));
    // The bucket's plan: its config and workspace serve any smaller token count.
    CUDA_RETURN_STATUS_IF_ERROR(
        cuda::LaunchDecomposeKRouter(p, args, plan->config(), plan->workspace(), stream_.get()));
    CUDA_RETURN_STATUS_IF_ERROR(cudaEventRecord(stop_.get(), stream_.get()));
    char* out = pinned_out_.as<char>();
    CUDA_RETURN_STATUS_IF_ERROR(
        cudaMemcpyAsync(out, dev_ids, io.tokens * k * 4, cudaMemcpyDeviceToHost, stream_.get()));
    CUDA_RETURN_STATUS_IF_ERROR(cudaMemcpyAsync(out + io.tokens * k * 4, dev_w, io.tokens * k * 4,
                                                cudaMemcpyDeviceToHost, stream_.get()));
    if (io.logits)
      CUDA_RETURN_STATUS_IF_ERROR(cudaMemcpyAsync(out + 2 * io.tokens * k * 4, dev_logits,
                                                  io.tokens * e * 4, cudaMemcpyDeviceToHost,
                                                  stream_.get()));
    CUDA_RETURN_STATUS_IF_ERROR(cudaStreamSynchronize(stream_.get()));
    std::memcpy(io.ids, out, io.tokens * k * 4);
    std::memcpy(io.weights, out + io.tokens * k * 4, io.tokens * k * 4);
    if (io.logits) std::memcpy(io.logits, out + 2 * io.tokens * k * 4, io.tokens * e * 4);
    float ms = 0;
    CUDA_RETURN_STATUS_IF_ERROR(cudaEventElapsedTime(&ms, start_.get(), stop_.get()));
    return ms * 1e-3;
  }

 private:
  struct Resident {
    std::shared_ptr<RouterModel> model;
    DeviceBuffer weights;  // [layers, experts, hidden]
    DeviceBuffer biases;   // [layers, 2, experts]: router bias, correction bias
    std::map<std::tuple<int, int>, std::unique_ptr<cuda::CudaRouterPlan>> plans;
  };
  const cuda::DeviceInfo info_;
  const bool autotune_;
  const std::string cache_;
  absl::Mutex mu_;
  std::map<std::string, Resident> models_ ABSL_GUARDED_BY(mu_);
  CudaStream stream_;
  CudaEvent start_, stop_;
  PinnedBuffer pinned_in_, pinned_out_;
  DeviceBuffer dev_in_, dev_out_;
};

}  // namespace

std::unique_ptr<RouterBackend> MakeCudaBackend(int device, bool autotune,
                                               const std::string& tune_cache, std::string* error) {
  auto info = cuda::ProbeDevice(device);
  if (!info.available) {
    *error = absl::StrCat("no usable CUDA device: ", info.reason);
    return nullptr;
  }
  auto backend = std::make_unique<CudaBackend>(info, autotune, tune_cache);
  auto status = backend->Init();
  if (!status.ok()) {
    *error = std::string(status.message());
    return nullptr;
  }
  return backend;
}

#else

std::unique_ptr<RouterBackend> MakeCudaBackend(int, bool, const std::string&, std::string* error) {
  *error = "this build has no CUDA support";
  return nullptr;
}

#endif

}  // namespace moe
