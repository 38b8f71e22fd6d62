#!/usr/bin/env bash
# Session 68, call 3: the heuristic past 128 tokens (routers of 65-159 experts take the staged
# tiles at 129-159 tokens; routers of 256+ experts whose staged grid cannot be resident route
# after the staged-tile GEMM: DeepSeek-V3 from 193 tokens, Kimi K2 from 129), built on call 2;
# session 67's staged router pairs for two 64-expert tiles narrowed to 97-128 tokens (call 1).
# - B's whole gpu_router_test (the non-finite-rows test now at 256 tokens too);
# - server_test on the CUDA backend (its plans now also tune the two-launch candidates);
# - --pdl_timeline --candidates at 112 / 144 / 200 tokens: the heuristic's configs against the
#   tuner's fastest (route_after_gemm configs have no timeline: the tuner's time only).
# Bundle: .gpu with rb_B, grt_B, server_test, moe-router-server, device_steps.sh and this.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_B gpu_router_test
gpu_tests grt_B 200
server_tests 120
s=$SECONDS
echo "== B: --pdl_timeline --candidates past 128 tokens"
rows='qwen3_235b t=144$,gpt_oss_120b t=144$,qwen3_30b t=144$,llama4_maverick t=144$'
rows+=',glm4_moe t=144$,deepseek_v3 t=200$,kimi_k2 t=144$,kimi_k2 t=200$'
rows+=',qwen3_235b t=112$,llama4_maverick t=112$'
timeout "$(($(seconds_left) - 5))" ./rb_B --pdl_timeline --candidates --filter "$rows" \
  >"$OUT/timeline_B.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^[a-z0-9_]+ +t=|tuner" "$OUT/timeline_B.txt" | cut -c1-150
echo "done at $SECONDS s"
