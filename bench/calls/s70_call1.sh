#!/usr/bin/env bash
# Session 70, call 1: the kernel each token bucket runs, as the server now reports it
# (ModelInfo.kernels, moe_router_kernel_info, the load log), on the CUDA backend; then the
# heuristic against the autotuner on the rows session 69's audit did not reach (Maverick,
# Scout and DeepSeek-V2-Lite at 32-128 tokens), Scout past 128 tokens, and Mixtral and
# gpt-oss-20b at 16-128 tokens (session 69: their rank-0-routes cluster at 4 splits beat the
# heuristic's 8 at 32 and 128 tokens; where does raising to 8 CTAs a chunk start to lose?).
# Bundle (a tarball: the gRPC libraries): router_bench, server_test, moe-router-server,
# moe-router, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
server_tests 200
s=$SECONDS
echo "== the CLI's models against the CUDA server (DeepSeek-V3 demo, 4 layers)"
./moe-router-server --model=demo-deepseek-v3 --demo_layers=4 --address=127.0.0.1:50071 \
  --metrics_address=127.0.0.1:9171 >"$OUT/server_log.txt" 2>&1 &
pid=$!
for _ in $(seq 120); do ./moe-router --address 127.0.0.1:50071 health >/dev/null 2>&1 && break; sleep 0.5; done
./moe-router --address 127.0.0.1:50071 models
kill -TERM $pid; wait $pid
echo "server rc=$? took $((SECONDS - s)) s"
grep -E "loaded|tokens:" "$OUT/server_log.txt" | head -12
s=$SECONDS
echo "== E: --pdl_timeline --candidates, the rows session 69's audit did not reach"
rows=''
for f in llama4_maverick llama4_scout deepseek_v2_lite; do
  for t in 32 64 128; do rows+="${rows:+,}$f t=$t\$"; done
done
rows+=',llama4_scout t=144$,llama4_scout t=160$'
for f in mixtral gpt_oss_20b; do
  for t in 16 24 48 96; do rows+=",$f t=$t\$"; done
done
timeout "$(($(seconds_left) - 5))" stdbuf -oL ./router_bench --pdl_timeline --candidates \
  --filter "$rows" >"$OUT/audit_E.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^[a-z0-9_]+ +t=.*(tuned|heur)|tuner" "$OUT/audit_E.txt" | cut -c1-150
echo "done at $SECONDS s"
