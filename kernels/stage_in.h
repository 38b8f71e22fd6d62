// Staging a batch's hidden states for the router kernel without a copy engine: a small
// kernel reads them straight from page-locked host memory mapped into the device's address
// space and writes them to device memory. It lets the next kernel in the stream start at
// once (Programmatic Dependent Launch), so a router launched after it with `pdl` streams its
// weights, which do not depend on the hidden states, while they cross PCIe; it reads them
// only after griddepcontrol.wait. A copy-engine transfer is a graph node the router cannot
// overlap: the router's whole weight stream waits behind it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace moe::cuda {

// Copies `bytes` (a multiple of 16; both pointers 16-byte aligned) from `mapped_src`, a
// device pointer to page-locked host memory (cudaHostGetDevicePointer), to `dst` in device
// memory. Stream ordered and graph capturable; no allocation. cudaErrorInvalidValue for
// a misaligned or ragged copy. `start_ns`, when not null, receives the device clock
// (%globaltimer, ns) as the kernel starts.
cudaError_t LaunchStageIn(const void* mapped_src, void* dst, size_t bytes, cudaStream_t stream,
                          unsigned long long* start_ns = nullptr);

// Writes the device clock (%globaltimer, ns) into `*end_ns` once the previous kernel in the
// stream has finished and its writes are visible. Launched under PDL, so it is resident
// before that kernel ends (which must allow dependents early, as the router kernels do).
// With LaunchStageIn's start_ns it times a batch on the device without CUDA events: event
// record nodes cost ~4 us of a graph launch on the host (bench/NOTES.md).
cudaError_t LaunchCompletionStamp(unsigned long long* end_ns, cudaStream_t stream);

}  // namespace moe::cuda
