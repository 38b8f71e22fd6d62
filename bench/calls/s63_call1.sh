#!/usr/bin/env bash
# Session 63, call 1: the one-token grouped epilogue restructured (C: column warps score
# their groups by WarpTop2Keys before the barrier, every warp ranks the groups after it,
# the kept columns' warps write their candidates at compact slots, a second barrier; no
# division or slot search on warp 0) and the weights' normaliser as a tree (D = C +
# SumChosen). gpu_router_test of D (with the new GpuShapes.GroupsOfWholeColumnsAtFewTokens),
# epilogue_probe A / C / D, then router_ab.sh A C D on the rows whose epilogue changed.
# Bundle: .gpu with rb_A rb_C rb_D grt_D probe_A probe_C probe_D, device_steps.sh,
# router_ab.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_D gpu_router_test
gpu_tests gpu_router_test 150
for v in A C D; do
  echo "== epilogue_probe $v"
  timeout 40 "./probe_$v" >"$OUT/probe_$v.txt" 2>&1
  echo "rc=$?"
  grep -iE "^ *(deepseek_v3|qwen3_30b|gpt_oss_120b|mixtral|kimi_k2)" "$OUT/probe_$v.txt" | tail -5
done
s=$SECONDS
echo "== A/C/D (router_ab.sh, ROUNDS=2)"
rows='deepseek_v3 t=1$,deepseek_v3 t=4$,deepseek_v3 t=16$,kimi_k2 t=1$,qwen3_30b t=1$'
rows+=',qwen3_30b t=16$,qwen3_235b t=1$,gpt_oss_120b t=1$,mixtral t=1$,gpt_oss_20b t=1$'
ROUNDS=2 timeout "$(seconds_left)" ./router_ab.sh ./rb_A ./rb_C ./rb_D "$OUT/ab" --quick \
  --filter "$rows" | tee "$OUT/ab.txt"
echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
echo "done at $SECONDS s"
