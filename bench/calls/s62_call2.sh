#!/usr/bin/env bash
# Session 62, call 2: Inductor's GEMM rows again (bench/peers.py --gemm, all 16 skinny GEMMs)
# through the C ABI at HEAD: the last full comparison was the H200's in session 49 (12 of
# 16), the H100 ran M = N 16 and 128 in session 56 (7 of 8), both before the few-row tiles
# (session 57) and the early stages of B under PDL (session 58). Bundle: .gpu with
# libmoe_kernels.so (lib/), peers.py, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
s=$SECONDS
echo "== peers.py --gemm --mn 16,32,64,128"
timeout "$(seconds_left)" python3 ./peers.py --lib ./lib/libmoe_kernels.so --gemm \
  --mn 16,32,64,128 --compile_budget_s $(($(seconds_left) - 120)) --json "$OUT/peers_gemm.json" \
  >"$OUT/peers_gemm.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^(gemm|device)|rror" "$OUT/peers_gemm.txt"
echo "done at $SECONDS s"
