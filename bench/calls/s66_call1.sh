#!/usr/bin/env bash
# Session 66, call 1: the staged router pairs (DecomposeKConfig::staged_router_pairs: a
# router CTA gathers two tokens and each half of it routes one, so half the CTAs of a full
# chunk leave after publishing; an autotuner candidate beside every staged split count).
# B = this session's tree, A = HEAD 4f014d2 (no pairs). B's whole gpu_router_test (the
# epilogue's CtaRouteToken now also runs on half a CTA; new: GpuStaged.RouterPairsGiveThe
# BitsOfOneTokenRouters), B's --pdl_timeline --candidates on the staged rows, then
# router_ab.sh A B (two rounds) on the 64- and 128-token rows of the routers the pairs
# apply to, Kimi K2 t=128 (no pairs: more than 256 experts) and two decode rows as controls.
# Bundle: .gpu with rb_A, rb_B, grt_B, device_steps.sh, router_ab.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_B gpu_router_test
gpu_tests grt_B 200
s=$SECONDS
echo "== B: --pdl_timeline --candidates, staged rows"
rows='deepseek_v3 t=64$,deepseek_v3 t=128$,glm4_moe t=128$,llama4_maverick t=128$'
rows+=',qwen3_235b t=128$'
timeout 150 ./rb_B --pdl_timeline --candidates --filter "$rows" >"$OUT/timeline_B.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^[a-z0-9_]+ +t=|tuner" "$OUT/timeline_B.txt" | cut -c1-240
s=$SECONDS
echo "== A/B (router_ab.sh, ROUNDS=2)"
rows='deepseek_v3 t=64$,deepseek_v3 t=128$,glm4_moe t=64$,glm4_moe t=128$'
rows+=',llama4_maverick t=128$,qwen3_235b t=128$,kimi_k2 t=128$,deepseek_v3 t=1$,qwen3_30b t=16$'
ROUNDS=2 timeout "$(($(seconds_left) - 10))" ./router_ab.sh ./rb_A ./rb_B /tmp/ab --quick \
  --filter "$rows" | tee "$OUT/ab.txt"
echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
echo "done at $SECONDS s"
