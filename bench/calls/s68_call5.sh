#!/usr/bin/env bash
# Session 68, call 5: the heuristic routes after cuBLASLt's GEMM where cuBLASLt loads (call 4:
# DeepSeek-V3 t=256 10.48 us, Kimi K2 12.59, against 13.17 / 19.06 by the 64-tile), so the
# 256-token rows of GpuFamilyTest, the non-finite-rows test and the C ABI run it now.
# - B's whole gpu_router_test; server_test on the CUDA backend.
# Bundle (a tarball): grt_B, server_test, moe-router-server, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_B gpu_router_test
gpu_tests grt_B 220
server_tests 150
echo "done at $SECONDS s"
