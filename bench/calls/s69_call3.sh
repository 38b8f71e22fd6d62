#!/usr/bin/env bash
# Session 69, call 3: the heuristic against the autotuner on every family at every server
# token bucket, per call under PDL in the timeline's graph. Session 69
# found the heuristic 3x off for routers of up to 64 experts at 256 tokens, unnoticed since
# tables print the tuner's pick; the heuristic is what the C ABI and --autotune=false run.
# The larger token counts first (the decode rows were audited in sessions 23-52), then 8, 16
# and 2. Then part of gpu_router_test of 0a54782 (LaunchAttributes sets a repeated attribute
# again), as the device time left allows.
# Bundle: rb_D and grt_D (0a54782's code), device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
rows=''
for f in deepseek_v3 kimi_k2 glm4_moe qwen3_235b qwen3_30b mixtral gpt_oss_120b gpt_oss_20b \
  llama4_maverick llama4_scout deepseek_v2_lite; do
  for t in 32 64 128 256; do rows+="${rows:+,}$f t=$t\$"; done
done
for f in deepseek_v3 kimi_k2 glm4_moe qwen3_235b qwen3_30b mixtral gpt_oss_120b gpt_oss_20b \
  llama4_maverick llama4_scout deepseek_v2_lite; do
  for t in 8 16 2; do rows+=",$f t=$t\$"; done
done
s=$SECONDS
echo "== D: --pdl_timeline --candidates, every family x bucket"
timeout "$(($(seconds_left) - 60))" stdbuf -oL ./rb_D --pdl_timeline --candidates --filter "$rows" \
  >"$OUT/audit_D.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -cE "^[a-z0-9_]+ +t=.*tuned" "$OUT/audit_D.txt"
grep -E "^[a-z0-9_]+ +t=.*heur" "$OUT/audit_D.txt" | cut -c1-130
ln -sf grt_D gpu_router_test
gpu_tests grt_D "$(($(seconds_left) - 2))" "GpuCApi.*:GpuPolled.*:*Cluster*:GpuFused.*"
echo "done at $SECONDS s"
