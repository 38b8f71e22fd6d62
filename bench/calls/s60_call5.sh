#!/usr/bin/env bash
# Session 60, call 5: compute-sanitizer on the chunk-marked stage-in test, then the service
# benchmark (bench/service_bench.sh, 2 s rows, 3 rounds a one-caller row) at de29aa9, whose
# server hands a lone request over before copying its hidden states. Bundle: .gpu with
# moe-router-server, moe-router-bench, echo_server, gpu_router_test, service_bench.sh,
# device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
sanitize 'GpuStageIn.*' memcheck racecheck
s=$SECONDS
echo "== service bench"
ONE_CALLER_ROUNDS=3 timeout "$(seconds_left)" bash ./service_bench.sh . "$OUT/service" 2 \
  >"$OUT/service_bench.md" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
cat "$OUT/service_bench.md"
cp "$OUT/service/service_bench.jsonl" "$OUT/" 2>/dev/null
echo "done at $SECONDS s"
