#!/usr/bin/env bash
# Session 56, device call 2 (GemmTakesCublas refitted to call 1's sweeps): gpu_router_test
# on this build, then the GEMM table (M = N) and the sweep's shapes with the heuristic's
# configs. Bundle: .gpu with router_bench, gpu_router_test (libmoe_kernels.so in lib/) and
# this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test"
timeout 200 ./gpu_router_test > "$OUT/gpu_router_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_router_test.txt" | head -20
s=$SECONDS
echo "== gemm table and sweep, heuristic"
shapes="1x1024x8192,1x4096x2048,16x512x32768,16x1024x8192,1024x16x8192,96x256x16384"
shapes+=",128x256x7168,16x128x65536,8x8x65536"
timeout 120 ./router_bench --filter gemm > "$OUT/gemm_table.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^gemm|rror" "$OUT/gemm_table.txt"
timeout 120 ./router_bench --filter gemm --gemm_shapes "$shapes" > "$OUT/gemm_sweep.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^gemm|rror" "$OUT/gemm_sweep.txt"
echo "done at $SECONDS s"
