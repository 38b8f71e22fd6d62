// A stand-in for the kernel that precedes the router in an inference stack: it writes the
// hidden states the router reads, slowly, so that a router launched after it with
// Programmatic Dependent Launch would see stale bytes if it read them before
// griddepcontrol.wait. Test helper; thread-compatible.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace moe::testing {

// Copies `bytes` (a multiple of 4) from src to dst on `stream` after spinning about
// `delay_ns` on the GPU; the copy allows a PDL successor to start at once.
cudaError_t LaunchSlowProducer(void* dst, const void* src, size_t bytes, unsigned delay_ns,
                               cudaStream_t stream);

}  // namespace moe::testing
