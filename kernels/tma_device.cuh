// Device helpers for the Hopper tensor memory accelerator (TMA): shared-memory mbarriers
// and 2-D tensor-map tile loads that complete on them. sm_90+ only: callers compile these
// under `__CUDA_ARCH__ >= 900`. Included by .cu files only.
#pragma once

#include <cuda.h>  // CUtensorMap

#include <cstdint>

namespace moe::cuda {

__device__ __forceinline__ unsigned SharedAddress(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// The TMA's 128-byte swizzle repeats every 1024 bytes and is anchored to the shared-memory
// address: a kernel's swizzled stages start on this alignment, and its launch asks for
// this much dynamic shared memory more than the stages need (the slack to align them).
// The kernels round up inline: the same arithmetic through a shared inline helper changed
// ptxas' input for the narrow staged router instances (different inlining, +46 parameter
// loads a kernel), a change nobody has timed.
constexpr int kSwizzleAlignment = 1024;

__device__ __forceinline__ void MbarrierInit(uint64_t* bar, unsigned arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(SharedAddress(bar)), "r"(arrivals)
               : "memory");
}

// Makes the initialisation visible to the async proxy (the TMA unit) before any copy
// completes on the barrier; a CTA barrier must follow before other threads use it.
__device__ __forceinline__ void FenceMbarrierInit() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

// One arrival that also expects `bytes` more transaction bytes (the copies' completions).
__device__ __forceinline__ void MbarrierArriveExpectTx(uint64_t* bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(SharedAddress(bar)),
               "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void MbarrierArrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(SharedAddress(bar)) : "memory");
}

// Waits until the barrier's phase with this parity has completed.
__device__ __forceinline__ void MbarrierWait(uint64_t* bar, unsigned parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n"
      "}\n" ::"r"(SharedAddress(bar)),
      "r"(parity)
      : "memory");
}

// The box at (inner, outer) of a 2-D tensor map into shared memory at `dst`; the bytes
// count against `bar`'s expected transactions. `map` must live in parameter, constant or
// global memory (a __grid_constant__ kernel parameter).
__device__ __forceinline__ void TmaLoad2d(void* dst, const CUtensorMap* map, int inner, int outer,
                                          uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];" ::"r"(SharedAddress(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(inner), "r"(outer), "r"(SharedAddress(bar))
      : "memory");
}

// Between griddepcontrol.wait and TMA reads of memory the previous kernel wrote with
// ordinary stores: the wait makes those writes visible to this thread's generic proxy; the
// TMA reads through the async proxy, which this fence orders after them. DeepEP (#621,
// #642) and flashinfer (#3835) saw TMA loads return stale data without it, and so did a
// bulk-copy staged router here under PDL (bench/NOTES.md session 22).
__device__ __forceinline__ void FenceProxyAsyncGlobal() {
  asm volatile("fence.proxy.async.global;" ::: "memory");
}

__device__ __forceinline__ void PrefetchTensorMap(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

}  // namespace moe::cuda
