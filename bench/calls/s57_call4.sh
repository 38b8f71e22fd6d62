#!/usr/bin/env bash
# Session 57, device call 4, meant for an H200 (the few-row tiles had run on the H100
# only): the GEMM tests, the M = N GEMM table and the few-row rule's shapes, this build
# (87670e6's kernels) against the build before the few-row tiles (router_bench_before),
# two rounds, cublasGemmEx in the same runs; the whole gpu_router_test if time is left.
# Bundle: .gpu with router_bench, router_bench_before, gpu_router_test (libmoe_kernels.so
# in lib/) and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test (GEMM)"
timeout 150 ./gpu_router_test --gtest_filter='GpuGemm.*:GpuCApi.Gemm*' > "$OUT/gemm_tests.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure|error" "$OUT/gemm_tests.txt" | head -20
shapes="16x16x8192,16x16x32768,16x16x65536,16x16x131072,32x32x8192,32x32x65536"
shapes+=",32x32x131072,1x16x131072,8x8x65536,1x8x8192,12x40x65536,2x40x131072,16x64x65536"
shapes+=",24x24x131072,16x256x65536,9x100x131072,64x64x131072"
for round in 1 2; do
  for bin in router_bench router_bench_before; do
    s=$SECONDS
    echo "== few-row shapes: $bin round $round"
    timeout 100 ./$bin --filter gemm --gemm_shapes "$shapes" 2>&1 | grep -E "^gemm|rror"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
  done
done
if [ $SECONDS -lt 420 ]; then
  s=$SECONDS
  echo "== gpu_router_test (all)"
  timeout $((585 - SECONDS)) ./gpu_router_test > "$OUT/gpu_router_test.txt" 2>&1
  echo "rc=$? took $((SECONDS - s)) s"
  grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_router_test.txt" | head -20
fi
echo "done at $SECONDS s"
