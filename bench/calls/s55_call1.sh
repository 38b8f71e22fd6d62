#!/usr/bin/env bash
# Session 55, device call 1. (a) The staged-tile GEMM on GEMMs of at most 16 rows, which
# the heuristic gives the router kernels (nt=2, up to 264 splits) and which trail Inductor
# on the H200 (16 x 16 x 8192 / 131072: 5.69 / 8.43 against 5.03 / 7.74 us, session 49),
# where 32 x 32 x 8192 on the tile kernel takes 4.07 us on the H100 for twice the bytes of
# 16 x 16's 5.80. Two builds: HEAD (router_bench) and `_v` (the tile kernel's partials skip
# the fragments wholly past the real rows, 15 of 16 float4s at 16 x 16; and the heuristic
# gives bf16/fp16 GEMMs of every row count the tile kernel). gpu_router_test of `_v` (its
# libmoe_kernels.so in lib_v; the tiles forced on 16-, 3- and 1-row shapes too); the 16-
# and 32-row rows: HEAD's heuristic config and 64-tile, `_v`'s heuristic and its 64-tile at
# 16, 32 and 64 splits, two rounds; other shapes of at most 16 rows. (b) The
# shapes past 128 x 128 that the heuristic gave the 64 x 128 tile unmeasured (session 54)
# and DeepSeek-V3 / Kimi K2 at 128 tokens as plain GEMMs, each tile forced. (c) On an H200
# only, session 54's call 4 (the 128 x 128 tiles forced, and the timeline).
# Bundle: .gpu with router_bench (HEAD), router_bench_v, gpu_router_test_v, lib_v/ and this
# script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader)
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
run() {  # $1: binary, $2: label, then router_bench arguments
  local bin=$1 label=$2 s=$SECONDS
  shift 2
  echo "== $label"
  timeout 90 ./$bin "$@" 2>&1 | grep -E "^gemm|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
}
round() {  # $1: round
  local f="gemm 16x16,gemm 32x32"
  run router_bench "round $1: HEAD heuristic" --filter "$f"
  run router_bench "round $1: HEAD tile 64" --filter "$f" --gemm_tile 64
  run router_bench_v "round $1: v heuristic" --filter "$f"
  for S in 16 32 64; do
    run router_bench_v "round $1: v tile 64 S~$S" --filter "$f" --gemm_tile 64 --gemm_splits $S
  done
}
round 1
small="1x16x131072,4x256x16384,16x128x65536,1x4096x8192,16x1024x32768,8x8x65536"
run router_bench "small shapes: HEAD heuristic" --filter gemm --gemm_shapes "$small"
run router_bench "small shapes: HEAD tile 64" --filter gemm --gemm_shapes "$small" --gemm_tile 64
run router_bench_v "small shapes: v heuristic" --filter gemm --gemm_shapes "$small"
s=$SECONDS
echo "== gpu_router_test_v"
LD_LIBRARY_PATH=$PWD/lib_v:$LD_LIBRARY_PATH timeout 150 ./gpu_router_test_v > "$OUT/gpu_router_test_v.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_router_test_v.txt" | head -20
round 2
large="256x256x65536,256x512x131072,1024x1024x32768,192x4096x65536,128x256x7168,128x384x7168"
for tile in 128 64x128 64; do
  run router_bench_v "larger shapes: v tile $tile" --filter gemm --gemm_shapes "$large" --gemm_tile $tile
done
if [[ $gpu == *H200* ]]; then
  for tile in 128 64x128 64; do
    run router_bench "H200 tile $tile" --filter "gemm 128x128,gemm 64x64x131072" --gemm_tile $tile
  done
  timeout 60 ./router_bench --gemm_timeline --filter "gemm 128x128x131072,gemm 128x128x65536" 2>&1 | tail -8
fi
echo "done at $SECONDS s"
