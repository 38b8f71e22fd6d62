#!/usr/bin/env bash
# Session 57, device call 6 (not run: the session's device time ran out; for a later
# session): the few-row tiles' PDL hand-off, three builds (static router_bench each): A
# 87670e6's (the next launch let in after the mainloop, all its early stages of B before
# the wait); B the next launch let in only after C is written
# (s57_few_rows_late_trigger.patch); C only 4 early stages of B
# (s57_few_rows_four_early_stages.patch) (call 5's timeline: under PDL the split barrier passed 2.05 us
# after the last partial, 0.77 without, while the next launch's CTAs pulled 4 MB of B).
# Two rounds. Bundle: .gpu with rb_A, rb_B, rb_C and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
nvidia-smi --query-gpu=name --format=csv,noheader
shapes="16x16x8192,16x16x131072,32x32x131072,1x8x8192,24x24x131072"
for round in 1 2; do
  for v in A B C; do
    echo "== $v round $round"
    timeout 40 ./rb_$v --filter gemm --gemm_shapes "$shapes" 2>&1 | grep -E "^gemm|rror"
  done
done
echo "done at $SECONDS s"
