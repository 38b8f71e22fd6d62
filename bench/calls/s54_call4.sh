#!/usr/bin/env bash
# Session 54, device call 4 (meant for an H200, whose HBM is faster than the H100's, so
# per-SM intake may bind the 64 x 128 tile instead): the GEMM rows with each tile forced,
# one round, and the timeline of the 128 x 128 rows. Bundle: .gpu with router_bench and
# this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
for tile in 128 64x128 64; do
  s=$SECONDS
  echo "== tile $tile"
  timeout 60 ./router_bench --filter "gemm 128x128,gemm 64x64x131072" --gemm_tile $tile 2>&1 | grep -E "^gemm|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
timeout 60 ./router_bench --gemm_timeline --filter "gemm 128x128x131072,gemm 128x128x65536" 2>&1 | tail -8
echo "done at $SECONDS s"
