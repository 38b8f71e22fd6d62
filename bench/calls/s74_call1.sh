#!/usr/bin/env bash
# Session 74, call 1: no kernel changed since session 73's call. server_test on the CUDA
# backend again, for the race fixed in ABusyPortIsAnErrorUnlessBothServersShareIt (the
# --reuse_port successor is judged ready by its own metrics, not the shared port's health) and
# for the new /healthz, /readyz and moe_router_serving through loading, serving and draining;
# the whole gpu_router_test at HEAD; and the host side of one eager launch call
# (--host_launch_cost), which since 529d12d asks cudaGetDevice for the per-device sm_90 answer
# (session 41 on the H200: 3.9-5.6 us a call).
# Bundle (gpu.tgz): gpu_router_test, server_test, moe-router-server, router_bench,
# device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
server_tests 120
gpu_tests grt 240
s=$SECONDS
echo "== router_bench --host_launch_cost"
timeout 60 ./router_bench --host_launch_cost >"$OUT/host_launch_cost.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -iE "launch|us" "$OUT/host_launch_cost.txt" | tail -12
echo "done at $SECONDS s"
