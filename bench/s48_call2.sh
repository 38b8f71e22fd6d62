#!/usr/bin/env bash
# Session 48, device call 2: the winner of s48_call1.sh checked, and what else is owed.
#   bash .gpu/s48_call2.sh     with in .gpu (device-bundle): gpu_router_test (the winner's
#   build), moe-router-server, server_test and libmoe_kernels.so (HEAD's; strip them),
#   bench/peers.py and this script (~25 MB).
# gpu_router_test of the winner; server_test on the CUDA backend (session 46's three
# server tests have never run there); then bench/peers.py --gemm with torch.compile, the
# largest M = N first, in what is left of the call (the H200 Inductor GEMM rows issue 3
# asks for).
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test"
timeout 120 ./gpu_router_test > "$OUT/gpu_router_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED" "$OUT/gpu_router_test.txt" | head -20
s=$SECONDS
echo "== server_test, CUDA backend"
MOE_TEST_BACKEND=cuda MOE_SERVER_BINARY=$PWD/moe-router-server timeout 150 ./server_test \
  > "$OUT/server_test_cuda.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[ +(OK|FAILED|SKIPPED|PASSED) |tests from .* ran" "$OUT/server_test_cuda.txt"
s=$SECONDS
left=$((575 - SECONDS))
echo "== peers.py --gemm ($left s left)"
if [ $left -gt 60 ]; then
  timeout $left python3 peers.py --lib ./libmoe_kernels.so --gemm --mn 128,64,32,16 \
    --compile_budget_s $((left - 45)) --json "$OUT/peers_gemm.json" 2>&1 | grep -v -i warn
  echo "rc=$? took $((SECONDS - s)) s"
fi
