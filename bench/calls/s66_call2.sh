#!/usr/bin/env bash
# Session 66, call 2 (after call 1, `h100_s66_call1.txt`): the router-pair test mended (it
# had compared the pairs' weights bit for bit with splits whose routers take several tokens
# a warp each, whose weights sum in another order), B's staged tests and the PDL test, then
# router_ab.sh A B (two rounds, every token count: call 1's `--quick` kept only the 1- and
# 16-token rows) on the 128-token rows of the routers the pairs apply to, DeepSeek-V3 t=64
# and t=1 as controls (the call's time left, less a minute), then DeepSeek-V3 t=128's split
# sweep with and without pairs (--pdl_timeline --sweep_splits: the pairs lost there in call
# 1's tuner) and GLM-4.5 t=128's (B's heuristic takes pairs there: rows of 48 CTAs).
# A = HEAD 4f014d2, B = this session's tree (8ddfc3c's kernels). Bundle: .gpu with rb_A,
# rb_B, grt_B, device_steps.sh, router_ab.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_B gpu_router_test
gpu_tests grt_B_staged 120 'GpuStaged.*:GpuFused.PdlWaitsForTheKernelThatWritesTheHiddenStates'
s=$SECONDS
echo "== A/B (router_ab.sh, ROUNDS=2)"
rows='deepseek_v3 t=128$,glm4_moe t=128$,llama4_maverick t=128$,qwen3_235b t=128$'
rows+=',deepseek_v3 t=64$,deepseek_v3 t=1$'
ROUNDS=2 timeout "$(($(seconds_left) - 60))" ./router_ab.sh ./rb_A ./rb_B /tmp/ab \
  --filter "$rows" | tee "$OUT/ab.txt"
echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
s=$SECONDS
echo "== B: DeepSeek-V3 t=128 split sweep with and without pairs; GLM-4.5 t=128 (heuristic)"
timeout "$(($(seconds_left) - 5))" ./rb_B --pdl_timeline --sweep_splits 12,14,16,19 \
  --filter 'deepseek_v3 t=128$,glm4_moe t=128$' >"$OUT/sweep_B.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^[a-z0-9_]+ +t=" "$OUT/sweep_B.txt" | cut -c1-240
echo "done at $SECONDS s"
