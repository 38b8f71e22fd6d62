#!/usr/bin/env bash
# Session 57, device call 2: the heuristic with the few-row tiles (ChooseFewRowGemmTile)
# checked (the GEMM tests first, then the whole gpu_router_test), the M = N GEMM table,
# and the shapes around the rule's edges that call 1 did not time: this build against
# call 1's (router_bench_before: the heuristic before the few-row tiles), two rounds each,
# cublasGemmEx in the same runs. Bundle: .gpu with router_bench, router_bench_before,
# gpu_router_test (libmoe_kernels.so in lib/) and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test (GEMM)"
timeout 150 ./gpu_router_test --gtest_filter='GpuGemm.*:GpuCApi.Gemm*' > "$OUT/gemm_tests.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure|error" "$OUT/gemm_tests.txt" | head -20
s=$SECONDS
echo "== M = N table (heuristic)"
timeout 100 ./router_bench --filter gemm 2>&1 | grep -E "^gemm|rror"
echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
shapes="1x8x8192,1x16x8192,1x48x32768,8x8x8192,4x16x32768,16x48x16384,2x40x131072"
shapes+=",24x24x131072,32x64x131072,32x128x65536,16x64x65536,9x100x131072,32x256x65536"
for round in 1 2; do
  for bin in router_bench router_bench_before; do
    s=$SECONDS
    echo "== edges: $bin round $round"
    timeout 100 ./$bin --filter gemm --gemm_shapes "$shapes" 2>&1 | grep -E "^gemm|rror"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
  done
done
s=$SECONDS
echo "== gpu_router_test (all)"
timeout $((590 - SECONDS)) ./gpu_router_test > "$OUT/gpu_router_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_router_test.txt" | head -20
echo "done at $SECONDS s"
