#!/usr/bin/env bash
# Session 64, call 2: the staged tiles with dedicated router CTAs (C) at 64 tokens, where each
# tile CTA of HEAD's staged launch also routes a token with a cold epilogue. C's
# --pdl_timeline --candidates on DeepSeek-V3 and Kimi K2 at 64 tokens, then router_ab.sh A C
# (A = HEAD 4200b3b) on the 64-token rows of the routers of 128+ experts and two 128-token
# controls (no dedicated routers fit there). Call 1's --quick A/B had no 64-token rows.
# Bundle: .gpu with rb_A rb_C, device_steps.sh, router_ab.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
s=$SECONDS
echo "== C: --pdl_timeline --candidates, 64-token rows"
rows='deepseek_v3 t=64$,kimi_k2 t=64$'
timeout 120 ./rb_C --pdl_timeline --candidates --filter "$rows" >"$OUT/timeline_C64.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^(deepseek_v3|kimi_k2) t=|tuner" "$OUT/timeline_C64.txt" | cut -c1-230
s=$SECONDS
echo "== A/C (router_ab.sh, ROUNDS=2)"
rows='deepseek_v3 t=64$,kimi_k2 t=64$,glm4_moe t=64$,qwen3_235b t=64$,gpt_oss_120b t=64$'
rows+=',llama4_maverick t=64$,qwen3_30b t=64$,deepseek_v3 t=128$,kimi_k2 t=128$'
ROUNDS=2 timeout "$(($(seconds_left) - 10))" ./router_ab.sh ./rb_A ./rb_C /tmp/ab \
  --filter "$rows" | tee "$OUT/ab64.txt"
echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
echo "done at $SECONDS s"
