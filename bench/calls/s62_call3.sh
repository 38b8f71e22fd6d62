#!/usr/bin/env bash
# Session 62, call 3, meant for an H200 (the plain kind this session): the few-row GEMM tiles
# (session 57) have only ever run on H100s. Every GPU test (the GEMM tests' few-row cases
# first), then the full router_bench table, on that card. Bundle: .gpu with router_bench,
# gpu_router_test (libmoe_kernels.so in lib/), device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
gpu_tests gemm 90 'GpuGemm.*:GpuCApi.*'
s=$SECONDS
echo "== router_bench, full table"
timeout 220 ./router_bench --json "$OUT/router_bench.json" >"$OUT/router_bench.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "rror|device:" "$OUT/router_bench.txt" | head -5
grep -E "^gemm" "$OUT/router_bench.txt"
left=$(seconds_left)
[ "$left" -gt 100 ] && gpu_tests gpu_router_test "$left"
echo "done at $SECONDS s"
