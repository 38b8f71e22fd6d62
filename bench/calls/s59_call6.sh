#!/usr/bin/env bash
# Session 59, device call 6: why one caller's streamed requests gap echo by ~10 us more than
# the server's own time (call 5: stream 1 token +32 us over echo with server p50 22; 16
# tokens +52 with 40) while unary gaps match. The server's RouteStream reads the next request
# as soon as one is parsed, and answers from the batcher's worker; the echo server read the
# next only after its write, on the gRPC thread. bench/one_caller_ab.sh with echo variants
# (--read_ahead, --handoff, both) beside plain echo and the server, streaming, 1 and 16
# tokens, 4 rounds of 1.5 s. Bundle: .gpu with moe-router-server, moe-router-bench,
# echo_server, one_caller_ab.sh, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
for tokens in 1 16; do
  s=$SECONDS
  echo "== stream, $tokens tokens"
  TOKENS=$tokens MODE=stream ROUNDS=4 SECS=1.5 timeout "$(seconds_left)" bash ./one_caller_ab.sh \
    . "$OUT/t$tokens" "echo --read_ahead" "echo --handoff" "echo --handoff --read_ahead" "" \
    | tee "$OUT/stream_$tokens.md"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
echo "done at $SECONDS s"
