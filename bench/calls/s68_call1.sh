#!/usr/bin/env bash
# Session 68, call 1 (session 67's call 1, which got no machine, plus the rows past 128 tokens):
# - B's --pdl_timeline --candidates on the heuristic's staged router pairs for routers of two
#   64-expert tiles over 4096+ hidden past 64 tokens (Qwen3-235B, Llama 4 Maverick at 80 / 96 /
#   128 tokens), on gpt-oss-120b (2880 hidden: not measured with pairs) at 96 / 128, and at 144
#   tokens, where routers of 65-128 experts take the generic cluster config (129-159 tokens);
# - B's whole gpu_router_test (the occupancy test's pair instances and the routing-keyed
#   autotune cache test have not yet run on a GPU);
# - router_bench at 256 tokens, every family (the server's largest bucket; never in a table);
# - the full router_bench table (the first since session 63's e9baab3).
# Bundle: .gpu with rb_B, grt_B, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
s=$SECONDS
echo "== B: --pdl_timeline --candidates, routers of two expert tiles past 64 tokens"
rows='qwen3_235b t=80$,qwen3_235b t=96$,qwen3_235b t=128$,llama4_maverick t=80$'
rows+=',llama4_maverick t=96$,llama4_maverick t=128$,gpt_oss_120b t=96$,gpt_oss_120b t=128$'
rows+=',qwen3_235b t=144$,gpt_oss_120b t=144$,qwen3_30b t=144$'
timeout 200 ./rb_B --pdl_timeline --candidates --filter "$rows" >"$OUT/timeline_B.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^[a-z0-9_]+ +t=|tuner" "$OUT/timeline_B.txt" | cut -c1-130
ln -sf grt_B gpu_router_test
gpu_tests grt_B 150
s=$SECONDS
echo "== router_bench B, 256 tokens"
timeout 120 ./rb_B --tokens 256 --filter " t=" --json "$OUT/router_bench_256.json" \
  >"$OUT/router_bench_256.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "rror|^[a-z0-9_]+ t=" "$OUT/router_bench_256.txt" | cut -c1-110
s=$SECONDS
echo "== router_bench B, full table"
timeout "$(($(seconds_left) - 5))" ./rb_B --json "$OUT/router_bench.json" >"$OUT/router_bench.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "rror|device:" "$OUT/router_bench.txt" | head -5
grep -E "^(deepseek_v3|kimi_k2|qwen3_235b|llama4_maverick|gpt_oss_120b) t=" "$OUT/router_bench.txt" | cut -c1-110
echo "done at $SECONDS s"
