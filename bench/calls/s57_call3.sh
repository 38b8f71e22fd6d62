#!/usr/bin/env bash
# Session 57, device call 3: the refitted few-row rule (ChooseFewRowGemmTile: three 16-tiles
# only up to K = 65536, no 32-tiles at 33-64 rows) checked: the GEMM tests, the shapes whose
# config changed since call 2 against call 1's build (router_bench_before), the whole
# gpu_router_test, and compute-sanitizer memcheck / racecheck / synccheck on the forced-tile
# test. Bundle: .gpu with router_bench, router_bench_before, gpu_router_test
# (libmoe_kernels.so in lib/) and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test (GEMM)"
timeout 150 ./gpu_router_test --gtest_filter='GpuGemm.*:GpuCApi.Gemm*' > "$OUT/gemm_tests.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure|error" "$OUT/gemm_tests.txt" | head -20
shapes="2x40x131072,16x64x65536,12x40x65536,9x100x131072,16x16x131072,32x32x131072"
for bin in router_bench router_bench_before; do
  s=$SECONDS
  echo "== edges: $bin"
  timeout 60 ./$bin --filter gemm --gemm_shapes "$shapes" 2>&1 | grep -E "^gemm|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
s=$SECONDS
echo "== gpu_router_test (all)"
timeout 150 ./gpu_router_test > "$OUT/gpu_router_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_router_test.txt" | head -20
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for tool in memcheck synccheck racecheck; do
  left=$((585 - SECONDS))
  [ $left -lt 30 ] && { echo "== $tool: no time left"; continue; }
  s=$SECONDS
  echo "== $tool (GpuGemm.EveryStagedTileMatchesTheReference)"
  timeout $left "$CS" --tool $tool ./gpu_router_test \
    --gtest_filter=GpuGemm.EveryStagedTileMatchesTheReference > "$OUT/$tool.txt" 2>&1
  echo "rc=$? took $((SECONDS - s)) s"
  grep -E "PASSED|FAILED|SUMMARY" "$OUT/$tool.txt" | head -5
done
echo "done at $SECONDS s"
