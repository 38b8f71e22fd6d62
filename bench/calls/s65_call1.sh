#!/usr/bin/env bash
# Session 65, call 1, on whichever card comes (the plain kind asks for an H200 first): the
# whole gpu_router_test at this session's HEAD (the router heuristic now gives out-of-range
# problems the default config, host code only; device kernels unchanged since e9baab3);
# on an H200 also the full router_bench table, the first H200 table since session 49, and
# the first run of the few-row GEMM tiles (session 57) there.
# Bundle: .gpu with router_bench and gpu_router_test of HEAD, device_steps.sh, this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
gpu_tests gpu_router_test 200
if ! nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  echo "not an H200: no table (session 63's H100 table has these kernels)"
  exit 0
fi
s=$SECONDS
echo "== router_bench, full table"
timeout "$(seconds_left)" ./router_bench --json "$OUT/router_bench.json" >"$OUT/router_bench.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "rror|device:" "$OUT/router_bench.txt" | head -5
grep -E "^(gemm|deepseek_v3 t=|qwen3_30b t=|gpt_oss_120b t=|kimi_k2 t=128)" "$OUT/router_bench.txt"
echo "done at $SECONDS s"
