#!/usr/bin/env bash
# Session 60, call 2: the scratch phase trace (bench/patches/s60_phase_trace.patch) of one caller's
# request inside moe-router-server, stream and unary, 1 and 16 tokens; step medians from the
# server's stderr at its drain.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
for mode in stream unary; do
  for tokens in 1 16; do
    s=$SECONDS
    echo "== one caller, $mode, $tokens tokens"
    TOKENS=$tokens MODE=$mode ROUNDS=3 SECS=1.5 timeout "$(seconds_left)" bash ./one_caller_ab.sh \
      . "$OUT/${mode}_$tokens" "" | tee "$OUT/${mode}_$tokens.md"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
    grep PHASE "$OUT/${mode}_$tokens/server_1.log"
  done
done
echo "done at $SECONDS s"
