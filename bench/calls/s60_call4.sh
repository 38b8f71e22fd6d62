#!/usr/bin/env bash
# Session 60, call 4: where a streamed request's way in goes. Call 3's quiet host had the
# server's way in (send to handler) 7 us (1 token) and 16 us (16 tokens) over echo's on
# streams, though echo's includes its protobuf parse; on unary calls it is below echo's.
# Echo with the server's two stream habits (--read_ahead, --handoff, both), and the server
# without read-ahead (--max_stream_in_flight=1: the next read starts once the answer is
# written, as echo's does), one caller, 3 rounds, 1 and 16 tokens.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
for tokens in 1 16; do
  s=$SECONDS
  echo "== one caller, stream, $tokens tokens"
  TOKENS=$tokens MODE=stream ROUNDS=3 SECS=1.5 timeout "$(seconds_left)" bash ./one_caller_ab.sh \
    . "$OUT/stream_$tokens" "echo --read_ahead" "echo --handoff" "echo --read_ahead --handoff" \
    "" "--max_stream_in_flight=1" | tee "$OUT/stream_$tokens.md"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
# Then the phase trace (bench/patches/s60_phase_trace2.patch on de29aa9: the parse's scan, the
# hand-over and the deferred copy stamped too), 2 rounds a row, its step medians at drain.
for mode in stream unary; do
  for tokens in 1 16; do
    echo "== phase trace, $mode, $tokens tokens"
    TOKENS=$tokens MODE=$mode ROUNDS=2 SECS=1.5 timeout "$(seconds_left)" bash ./one_caller_ab.sh \
      . "$OUT/trace_${mode}_$tokens" "SERVER_BIN=./moe-router-server-trace" >/dev/null
    grep PHASE "$OUT/trace_${mode}_$tokens/server_1.log"
  done
done
echo "done at $SECONDS s"
