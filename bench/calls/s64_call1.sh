#!/usr/bin/env bash
# Session 64, call 1: where the 16-token rows' time goes now, and the staged 64 x 64 tiles as
# an autotuner candidate from 9 tokens (B; A = HEAD 4200b3b, which offers them from 32), and
# with dedicated router CTAs that run the epilogue's dry run (C = B + those, candidates
# wherever the grid fits: 9-64 tokens). C's staged tests and the PDL test first, then C's
# --pdl_timeline --candidates on the 16-token rows (the fastest candidate of each kernel
# beside the tuned one, with phases), then router_ab.sh A B C on the 16- and 64-token rows
# of the routers of 128+ experts, then, on an H200 only, the few-row GEMM tiles' tests
# (never run on one). Bundle: .gpu with rb_A rb_B rb_C grt_C, device_steps.sh, router_ab.sh
# and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader)
ln -sf grt_C gpu_router_test
gpu_tests staged_C 150 'GpuStaged.*:GpuFused.PdlWaitsForTheKernelThatWritesTheHiddenStates'
s=$SECONDS
echo "== C: --pdl_timeline --candidates, 16-token rows"
rows='deepseek_v3 t=16$,qwen3_30b t=16$,gpt_oss_120b t=16$'
timeout 150 ./rb_C --pdl_timeline --candidates --filter "$rows" >"$OUT/timeline_C.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^(deepseek_v3|qwen3_30b|gpt_oss_120b|kimi_k2) t=|tuner" "$OUT/timeline_C.txt" | cut -c1-230
s=$SECONDS
echo "== A/B/C (router_ab.sh, ROUNDS=2)"
rows='deepseek_v3 t=16$,kimi_k2 t=16$,qwen3_235b t=16$,qwen3_30b t=16$,gpt_oss_120b t=16$'
rows+=',deepseek_v3 t=64$,qwen3_30b t=1$'
ROUNDS=2 timeout "$(($(seconds_left) - 60))" ./router_ab.sh ./rb_A ./rb_B ./rb_C /tmp/ab --quick \
  --filter "$rows" | tee "$OUT/ab.txt"
echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
if [[ $gpu == *H200* ]]; then gpu_tests gemm "$(($(seconds_left) - 5))" 'GpuGemm.*'; fi
echo "done at $SECONDS s"
