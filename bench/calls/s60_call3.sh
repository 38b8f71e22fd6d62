#!/usr/bin/env bash
# Session 60, call 3: the stage-in that waits on chunk marks, and the server handing a lone
# request to its worker before copying its hidden states (--stage_while_filling). The new
# GPU stage-in tests, server_test on the CUDA backend, one caller A/B (off / on) for stream
# and unary at 1 and 16 tokens, then the whole gpu_router_test while time is left.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
gpu_tests stage_in 120 'GpuStageIn.*'
s=$SECONDS
echo "== server_test, CUDA backend"
MOE_TEST_BACKEND=cuda MOE_SERVER_BINARY=$PWD/moe-router-server timeout 300 ./server_test \
  >"$OUT/server_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/server_test.txt" | head -20
for mode in stream unary; do
  for tokens in 1 16; do
    s=$SECONDS
    echo "== one caller, $mode, $tokens tokens: server 1 --stage_while_filling=false, server 2 on"
    TOKENS=$tokens MODE=$mode ROUNDS=3 SECS=1.5 timeout "$(seconds_left)" bash ./one_caller_ab.sh \
      . "$OUT/${mode}_$tokens" "--stage_while_filling=false" "" | tee "$OUT/${mode}_$tokens.md"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
  done
done
left=$(seconds_left)
[ "$left" -gt 90 ] && gpu_tests gpu_router_test "$left"
echo "done at $SECONDS s"
