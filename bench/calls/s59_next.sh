#!/usr/bin/env bash
# Written in session 59 for the next device time (not run): (1) where one caller's streaming
# gap over echo sits. Session 59's fast host had it ~10 us over the server's own p50 (stream
# 1 token +32 against 22, 16 tokens +52 against 40) while the unary gaps matched the server's
# time; moe-router-bench --same_host_timing (10169d8) now splits the rest into the way in and
# the way out from each server's arrival stamp, so one_caller_ab.sh's "in" / "out" columns
# name the side. Stream and unary, 1 and 16 tokens, 5 rounds. (2) On an H200 only (none came
# in session 59), s58_next.sh's GEMM table and few-row edges. Bundle: .gpu with
# moe-router-server, moe-router-bench, echo_server, router_bench, one_caller_ab.sh,
# device_steps.sh and this script; carry [".gpu"].
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
for mode in stream unary; do
  for tokens in 1 16; do
    s=$SECONDS
    echo "== one caller, $mode, $tokens tokens"
    TOKENS=$tokens MODE=$mode ROUNDS=5 SECS=1.5 timeout "$(seconds_left)" bash ./one_caller_ab.sh \
      . "$OUT/${mode}_$tokens" "" | tee "$OUT/${mode}_$tokens.md"
    echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
  done
done
case "$(nvidia-smi --query-gpu=name --format=csv,noheader)" in
  *H200*)
    bench_rows "GEMM table (H200)" 150 ./router_bench --filter gemm
    bench_rows "few-row edges (H200)" 100 ./router_bench --filter gemm --gemm_shapes \
      "1x8x8192,8x8x65536,24x24x131072,9x100x131072,32x256x65536,16x64x65536,64x256x65536"
    ;;
esac
echo "done at $SECONDS s"
