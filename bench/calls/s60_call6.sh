#!/usr/bin/env bash
# Session 60, call 6: the final build (afbabdd: chunk marks stored with release atomics, the
# shared test set-ups): the stage-in tests and server_test on the CUDA backend.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
gpu_tests stage_in 60 'GpuStageIn.*'
s=$SECONDS
echo "== server_test, CUDA backend"
MOE_TEST_BACKEND=cuda MOE_SERVER_BINARY=$PWD/moe-router-server timeout "$(seconds_left)" \
  ./server_test >"$OUT/server_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/server_test.txt" | head -20
echo "done at $SECONDS s"
