#!/usr/bin/env bash
# Session 61, call 2: why a stream's way in is slower for moe-router-server than for echo at
# 16 tokens on quiet hosts (call 1: in p50 99-106 us against echo's 82-90, though echo's
# includes protobuf's parse of the 229 KB and the server's does not; s60 call 3 alike). One
# caller, side by side in turns: echo with the server's stream habits (answers from a
# spinning worker, read-ahead), the server as it runs, with a fixed 1 MB stream window (BDP
# probing off: is it flow control?), without read-ahead, copying before the hand-over,
# without the spinning worker. Stream 16 tokens first, then stream 1 and unary 16.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
for case in stream_16 stream_1 unary_16; do
  mode=${case%_*} tokens=${case#*_} s=$SECONDS
  echo "== one caller, $mode, $tokens tokens"
  TOKENS=$tokens MODE=$mode ROUNDS=3 SECS=1.5 timeout "$(seconds_left)" bash ./one_caller_ab.sh \
    . "$OUT/$case" "echo --handoff --read_ahead" "" "--stream_window_bytes=1048576" \
    "--max_stream_in_flight=1" "--stage_while_filling=false" "--idle_spin_us=0" |
    tee "$OUT/$case.md"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
echo "done at $SECONDS s"
