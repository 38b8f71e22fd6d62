#!/usr/bin/env bash
# Session 53, device call 2 (build of 20479f2: the heuristic's staged tiles cooperative where
# the grid takes at most half the SMs). (1) DeepSeek-V3 at 33-64 tokens and Kimi K2 t=40:
# the heuristic's row (now cooperative) beside the sweep's S=16 rows (plain = the old
# heuristic), two rounds.
# (2) gpu_router_test. (3) With FULL=1, the full router_bench table (JSON), as far as the
# call's time allows. Bundle: .gpu with router_bench, gpu_router_test
# and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
OUTDIR=${1:-.}
F='deepseek_v3 t=33$,deepseek_v3 t=40$,deepseek_v3 t=48$,deepseek_v3 t=56$,deepseek_v3 t=64$,kimi_k2 t=40$'
for round in 1 2; do
  s=$SECONDS
  echo "== staged launch, round $round"
  timeout 100 ./router_bench --pdl_timeline --sweep_splits 16 --filter "$F" 2>&1 | grep -E "^(shape|[a-z0-9_]+ t=)|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
s=$SECONDS
timeout 150 ./gpu_router_test 2>&1 | grep -E "FAILED|PASSED|tests from.*ran" | tail -8
echo "rc=${PIPESTATUS[0]} tests took $((SECONDS - s)) s"
s=$SECONDS
[ "${FULL:-0}" = 1 ] && timeout $((400 - SECONDS)) ./router_bench --json "$OUTDIR/router_bench.json" > "$OUTDIR/router_bench.txt" 2>&1
echo "rc=$? router_bench took $((SECONDS - s)) s"
echo "done at $SECONDS s"
