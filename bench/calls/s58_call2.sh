#!/usr/bin/env bash
# Session 58, device call 2: (1) how many of the few-row tiles' stages of B go before the
# PDL wait (call 1: all 16 for both tiles (A) against 4 (C) gave 32-tiles -0.16..-0.27 us,
# 16 x 16 x 131072 +0.33). Builds (static router_bench): A c582909 (16 / 16), D 16-tile 16
# / 32-tile 4, E 8 / 8, F 12 / 2 (kEarlyStages in decompose_k_gemm_few_rows.cu). Two rounds.
# Bundle: .gpu with rb_A, rb_D, rb_E, rb_F and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
shapes="16x16x32768,16x16x65536,16x16x131072,1x8x8192,8x8x65536,32x32x65536,32x32x131072,24x24x131072,9x100x131072,32x256x65536"
for round in 1 2; do
  for v in A D E F; do
    s=$SECONDS
    echo "== $v round $round"
    timeout 60 ./rb_$v --filter gemm --gemm_shapes "$shapes" 2>&1 | grep -E "^gemm|rror"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
  done
done
echo "done at $SECONDS s"
