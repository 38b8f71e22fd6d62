#!/usr/bin/env bash
# Written in session 58 for the next device time (not run): (1) gpu_router_test at the
# latest commit (session 58 added a 32-tile and a 64-tile of 4-stage splits to
# GpuGemm.PdlLaunchesGiveThePlainLaunchBits, never run on a GPU); (2) the few-row and
# 64-tile timelines under PDL at 3b6598f, against session 57's call 5
# (h100_s57_call5_timeline.txt), to see why 4 early stages of B beat 16 at 32-tiles while
# 16 beat 4 at 16-tiles (bench/NOTES.md session 58); (3) on an H200 (which has not run the
# few-row tiles, nor session 58's early-stage rules), the M = N GEMM table and the few-row
# edges. Bundle: .gpu with router_bench, gpu_router_test (libmoe_kernels.so in lib/) and
# this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader)
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test (all)"
timeout 170 ./gpu_router_test > "$OUT/gpu_router_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_router_test.txt" | head -20
s=$SECONDS
echo "== timelines"
timeout 120 ./router_bench --gemm_timeline \
  --filter "gemm 16x16x131072,gemm 32x32x131072,gemm 64x64x131072" 2>&1 | tail -10
echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
case "$gpu" in
  *H200*)
    s=$SECONDS
    echo "== GEMM table (H200)"
    timeout 150 ./router_bench --filter gemm 2>&1 | grep -E "^gemm|rror"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
    s=$SECONDS
    echo "== few-row edges (H200)"
    timeout 100 ./router_bench --filter gemm --gemm_shapes \
      "1x8x8192,8x8x65536,24x24x131072,9x100x131072,32x256x65536,16x64x65536,64x256x65536" 2>&1 |
      grep -E "^gemm|rror"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
    ;;
esac
echo "done at $SECONDS s"
