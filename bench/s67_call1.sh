#!/usr/bin/env bash
# Session 67, call 1: the heuristic's staged router pairs for routers of two 64-expert tiles
# over 4096+ hidden past 64 tokens (Qwen3-235B at 16 splits, cooperative; Llama 4 Maverick at
# 20), where it took the polled 32-expert CTAs. B's --pdl_timeline --candidates on those rows
# (65-128 tokens: the tuner's fastest, B's heuristic and the fastest polled candidate, the
# kernel of the old rule) and on gpt-oss-120b (2880 hidden: not measured with pairs); then B's
# whole gpu_router_test (the occupancy test's pair instances not yet run on a GPU), then the
# full router_bench table at B (the first since session 63's e9baab3).
# Bundle: .gpu with rb_B, grt_B, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
s=$SECONDS
echo "== B: --pdl_timeline --candidates, routers of two expert tiles past 64 tokens"
rows='qwen3_235b t=80$,qwen3_235b t=96$,qwen3_235b t=128$,llama4_maverick t=80$'
rows+=',llama4_maverick t=96$,llama4_maverick t=128$,gpt_oss_120b t=96$,gpt_oss_120b t=128$'
timeout 200 ./rb_B --pdl_timeline --candidates --filter "$rows" >"$OUT/timeline_B.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^[a-z0-9_]+ +t=|tuner" "$OUT/timeline_B.txt" | cut -c1-130
ln -sf grt_B gpu_router_test
gpu_tests grt_B 150
s=$SECONDS
echo "== router_bench B, full table"
timeout "$(($(seconds_left) - 5))" ./rb_B --json "$OUT/router_bench.json" >"$OUT/router_bench.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "rror|device:" "$OUT/router_bench.txt" | head -5
grep -E "^(deepseek_v3|kimi_k2|qwen3_235b|llama4_maverick|gpt_oss_120b) t=" "$OUT/router_bench.txt" | cut -c1-110
echo "done at $SECONDS s"
