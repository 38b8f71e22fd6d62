#!/usr/bin/env bash
# Session 63, call 3, on whichever card comes (the plain kind asks for an H200 first): the
# full router_bench table at e9baab3 (the grouped epilogue's reciprocal landed), and on an
# H200 the first run of the few-row GEMM tiles (session 57) there, with their tests first.
# Bundle: .gpu with router_bench and gpu_router_test of e9baab3, device_steps.sh and this
# script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
gpu_tests gemm 90 'GpuGemm.*'
s=$SECONDS
echo "== router_bench, full table"
timeout 240 ./router_bench --json "$OUT/router_bench.json" >"$OUT/router_bench.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "rror|device:" "$OUT/router_bench.txt" | head -5
grep -E "^(gemm|deepseek_v3 t=)" "$OUT/router_bench.txt"
echo "done at $SECONDS s"
