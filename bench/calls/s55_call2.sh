#!/usr/bin/env bash
# Session 55, device call 2: the GEMM heuristic that call 1 measured (the staged tiles at
# 9-16 rows up to K = 65536, partials skipping the fragments past the real rows), checked
# and timed; and the 64-tiles at up to two CTAs an SM (S ~ 192 and 256, past the
# heuristic's one CTA an SM), which call 1's split sweep (more splits faster at every K)
# points to for the few-tile GEMMs. Bundle: .gpu with router_bench, gpu_router_test (its
# libmoe_kernels.so in lib/) and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
run() {  # $1: label, then router_bench arguments
  local label=$1 s=$SECONDS
  shift
  echo "== $label"
  timeout 60 ./router_bench "$@" 2>&1 | grep -E "^gemm|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
}
f="gemm 16x16,gemm 32x32,gemm 64x64"
run "round 1: heuristic" --filter "$f"
run "round 1: tile 64 S~256" --filter "$f" --gemm_tile 64 --gemm_splits 256
run "small shapes: heuristic" --filter gemm --gemm_shapes "1x16x131072,4x256x16384,16x128x65536,1x4096x8192,16x1024x32768,8x8x65536,12x40x65536,16x16x131072"
s=$SECONDS
echo "== gpu_router_test"
timeout 150 ./gpu_router_test > "$OUT/gpu_router_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_router_test.txt" | head -20
echo "done at $SECONDS s"
