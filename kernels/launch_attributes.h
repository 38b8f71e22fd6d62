// cudaLaunchKernelEx's launch attributes by name, for every launcher that sets them (the
// Decompose-K kernels, the routing-epilogue kernels, the completion stamp): Programmatic
// Dependent Launch, a cooperative grid and a thread-block cluster along x. One place that
// fills cudaLaunchAttribute's union, so no launcher can set one field and forget another.
#pragma once

#include <cuda_runtime_api.h>

namespace moe::cuda {

// At most one of each attribute, in the order first added. AttachTo() points a launch config at
// them: keep this object alive until the launch call has returned.
class LaunchAttributes {
 public:
  // Programmatic Dependent Launch: the kernel may start before the previous one in its
  // stream has finished, and must wait (griddepcontrol.wait) before reading its outputs.
  LaunchAttributes& Pdl(bool on) {
    if (on) {
      cudaLaunchAttribute& a = Entry(cudaLaunchAttributeProgrammaticStreamSerialization);
      a.val.programmaticStreamSerializationAllowed = 1;
    }
    return *this;
  }

  // Every CTA resident at once (or the launch fails), for grids whose CTAs wait for each
  // other.
  LaunchAttributes& Cooperative(bool on) {
    if (on) Entry(cudaLaunchAttributeCooperative).val.cooperative = 1;
    return *this;
  }

  // Clusters of `ctas` CTAs along x; 0 adds none.
  LaunchAttributes& Cluster(int ctas) {
    if (ctas > 0) {
      cudaLaunchAttribute& a = Entry(cudaLaunchAttributeClusterDimension);
      a.val.clusterDim.x = unsigned(ctas);
      a.val.clusterDim.y = 1;
      a.val.clusterDim.z = 1;
    }
    return *this;
  }

  void AttachTo(cudaLaunchConfig_t& config) {
    config.attrs = count_ > 0 ? attrs_ : nullptr;
    config.numAttrs = count_;
  }

 private:
  static constexpr unsigned kMaxAttributes = 3;

  // The attribute with this id, added (zeroed) if it is not there yet: asking twice sets it
  // again rather than adding a second, so the three setters fill at most three.
  cudaLaunchAttribute& Entry(cudaLaunchAttributeID id) {
    for (unsigned i = 0; i < count_; ++i)
      if (attrs_[i].id == id) return attrs_[i];
    cudaLaunchAttribute& a = attrs_[count_++];
    a = cudaLaunchAttribute{};
    a.id = id;
    return a;
  }

  cudaLaunchAttribute attrs_[kMaxAttributes] = {};
  unsigned count_ = 0;
};

}  // namespace moe::cuda
