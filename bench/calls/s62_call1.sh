#!/usr/bin/env bash
# Session 62, call 1: the GPU stage-in test marking chunks through InputPool's BlockFill (as
# the server does; MarkStageChunk removed), then every GPU test, server_test on the CUDA
# backend, compute-sanitizer on the stage-in tests, and the full router_bench table at HEAD
# (on whichever card came: if an H200, the few-row GEMM tiles' first run there).
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
gpu_tests stage_in 60 'GpuStageIn.*'
s=$SECONDS
echo "== server_test, CUDA backend"
MOE_TEST_BACKEND=cuda MOE_SERVER_BINARY=$PWD/moe-router-server \
  timeout 120 ./server_test >"$OUT/server_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/server_test.txt" | head -20
sanitize 'GpuStageIn.StageInWaitsForEachChunkMarkWhileTheHostWrites' memcheck racecheck
s=$SECONDS
echo "== router_bench, full table"
timeout 220 ./router_bench --json "$OUT/router_bench.json" >"$OUT/router_bench.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "rror|GPU|copy" "$OUT/router_bench.txt" | head -5
left=$(seconds_left)
[ "$left" -gt 100 ] && gpu_tests gpu_router_test "$left"
echo "done at $SECONDS s"
