#!/usr/bin/env bash
# Session 55, device call 1: (a) the staged-tile GEMM on the 16-row GEMMs, which the
# heuristic gives the router kernels (nt=2, up to 264 splits) and which trail Inductor on
# the H200 (16 x 16 x 8192 / 131072: 5.69 / 8.43 against 5.03 / 7.74 us, session 49) and
# 32 x 32 x 8192 on the tile kernel (4.07 us on the H100 for twice the bytes of 16 x 16's
# 5.80): the GEMM GPU tests with the tiles forced on 16-, 3- and 1-row shapes, then the
# 16- and 32-row rows with the heuristic's config, the 64-tile at its splits, and the
# 64-tile at 16, 32 and 64 splits, two rounds, and other shapes of at most 16 rows, the
# heuristic's config against the 64-tile; (b) the shapes past 128 x 128 that the heuristic
# gave the 64 x 128 tile unmeasured (session 54), each tile forced; (c) on whatever GPU
# comes, session 54's call 4 (the 128 x 128 tiles forced, and the timeline). The larger
# shapes include DeepSeek-V3 and Kimi K2 at 128 tokens as plain GEMMs (what the fused
# router pays for its GEMM part there). Bundle: .gpu with router_bench,
# gpu_router_test and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test GpuGemm.*"
timeout 120 ./gpu_router_test --gtest_filter='GpuGemm.*' > "$OUT/gpu_gemm_tests.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_gemm_tests.txt" | head -20
for round in 1 2; do
  for v in "heuristic" "--gemm_tile 64" "--gemm_tile 64 --gemm_splits 16" \
    "--gemm_tile 64 --gemm_splits 32" "--gemm_tile 64 --gemm_splits 64"; do
    s=$SECONDS
    args=${v#heuristic}
    echo "== round $round: ${v}"
    # shellcheck disable=SC2086
    timeout 60 ./router_bench --filter "gemm 16x16,gemm 32x32" $args 2>&1 | grep -E "^gemm|rror"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
  done
done
small="1x16x131072,4x256x16384,16x128x65536,1x4096x8192,16x1024x32768,8x8x65536"
for v in "heuristic" "--gemm_tile 64"; do
  s=$SECONDS
  args=${v#heuristic}
  echo "== other shapes: ${v}"
  # shellcheck disable=SC2086
  timeout 90 ./router_bench --filter gemm --gemm_shapes "$small" $args 2>&1 | grep -E "^gemm|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
large="256x256x65536,256x512x131072,1024x1024x32768,192x4096x65536,128x256x7168,128x384x7168"
for tile in 128 64x128 64; do
  s=$SECONDS
  echo "== larger shapes, tile $tile"
  timeout 90 ./router_bench --filter gemm --gemm_shapes "$large" --gemm_tile $tile 2>&1 | grep -E "^gemm|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
for tile in 128 64x128 64; do
  s=$SECONDS
  echo "== tile $tile"
  timeout 60 ./router_bench --filter "gemm 128x128,gemm 64x64x131072" --gemm_tile $tile 2>&1 | grep -E "^gemm|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
timeout 60 ./router_bench --gemm_timeline --filter "gemm 128x128x131072,gemm 128x128x65536" 2>&1 | tail -8
echo "done at $SECONDS s"
