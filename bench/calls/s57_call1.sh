#!/usr/bin/env bash
# Session 57, device call 1: the few-row GEMM tiles (16 x 16 and 32 x 32, warps taking
# turns at 16 stages of the tile's rows only; kernels/decompose_k_gemm_few_rows.cu) checked
# (the GEMM tests) and forced on the few-row GEMMs against the heuristic's config and the
# 64-tiles, cublasGemmEx in the same runs; then the whole gpu_router_test. Bundle: .gpu with
# router_bench, gpu_router_test (libmoe_kernels.so in lib/) and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test (GEMM)"
timeout 150 ./gpu_router_test --gtest_filter='GpuGemm.*:GpuCApi.Gemm*' > "$OUT/gemm_tests.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure|error" "$OUT/gemm_tests.txt" | head -20
shapes="16x16x8192,16x16x32768,16x16x65536,16x16x131072,32x32x8192,32x32x32768,32x32x65536"
shapes+=",32x32x131072,1x16x131072,8x8x65536,12x40x65536,16x128x65536,4x256x16384"
shapes+=",16x256x65536,64x64x131072"
for mode in heuristic "--gemm_tile 16" "--gemm_tile 32" "--gemm_tile 64"; do
  s=$SECONDS
  echo "== gemm: $mode"
  flag=$mode
  [ "$mode" = heuristic ] && flag=
  timeout 120 ./router_bench --filter gemm --gemm_shapes "$shapes" $flag 2>&1 | grep -E "^gemm|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
s=$SECONDS
echo "== gpu_router_test (all)"
timeout $((590 - SECONDS)) ./gpu_router_test > "$OUT/gpu_router_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_router_test.txt" | head -20
echo "done at $SECONDS s"
