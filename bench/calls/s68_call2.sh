#!/usr/bin/env bash
# Session 68, call 2: routing after the staged-tile GEMM (route_after_gemm: the GEMM, then the
# routing-epilogue kernel under PDL), a new autotuner candidate from 64 tokens, for the
# batches no one-launch config holds (call 1: DeepSeek-V3 t=256 15.76 us and Kimi K2 25.20
# against cuBLAS's GEMM alone at 8.36 / 9.58).
# - B's new tests, the PDL slow-producer test (now with those configs) and the autotune tests
#   (the cache line's format changed);
# - router_bench at 64 / 128 / 256 tokens, every family, with the tuner's candidates (whether
#   and where the new configs win);
# - B's whole gpu_router_test; memcheck on the PDL / graph / smaller-batch test if time is left.
# Bundle: .gpu with rb_B, grt_B, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_B gpu_router_test
gpu_tests grt_new 200 \
  'GpuRouteAfterGemm.*:GpuFused.PdlWaitsForTheKernelThatWritesTheHiddenStates:GpuAutotune.*'
s=$SECONDS
echo "== router_bench B, 64 / 128 / 256 tokens, candidates"
timeout 200 ./rb_B --tokens 64,128,256 --filter " t=" --candidates --json "$OUT/rb_tokens.json" \
  >"$OUT/rb_tokens.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "rror|^[a-z0-9_]+ t=" "$OUT/rb_tokens.txt" | cut -c1-150
gpu_tests grt_B "$(($(seconds_left) - 70))"
sanitize GpuRouteAfterGemm.PdlGraphsSmallerBatchesAndTheCacheLine memcheck
echo "done at $SECONDS s"
