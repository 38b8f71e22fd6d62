#!/usr/bin/env bash
# Session 50, device call 1: the pass of 2 K steps where a two-tile warp has at most two
# (bench/NOTES.md session 50). Three router_bench builds of one tree, made in one session:
#   rb_base  a23f585's kernels
#   rb_r     + bench/s50_two_tile_short_pass_branch.patch (R: a branch in every two-tile
#            instance's mainloop on steps_per_warp <= 2; the autotuner's short-pass candidate)
#   rb_t     + bench/s50_two_tile_short_pass_instances.patch (T: the polled kernel's
#            two-tile instances templated on the pass length, the host picks the instance;
#            the same candidate)
# then T's whole gpu_router_test (t/), R's GpuConfigs and PDL tests (r/), each with its own
# libmoe_kernels.so (both patches add GpuConfigs.TwoTilePassLengthsMatchReference and the
# short-pass split count in GpuFused.PdlWaitsForTheKernelThatWritesTheHiddenStates), and
# compute-sanitizer racecheck and memcheck of T on the new test; then timelines.
# Bundle: bench/s50_bundle.sh; device call with carry [".gpu"]: bash .gpu/s50_call1.sh
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
F='deepseek_v3 t=1$,deepseek_v3 t=16$,deepseek_v3 t=64$,qwen3_30b t=1$,qwen3_30b t=16$,qwen3_30b t=64$,qwen3_235b t=16$,gpt_oss_120b t=16$,llama4_maverick t=16$,kimi_k2 t=16$,glm4_moe t=16$,mixtral t=16$'
s=$SECONDS
echo "== A/R/T (router_ab.sh, ROUNDS=2)"
ROUNDS=2 timeout 300 bash ./router_ab.sh ./rb_base ./rb_r ./rb_t "$OUT/art" --filter "$F"
echo "rc=$? A/R/T took $((SECONDS - s)) s"
echo "== gpu_router_test t"
LD_LIBRARY_PATH="$PWD/t:$LD_LIBRARY_PATH" timeout 150 ./t/gpu_router_test 2>&1 |
  grep -E "^\[  (PASSED|FAILED)|^\[==========\]|FAILED|Failure|OK \] GpuConfigs" | head -40
echo "== gpu_router_test r (GpuConfigs, the PDL test)"
LD_LIBRARY_PATH="$PWD/r:$LD_LIBRARY_PATH" timeout 80 ./r/gpu_router_test \
  --gtest_filter='GpuConfigs.*:GpuFused.PdlWaits*' 2>&1 |
  grep -E "^\[  (PASSED|FAILED)|^\[==========\]|FAILED|Failure|OK \] " | head -20
san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for tool in racecheck memcheck; do
  [ $((560 - SECONDS)) -gt 90 ] || { echo "no time for $tool"; continue; }
  echo "== $tool t: GpuConfigs.TwoTilePassLengthsMatchReference"
  LD_LIBRARY_PATH="$PWD/t:$LD_LIBRARY_PATH" timeout 80 "$san" --tool "$tool" \
    ./t/gpu_router_test --gtest_filter=GpuConfigs.TwoTilePassLengthsMatchReference 2>&1 |
    grep -E "PASSED|FAILED|SUMMARY" | head -5
done
T='qwen3_30b t=16$,qwen3_235b t=16$,deepseek_v3 t=16$'
for v in base t; do
  [ $((575 - SECONDS)) -gt 30 ] || break
  echo "== timeline $v"
  timeout 28 ./rb_$v --pdl_timeline --filter "$T" 2>&1 | grep -E "^(shape|qwen|gpt|deepseek)"
done
echo "done at $SECONDS s"
