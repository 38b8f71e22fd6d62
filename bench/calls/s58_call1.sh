#!/usr/bin/env bash
# Session 58, device call 1: (1) gpu_router_test at c582909 (its GEMM tests' relative-error
# helper was not run on a GPU in session 57); (2) the few-row tiles' PDL hand-off, three
# builds (static router_bench each), two rounds: A c582909's (the next launch let in after
# the mainloop, all 16 early stages of B before the wait); B the next launch let in only
# after C is written (s57_few_rows_late_trigger.patch); C only 4 early stages of B
# (kEarlyStages 4 for both tiles: d7c3edd's constant; session 57's patch no longer applied after
# 3945dce). Session 57's timeline: under PDL the split barrier passed 2.05 us after the
# last partial, 0.77 without. (3) the full router_bench table at c582909 (rb_A).
# Bundle: .gpu with rb_A, rb_B, rb_C, gpu_router_test (libmoe_kernels.so in lib/) and
# this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test (all)"
timeout 150 ./gpu_router_test > "$OUT/gpu_router_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_router_test.txt" | head -20
shapes="16x16x8192,16x16x131072,32x32x131072,1x8x8192,24x24x131072,16x16x65536"
for round in 1 2; do
  for v in A B C; do
    s=$SECONDS
    echo "== $v round $round"
    timeout 40 ./rb_$v --filter gemm --gemm_shapes "$shapes" 2>&1 | grep -E "^gemm|rror"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
  done
done
s=$SECONDS
echo "== full table (rb_A)"
timeout 200 ./rb_A --json "$OUT/router_bench.json" > "$OUT/router_bench.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
echo "done at $SECONDS s"
