// Device helpers shared by every kernel that takes part in Programmatic Dependent Launch
// (the Decompose-K kernels, the stage-in and completion-stamp kernels, test producers),
// and the device clock they stamp with. No-ops before sm_90 where PDL does not exist.
#pragma once

namespace moe::cuda {

// Waits until the grids this launch depends on (under PDL) have finished and their writes
// are visible; returns at once without PDL.
__device__ __forceinline__ void WaitForPrerequisiteGrid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Programmatic Dependent Launch: lets the next kernel in the stream start once every CTA
// of this grid has executed this, so its prologue (for the router kernels: the weight
// loads) overlaps the rest of this grid. Safe at any point: a dependent kernel reads our
// outputs only after its griddepcontrol.wait, which waits for this whole grid to finish
// and flush. No effect when the next launch did not opt in.
__device__ __forceinline__ void AllowDependentLaunch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The device clock (%globaltimer), nanoseconds.
__device__ __forceinline__ unsigned long long GlobalTimerNs() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

}  // namespace moe::cuda
