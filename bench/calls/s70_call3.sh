#!/usr/bin/env bash
# Session 70, call 3: past 128 tokens the rank-0-routes clusters' grids may now take half
# again as many CTAs as SMs (call 2: Scout at 168 and 192 tokens faster at 8 splits). The
# heuristic's rows for Scout at 176-256 tokens against the tuner's, and gpu_router_test's
# family suites (now at 192 tokens: Scout's grid of 192 CTAs).
# Bundle: router_bench, gpu_router_test, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
gpu_tests grt "100" "AllFamilies/GpuFamilyTest.Fused*"
s=$SECONDS
echo "== G: --pdl_timeline --candidates, Scout past 160 tokens"
timeout "$(($(seconds_left) - 5))" stdbuf -oL ./router_bench --pdl_timeline --candidates \
  --filter 'llama4_scout t=176$,llama4_scout t=192$,llama4_scout t=200$,llama4_scout t=224$' \
  >"$OUT/audit_G.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^[a-z0-9_]+ +t=.*(tuned|heur)|tuner" "$OUT/audit_G.txt" | cut -c1-150
echo "done at $SECONDS s"
