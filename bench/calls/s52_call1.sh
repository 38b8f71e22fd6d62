#!/usr/bin/env bash
# Session 52, device call 1: gpu_router_test at HEAD (c5c9bc4), then the heuristic's configs
# at 17-64 tokens: rb_old (HEAD) against rb_new (experiment: two token tiles with dedicated
# routers, one CTA a SM, up to 64 tokens, no rank-0 cluster from 3 expert blocks), and a
# split sweep of rb_new's config, each launch (plain / coop, x 1cta), in --pdl_timeline graphs.
# rb_new was c5c9bc4 with three edits to kernels/decompose_k_config.cc (not kept; the landed
# form is TwoTileDecodeConfig, bbdbb75): token_tiles 2 up to 64 tokens in ChooseConfig, the
# rank-0 cluster's "m_blocks > 2 && tokens <= 16" refusal widened to 64 tokens, and before the
# polled branch's "past 16 tokens" return: FitDedicatedRouters(polled) with
# pdl_one_cta_per_sm, returned where CheckConfigOn passes. Bundle: .gpu with rb_old, rb_new,
# gpu_router_test and this script (../shared/tools/device-bundle); carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
timeout 200 ./gpu_router_test 2>&1 | tail -4
echo "rc=$? test took $((SECONDS - s)) s"
F=''
for f in qwen3_30b qwen3_235b gpt_oss_120b llama4_maverick glm4_moe deepseek_v3 kimi_k2; do
  for t in 24 32 48 64; do
    case "$f $t" in "deepseek_v3 64"|"kimi_k2 64") continue;; esac
    F="$F,$f t=$t\$"
  done
done
F=${F#,}
s=$SECONDS
echo "== new with sweep"
timeout 300 ./rb_new --pdl_timeline --sweep_splits 2,3,4,5,6,8 --filter "$F" 2>&1 | grep -E "^(shape|[a-z0-9_]+ t=)"
echo "rc=$? took $((SECONDS - s)) s"
s=$SECONDS
echo "== old"
timeout 150 ./rb_old --pdl_timeline --filter "$F" 2>&1 | grep -E "^(shape|[a-z0-9_]+ t=)"
echo "rc=$? took $((SECONDS - s)) s"
echo "done at $SECONDS s"
