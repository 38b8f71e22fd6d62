#!/usr/bin/env bash
# Session 48, device call 1: which fix of the 16-token mainloop wins (bench/NOTES.md
# session 48). Five router_bench builds of one tree, made in one session:
#   rb_base  HEAD's kernels (e004ed4)
#   rb_d     + bench/s47_two_tile_pass_of_two.patch (a pass of 2 K steps at two token tiles)
#   rb_e     + bench/s47_two_tile_uncapped.patch    (two-tile polled instances, no 128 cap)
#   rb_j     + bench/s48_two_tile_prefetch.patch    (the pass's hidden states prefetched to L1)
#   rb_m     + bench/s48_two_tile_staged_tokens.patch (the pass's hidden states via cp.async)
# each `git worktree add`, `git apply`, `cmake --preset hopper`, `ninja -C build/gpu
# router_bench`, copied as rb_X and stripped; then
#   ../shared/tools/device-bundle .gpu rb_base rb_m rb_j rb_e rb_d bench/router_ab.sh bench/s48_call1.sh
# (~38 MB) and the device call, carry [".gpu"]: bash .gpu/s48_call1.sh
# Then bench/s48_call2.sh with the winner's gpu_router_test.
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
F='deepseek_v3 t=1$,deepseek_v3 t=16$,deepseek_v3 t=64$,qwen3_30b t=1$,qwen3_30b t=16$,qwen3_235b t=16$,gpt_oss_120b t=16$,llama4_maverick t=16$,kimi_k2 t=16$,mixtral t=16$'
s=$SECONDS
echo "== A/M/J/E/D (router_ab.sh, ROUNDS=2)"
ROUNDS=2 timeout 430 bash ./router_ab.sh ./rb_base ./rb_m ./rb_j ./rb_e ./rb_d "$OUT/amjed" \
  --filter "$F"
echo "rc=$? A/M/J/E/D took $((SECONDS - s)) s"
T='qwen3_30b t=16$,gpt_oss_120b t=16$,deepseek_v3 t=16$'
for v in base m j e d; do
  [ $((570 - SECONDS)) -gt 30 ] || break
  echo "== timeline $v"
  timeout 28 ./rb_$v --pdl_timeline --filter "$T" 2>&1 | grep -E "^(shape|qwen|gpt|deepseek)"
done
echo "done at $SECONDS s"
