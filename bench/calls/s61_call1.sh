#!/usr/bin/env bash
# Session 61, call 1: the completion-stamp wait (--wait_on_stamp, the router's outputs fenced
# for the host). Correctness first: the stage-in tests (the new one takes its snapshot of the
# outputs before any synchronisation), server_test on the CUDA backend with the stamp wait and
# without it (MOE_TEST_SERVER_FLAGS), compute-sanitizer on the new test; then backend_bench
# (Route() both ways in one run) and one caller A/B (stream / unary, 1 / 16 tokens). The
# whole gpu_router_test while time is left.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
gpu_tests stage_in 120 'GpuStageIn.*'
for flags in "" "--wait_on_stamp=false"; do
  s=$SECONDS
  echo "== server_test, CUDA backend${flags:+, $flags}"
  MOE_TEST_BACKEND=cuda MOE_TEST_SERVER_FLAGS=$flags MOE_SERVER_BINARY=$PWD/moe-router-server \
    timeout 200 ./server_test >"$OUT/server_test${flags:+_sync}.txt" 2>&1
  echo "rc=$? took $((SECONDS - s)) s"
  grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" \
    "$OUT/server_test${flags:+_sync}.txt" | head -20
done
if [ -x ./backend_bench ]; then  # left out of call 1's bundle (the 64 MiB carry limit)
  s=$SECONDS
  echo "== backend_bench"
  timeout 120 ./backend_bench --calls 3000 --json "$OUT/backend_bench.json" \
    >"$OUT/backend_bench.txt" 2>&1
  echo "rc=$? took $((SECONDS - s)) s"
  grep -E "backend Route|compute time|service Submit|server_us|graph" "$OUT/backend_bench.txt"
fi
for mode in unary stream; do
  for tokens in 1 16; do
    s=$SECONDS
    echo "== one caller, $mode, $tokens tokens: server 1 --wait_on_stamp=false, server 2 on"
    TOKENS=$tokens MODE=$mode ROUNDS=3 SECS=1.5 timeout "$(seconds_left)" bash ./one_caller_ab.sh \
      . "$OUT/${mode}_$tokens" "--wait_on_stamp=false" "" | tee "$OUT/${mode}_$tokens.md"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
  done
done
sanitize 'GpuStageIn.HostReadsFencedOutputsOnceTheStampLands' memcheck
left=$(seconds_left)
[ "$left" -gt 90 ] && gpu_tests gpu_router_test "$left"
echo "done at $SECONDS s"
