#!/usr/bin/env bash
# Session 71, call 2: plans that route after cuBLASLt's GEMM now hold what its algorithm asks
# for (call 1's probe: 0.4-1.2 MiB) instead of 32 MiB, and every launch takes its
# workspace's size. The whole gpu_router_test (the launch API changed at every call site;
# new: a route through cuBLASLt with no workspace past the logits, through the C ABI too),
# whether cuBLASLt's heuristic picks the same algorithm with only that much workspace (the
# probe, now asking again at the first algorithm's size and at none), DeepSeek-V3's and Kimi
# K2's 256-token rows (the plans' own workspaces; session 68: 10.47 / 12.60 us under PDL),
# and server_test on the CUDA backend (its 256-token plans).
# Bundle (gpu.tgz, xz: unpacked here): gpu_router_test, server_test, moe-router-server,
# router_bench, cublaslt_workspace_probe, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
echo "== cuBLASLt's first algorithm at the workspace it asks for, and at none"
timeout 30 ./cublaslt_workspace_probe 2>&1 | tee "$OUT/cublaslt_same_algo.txt"
gpu_tests grt 200
server_tests 90
# Last, where time is left (the device budget was short after failed starts).
if [ "$(seconds_left)" -gt 90 ]; then
  bench_rows "router_bench, 256 tokens" "$(($(seconds_left) - 5))" ./router_bench --tokens 256 \
    --filter 'deepseek_v3 t=256$,kimi_k2 t=256$'
fi
echo "done at $SECONDS s"
