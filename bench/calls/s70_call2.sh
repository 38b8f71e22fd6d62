#!/usr/bin/env bash
# Session 70, call 2: the heuristic's rank-0-routes clusters without the raise to 8 CTAs a
# cluster, and with grids of up to a quarter more CTAs than SMs past 128 tokens (call 1's
# audit). The heuristic's rows against the tuner's where the rule changed and call 1 did not
# measure (DeepSeek-V2-Lite and Mixtral at 9-16 tokens, Scout at 168-192), and a few it did;
# then gpu_router_test's family, cluster and C ABI suites (the families now also at 160
# tokens, Scout's grid past the SMs).
# Bundle: router_bench, gpu_router_test, libmoe_kernels.so, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
s=$SECONDS
echo "== F: --pdl_timeline --candidates, rows whose heuristic config changed"
rows='deepseek_v2_lite t=9$,deepseek_v2_lite t=12$,deepseek_v2_lite t=16$,mixtral t=9$'
rows+=',mixtral t=12$,gpt_oss_20b t=12$,llama4_scout t=160$,llama4_scout t=168$'
rows+=',llama4_scout t=192$,mixtral t=128$,deepseek_v2_lite t=64$'
timeout 150 stdbuf -oL ./router_bench --pdl_timeline --candidates --filter "$rows" \
  >"$OUT/audit_F.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^[a-z0-9_]+ +t=.*(tuned|heur)|tuner" "$OUT/audit_F.txt" | cut -c1-150
gpu_tests grt "$(($(seconds_left) - 2))" "AllFamilies/GpuFamilyTest.Fused*:*Cluster*:GpuCApi.*:GpuConfigs.*"
echo "done at $SECONDS s"
