#!/usr/bin/env bash
# Session 61, call 3: a soak of server_test's misbehaving-callers test on the CUDA backend
# (8a19648's server: the hand-over before the copy, chunk-marked stage-in): well-behaved
# callers checked against the reference beside cancelled streams, expired deadlines, bad and
# NaN requests and scrapes, for SOAK_S seconds (the CI run is 4 s on the CPU backend).
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
soak=${SOAK_S:-240}
s=$SECONDS
echo "== server_test misbehaving callers, CUDA backend, ${soak} s"
MOE_TEST_BACKEND=cuda MOE_STRESS_SECONDS=$soak MOE_SERVER_BINARY=$PWD/moe-router-server \
  timeout "$(seconds_left)" ./server_test --gtest_filter='*Misbehaving*:*SixtyFour*' \
  >"$OUT/soak.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure|well-behaved answers" \
  "$OUT/soak.txt" | head -20
echo "done at $SECONDS s"
