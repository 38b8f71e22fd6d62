#!/usr/bin/env bash
# Session 59, device call 4: the parse's copy split with the batcher's spinning worker
# (CopyHelper, --copy_helper_min_bytes), A/B in one run with bench/one_caller_ab.sh: the
# helper off (=0) against on (the default, 64 KB), echo beside them. One caller, 16
# DeepSeek-V3 tokens (229 KB a request), streaming and unary, 7 rounds each; 64 streaming
# callers of 16 tokens (throughput must not drop), 2 rounds; one caller of 1 token (below
# the minimum: must not move), 3 rounds. Bundle: .gpu with moe-router-server,
# moe-router-bench, echo_server, one_caller_ab.sh, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ab() {  # label env...: one one_caller_ab run, helper off then on
  local label=$1 s=$SECONDS
  shift
  echo "== $label"
  env "$@" SECS=2 timeout "$(seconds_left)" bash ./one_caller_ab.sh . "$OUT/$label" \
    "--copy_helper_min_bytes=0" "" | tee "$OUT/$label.md"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
}
ab stream16 TOKENS=16 MODE=stream ROUNDS=7
ab unary16 TOKENS=16 MODE=unary ROUNDS=7
ab stream16_64callers TOKENS=16 MODE=stream ROUNDS=2 CALLERS=64
ab stream1 TOKENS=1 MODE=stream ROUNDS=3
echo "done at $SECONDS s"
