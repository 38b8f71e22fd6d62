#!/usr/bin/env bash
# Session 68, call 7: route_after_gemm through LaunchGemm (the same two calls as before, from
# the GEMM's own dispatch): the two-launch and C ABI tests.
# Bundle: .gpu with grt_B, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_B gpu_router_test
gpu_tests grt_new 100 'GpuRouteAfterGemm.*:GpuCApi.*:GpuGemm.*'
echo "done at $SECONDS s"
