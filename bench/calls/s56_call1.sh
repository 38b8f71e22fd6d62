#!/usr/bin/env bash
# Session 56, device call 1: the full gpu_router_test (session 55's landed build ran only 34
# of 67; new here: every GEMM case also through cuBLASLt, and the C ABI's hand-off of the
# large shapes to it); the GEMM shapes around GemmTakesCublas' boundary, the heuristic's
# config (cublasLt rows run through our hand-off) against the best Decompose-K config
# (--gemm_decompose_k), cublasGemmEx in the same runs; session 54's tile rows (s54_call4.sh,
# meant for an H200); Inductor's GEMM rows (bench/peers.py --gemm) if time is left. Bundle:
# .gpu with router_bench, gpu_router_test (libmoe_kernels.so in lib/), this script,
# s54_call4.sh and peers.py; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test"
timeout 220 ./gpu_router_test > "$OUT/gpu_router_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_router_test.txt" | head -20
shapes="1x1024x8192,1x1024x32768,1x2048x8192,1x4096x2048,1x4096x8192,16x512x32768"
shapes+=",16x512x131072,16x1024x8192,16x1024x32768,16x4096x8192,17x4096x8192,32x1024x32768"
shapes+=",64x1024x8192,64x4096x8192,64x512x65536,96x256x16384,128x256x7168,128x256x65536"
shapes+=",128x512x8192,256x128x8192,256x64x65536,512x64x32768,1024x16x8192,1024x128x8192"
for mode in heuristic --gemm_decompose_k; do
  s=$SECONDS
  echo "== gemm sweep: $mode"
  flag=$mode
  [ "$mode" = heuristic ] && flag=
  timeout 100 ./router_bench --filter gemm --gemm_shapes "$shapes" $flag 2>&1 | grep -E "^gemm|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
bash ./s54_call4.sh
if [ $SECONDS -lt 380 ]; then
  s=$SECONDS
  echo "== peers.py --gemm --mn 16,128"
  timeout $((560 - SECONDS)) python3 ./peers.py --lib ./lib/libmoe_kernels.so --gemm --mn 16,128 \
    --compile_budget_s $((450 - SECONDS)) --json "$OUT/peers_gemm.json" > "$OUT/peers_gemm.txt" 2>&1
  echo "rc=$? took $((SECONDS - s)) s"
  tail -25 "$OUT/peers_gemm.txt"
fi
echo "done at $SECONDS s"
