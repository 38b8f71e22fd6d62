#!/usr/bin/env bash
# Session 54, device call 2: the 64 x 128 staged tile (64 rows of A by 128 of B: half the
# 128-tile's partial at twice the splits, launched under PDL) against the 128- and 64-tiles
# on the 128 x 128 GEMMs. (1) gemm_timeline (phases of every tile); (2) router_bench's GEMM
# rows with each tile forced, two rounds; (3) the GEMM GPU tests (the new tile's included).
# Bundle: .gpu with router_bench, gpu_router_test and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
timeout 120 ./router_bench --gemm_timeline --filter "gemm 128x128" 2>&1 | tail -12
echo "rc=${PIPESTATUS[0]} timeline took $((SECONDS - s)) s"
for round in 1 2; do
  for tile in 128 64x128 64; do
    s=$SECONDS
    echo "== round $round tile $tile"
    timeout 100 ./router_bench --filter "gemm 128x128,gemm 64x64x131072" --gemm_tile $tile 2>&1 | grep -E "^gemm|rror"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
  done
done
s=$SECONDS
timeout 200 ./gpu_router_test --gtest_filter='GpuGemm.*:GpuCApi.Gemm*' 2>&1 | grep -E "FAILED|PASSED|OK \]|Failure|tests from.*ran|Expected|Which|tile=" | tail -30
echo "rc=${PIPESTATUS[0]} tests took $((SECONDS - s)) s"
echo "done at $SECONDS s"
