#!/usr/bin/env bash
# Session 51, device call 3 (bench/NOTES.md session 51): the heuristic's 16-token configs
# before (rb_old, 212b441: the cluster whose rank 0 routes for routers of 65-128 experts,
# the rule's split cut elsewhere) and after (rb_new: two-tile polled from 3 expert blocks
# up, at no fewer splits than the short-pass count where two launches fit), each timed in
# --pdl_timeline's graph next to the tuner's pick (the rows "heur." and "tuned").
# Bundle: .gpu with rb_old, rb_new and this script; call with carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
F='qwen3_30b t=16$,qwen3_235b t=16$,gpt_oss_120b t=16$,llama4_maverick t=16$,glm4_moe t=16$,deepseek_v3 t=16$,deepseek_v2_lite t=16$,mixtral t=16$'
for round in 1 2; do
  for v in old new; do
    s=$SECONDS
    echo "== $v round $round"
    timeout 120 ./rb_$v --pdl_timeline --filter "$F" 2>&1 | grep -E "^(shape|[a-z0-9_]+ t=)"
    echo "took $((SECONDS - s)) s"
  done
done
echo "done at $SECONDS s"
