#!/usr/bin/env bash
# session 47, call 2 (calls 2 and 3 packed into one; the bundle goes as bundle.tar.xz beside
# this script: bench/NOTES.md session 47 says how it is made).
# A = 9bbc460; D = TensorCoreUnrollSteps(2) = 2 (a pass of 2 K steps at two token tiles,
# 48 fewer live registers); E = the polled kernel's two-tile instances built for one CTA an
# SM (__launch_bounds__(256, 1): no 128-register cap, 140-167 registers, no spills).
# Then D's and E's t=16 timelines, gpu_router_test of each, server_test on the CUDA
# backend (HEAD), peers.py --gemm with torch.compile (largest M = N first) in what is left.
set -u
cd "$(dirname "$0")"
python3 -c "import tarfile; tarfile.open('bundle.tar.xz').extractall('b')"
cd b
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
F='deepseek_v3 t=1$,deepseek_v3 t=16$,deepseek_v3 t=64$,qwen3_30b t=1$,qwen3_30b t=16$,qwen3_235b t=16$,gpt_oss_120b t=16$,llama4_maverick t=16$,kimi_k2 t=16$'
s=$SECONDS
echo "== A/D/E (router_ab.sh, ROUNDS=2)"
ROUNDS=2 timeout 230 bash ./router_ab.sh ./rb_base ./rb_d ./rb_e $OUT/ade --filter "$F"
echo "rc=$? A/D/E took $((SECONDS - s)) s"; s=$SECONDS
T='qwen3_30b t=16$,gpt_oss_120b t=16$,deepseek_v3 t=16$'
for v in d e; do
  echo "== timeline $v"
  timeout 30 ./rb_$v --pdl_timeline --filter "$T" 2>&1 | grep -E "^(shape|qwen|gpt|deepseek)"
done
echo "timelines took $((SECONDS - s)) s"
for v in d e; do
  s=$SECONDS
  echo "== gpu_router_test $v"
  timeout 90 ./gpu_router_test_$v > $OUT/gpu_router_test_$v.txt 2>&1
  echo "rc=$? took $((SECONDS - s)) s"; grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED" $OUT/gpu_router_test_$v.txt | head
done
s=$SECONDS
echo "== server_test, CUDA backend (at $SECONDS s)"
MOE_TEST_BACKEND=cuda MOE_SERVER_BINARY=$PWD/moe-router-server timeout 120 ./server_test > $OUT/server_test_cuda.txt 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[ +(OK|FAILED|SKIPPED|PASSED) |tests from .* ran" $OUT/server_test_cuda.txt
s=$SECONDS
left=$((575 - SECONDS))
echo "== peers.py --gemm ($left s left)"
[ $left -gt 40 ] && timeout $left python3 peers.py --lib ./libmoe_kernels.so --gemm --mn 128,64,32,16 \
  --compile_budget_s $((left - 45)) --json $OUT/peers_gemm.json 2>&1 | grep -v -i warn
echo "rc=$? took $((SECONDS - s)) s"
