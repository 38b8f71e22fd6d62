// The CPU backend: the models' weights in host memory, CpuRouter for each batch.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kernels/cpu_router.h"
#include "server/backend.h"

namespace moe {
namespace {

std::string CpuName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "cpu";
}

class CpuBackend : public RouterBackend {
 public:
  explicit CpuBackend(int threads) : router_(threads), device_(CpuName()) {}
  std::string name() const override { return "cpu"; }
  std::string device() const override { return device_; }

  absl::Status LoadModel(const RouterModel& model) override {
    absl::MutexLock lock(&mu_);
    models_[model.name] = std::make_shared<RouterModel>(model);
    return absl::OkStatus();
  }

  absl::StatusOr<double> Route(const std::string& name, int layer, const BatchIO& io) override {
    std::shared_ptr<RouterModel> model;
    {
      absl::MutexLock lock(&mu_);
      auto it = models_.find(name);
      if (it == models_.end())
        return absl::NotFoundError(absl::StrCat("model: '", name, "' not loaded"));
      model = it->second;
    }
    if (layer < 0 || layer >= model->num_layers())
      return absl::NotFoundError(absl::StrCat("layer: ", layer, " out of range"));
    const RouterLayer& l = model->layers[layer];
    RouteProblem p{model->spec, io.tokens, io.hidden_dtype, model->weight_dtype};
    RouteArgs args{io.hidden,
                   l.weight.data(),
                   l.router_bias.empty() ? nullptr : l.router_bias.data(),
                   l.correction_bias.empty() ? nullptr : l.correction_bias.data(),
                   io.ids,
                   io.weights,
                   io.logits};
    // Reused across batches: a fresh multi-MB allocation per batch costs page faults.
    thread_local std::vector<uint8_t> workspace;
    workspace.resize(std::max(workspace.size(), router_.WorkspaceBytes(p)));
    const auto start = std::chrono::steady_clock::now();
    auto status = router_.Route(p, args, workspace.data(), workspace.size());
    if (!status.ok()) return status;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

 private:
  CpuRouter router_;
  const std::string device_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<RouterModel>> models_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<RouterBackend> MakeCpuBackend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace moe
