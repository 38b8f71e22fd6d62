#!/usr/bin/env bash
# Session 58, device call 4: the 64-tiles' and 64 x 128 tiles' stages of B before the PDL
# wait (IssueTileStages' kEarly in decompose_k_gemm_tile.cu; all 4 at d7c3edd), after
# call 2 found 4 of 16 better for the 32-tiles. Builds (static router_bench): L d7c3edd
# (4 of 4), G 2, H 1. Two rounds.
# Bundle: .gpu with rb_L, rb_G, rb_H and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
shapes="32x32x8192,32x32x32768,64x64x8192,64x64x32768,64x64x65536,64x64x131072,128x128x32768,128x128x65536,128x128x131072,16x64x65536,64x256x65536"
for round in 1 2; do
  for v in L G H; do
    s=$SECONDS
    echo "== $v round $round"
    timeout 80 ./rb_$v --filter gemm --gemm_shapes "$shapes" 2>&1 | grep -E "^gemm|rror"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
  done
done
echo "done at $SECONDS s"
