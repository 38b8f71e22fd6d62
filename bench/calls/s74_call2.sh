#!/usr/bin/env bash
# Session 74, call 2 (not yet run: no device was lent in session 74): CTAs of two expert
# blocks (bench/patches/s74_block_pairs.patch, DecomposeKConfig::block_pairs). Why: at 16
# tokens a DeepSeek-V3 mainloop CTA pulls 32 KB of hidden states after the PDL wait (8
# tokens: 14 KB; 32 tokens: 76 KB), and the last mainloop ends 0.51 / 1.03 / 2.31 us after
# the wait at 8 / 16 / 32 tokens (session 69's timelines): ~34 bytes/ns an SM, the per-SM
# ingress the staged sessions measured. A CTA of two blocks at twice the splits streams as
# many weights before the wait and half the hidden states after it. Predicted: DeepSeek-V3
# t=16 3.97 -> ~3.5 us, t=32 -1 us; nothing below 9 tokens (not offered there); the 128-expert
# routers at 16 tokens (8-13 KB a CTA) little.
#
# Build (here, hopper preset): A = router_bench of HEAD (as .gpu/rb_a); then
# `git apply bench/patches/s74_block_pairs.patch`, B = router_bench (.gpu/rb_b) and
# gpu_router_test (.gpu/gpu_router_test); bundle those with bench/router_ab.sh,
# device_steps.sh and this script (device-bundle .gpu ...), tar | xz into gpu.tgz.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
# Correctness first: the new test, then the slow-producer PDL test that now runs the tuner's
# block-pair candidates behind a kernel that writes the hidden states.
gpu_tests grt_pairs 240 "GpuConfigs.BlockPairsMatchReference:GpuFused.PdlWaitsForTheKernelThatWritesTheHiddenStates"
if grep -q "FAILED" "$OUT/grt_pairs.txt"; then echo "block pairs wrong: stop"; exit 1; fi
s=$SECONDS
echo "== the tuner's five fastest and the phases, B"
timeout 150 ./rb_b --pdl_timeline --candidates --tokens 16,32 \
  --filter 'deepseek_v3 t=16$,deepseek_v3 t=32$,glm4_moe t=16$,qwen3_30b t=16$,llama4_maverick t=16$' \
  >"$OUT/pairs_timeline.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^(deepseek_v3|glm4_moe|qwen3_30b|llama4_maverick) t=" "$OUT/pairs_timeline.txt" | head -40
s=$SECONDS
echo "== router_ab A (HEAD) / B (block pairs), two rounds"
ROUNDS=2 timeout 200 bash ./router_ab.sh ./rb_a ./rb_b "$OUT/ab" --tokens 1,16,32,64 \
  --filter 'deepseek_v3,glm4_moe,qwen3_30b,qwen3_235b,gpt_oss_120b,llama4_maverick,mixtral' \
  2>&1 | tail -40
echo "rc=$? took $((SECONDS - s)) s"
# Landing needs the whole gpu_router_test of B too, and the sanitizers: here where time is
# left, else a call of their own (gpu_tests grt_b 400; sanitize ... racecheck memcheck).
if [ "$(seconds_left)" -gt 220 ]; then
  gpu_tests grt_b "$(($(seconds_left) - 10))"
fi
if [ "$(seconds_left)" -gt 100 ]; then
  sanitize "GpuConfigs.BlockPairsMatchReference" racecheck memcheck
fi
echo "done at $SECONDS s"
