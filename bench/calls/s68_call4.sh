#!/usr/bin/env bash
# Session 68, call 4: cuBLASLt loaded with dlopen (not linked), so the server can route after
# cuBLASLt's GEMM: a route_after_gemm candidate from 128 tokens (call 2: the tile GEMM of 256 x
# 256 x 7168 is ~2 us slower than cuBLAS's).
# - B's whole gpu_router_test (the GEMM's cuBLASLt path now through dlopen too);
# - server_test on the CUDA backend: its plans tune the cuBLASLt candidate, loading cuBLASLt
#   after civetweb's workers started (their stacks must not lose the library's TLS);
# - router_bench at 128 / 256 tokens for the routers of 160+ experts, with the candidates.
# Bundle (as a tarball: the gRPC libraries put the folder over 64 MiB): rb_B, grt_B,
# server_test, moe-router-server, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_B gpu_router_test
gpu_tests grt_B 220
server_tests 150
s=$SECONDS
echo "== router_bench B, 128 / 256 tokens, candidates"
timeout "$(($(seconds_left) - 5))" ./rb_B --tokens 128,256 \
  --filter "deepseek_v3 t=,kimi_k2 t=,glm4_moe t=" --candidates --json "$OUT/rb.json" \
  >"$OUT/rb.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "rror|^[a-z0-9_]+ t=|cublasLt|gemm tile" "$OUT/rb.txt" | cut -c1-150
echo "done at $SECONDS s"
