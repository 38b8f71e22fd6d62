#!/usr/bin/env bash
# Session 59, device call 5: the service benchmark (bench/service_bench.sh, 2 s rows) at the
# session's server (the copy helper of call 4 not landed), with 9 rounds for each one-caller
# row (ONE_CALLER_ROUNDS; session 58 had 3, and one 2 s sample of one caller moves by tens
# of us), for issue 5's one-caller target. Bundle: .gpu with moe-router-server,
# moe-router-bench, echo_server, service_bench.sh, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
s=$SECONDS
echo "== service bench"
ONE_CALLER_ROUNDS=9 timeout "$(seconds_left)" bash ./service_bench.sh . "$OUT/service" 2 \
  >"$OUT/service_bench.md" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
cat "$OUT/service_bench.md"
cp "$OUT/service/service_bench.jsonl" "$OUT/" 2>/dev/null
echo "done at $SECONDS s"
