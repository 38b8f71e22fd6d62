#!/usr/bin/env bash
# Session 58, device call 5: the rule landed from call 4 (decompose_k_gemm_tile.cu's
# EarlyStages: a split's whole K range before the PDL wait where it fits the 4 stages,
# else 2 stages) as one build (rb_R) against d7c3edd (rb_L), one round, the GEMM tests
# first. Bundle: .gpu with rb_R, rb_L, gpu_router_test (libmoe_kernels.so in lib/) and
# this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test (GEMM)"
timeout 100 ./gpu_router_test --gtest_filter='GpuGemm.*:GpuCApi.Gemm*' > "$OUT/gemm_tests.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gemm_tests.txt" | head -20
shapes="32x32x32768,64x64x32768,64x64x65536,64x64x131072,128x128x32768,128x128x65536,128x128x131072,16x64x65536,64x256x65536"
for v in R L; do
  s=$SECONDS
  echo "== $v"
  timeout 60 ./rb_$v --filter gemm --gemm_shapes "$shapes" 2>&1 | grep -E "^gemm|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
echo "done at $SECONDS s"
