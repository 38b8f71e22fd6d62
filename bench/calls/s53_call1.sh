#!/usr/bin/env bash
# Session 53, device call 1: the staged tiles' hidden states shared by TMA multicast in
# clusters of expert tiles (DecomposeKConfig::staged_multicast). First the new GPU test
# alone, then --pdl_timeline sweeps of the staged rows (each split count in every launch,
# multicast among them), then the whole gpu_router_test. Bundle: .gpu with router_bench,
# gpu_router_test and this script (../shared/tools/device-bundle); carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
timeout 90 ./gpu_router_test --gtest_filter='GpuStaged.Multicast*' 2>&1 | tail -15
echo "rc=${PIPESTATUS[0]} multicast test took $((SECONDS - s)) s"
F='deepseek_v3 t=64$,deepseek_v3 t=128$,kimi_k2 t=64$,kimi_k2 t=128$,glm4_moe t=128$,qwen3_235b t=128$,llama4_maverick t=128$'
s=$SECONDS
timeout 280 ./router_bench --pdl_timeline --sweep_splits 8,10,11,12,14,16,19,22 --filter "$F" 2>&1 | grep -E "^(shape|[a-z0-9_]+ t=)|rror"
echo "rc=${PIPESTATUS[0]} sweep took $((SECONDS - s)) s"
s=$SECONDS
timeout 200 ./gpu_router_test 2>&1 | tail -6
echo "rc=${PIPESTATUS[0]} tests took $((SECONDS - s)) s"
echo "done at $SECONDS s"
