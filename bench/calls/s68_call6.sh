#!/usr/bin/env bash
# Session 68, call 6: a thread's first cuBLASLt call inside a global-mode stream capture (the
# new GpuRouteAfterGemm.AThreadsFirstCublasLtCallMayBeCaptured), with the other two-launch
# tests and the C ABI's.
# Bundle: .gpu with grt_B, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_B gpu_router_test
gpu_tests grt_new 150 'GpuRouteAfterGemm.*:GpuCApi.*'
echo "done at $SECONDS s"
