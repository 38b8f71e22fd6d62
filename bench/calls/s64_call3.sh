#!/usr/bin/env bash
# Session 64, call 3: the staged routers let the next launch in only after their gather (D:
# griddepcontrol.launch_dependents after GatherChunkLogits, not at kernel entry; tile CTAs
# that do not route let it in by exiting). Call 2's timelines put 1.3-2.3 us between the last
# publish and the last router's arrival at 64 tokens, while the next launch's CTAs (on the
# SMs the 64-CTA grid leaves free) stream their weights. router_ab.sh A D (A = HEAD 4200b3b)
# on the staged rows, then D's --pdl_timeline on DeepSeek-V3 and Kimi K2 at 64 tokens. E: the
# staged tensor maps with 256-byte L2 promotion (call 1's 16-token staged candidate took
# ~5 us from its CTAs' start to the last mainloop for 64 KB of weights and 16 KB of hidden
# states, against ~3.3 us for the polled CTAs' 64 KB + 32 KB by 16-byte loads), same rows.
# Bundle: .gpu with rb_A rb_D rb_E grt_D, device_steps.sh, router_ab.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
s=$SECONDS
echo "== A/D/E (router_ab.sh, ROUNDS=2)"
rows='deepseek_v3 t=64$,kimi_k2 t=64$,deepseek_v3 t=128$,kimi_k2 t=128$,glm4_moe t=128$'
rows+=',llama4_maverick t=128$,qwen3_235b t=128$'
ROUNDS=2 timeout 330 ./router_ab.sh ./rb_A ./rb_D ./rb_E /tmp/ab --filter "$rows" |
  tee "$OUT/ab_DE.txt"
echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
s=$SECONDS
echo "== D: --pdl_timeline, 64-token rows"
rows='deepseek_v3 t=64$,kimi_k2 t=64$'
timeout 60 ./rb_D --pdl_timeline --filter "$rows" >"$OUT/timeline_D.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^(deepseek_v3|kimi_k2) t=" "$OUT/timeline_D.txt" | cut -c1-200
echo "done at $SECONDS s"
# On an H200 only: the few-row GEMM tiles' tests (never run on one; D's build, whose GEMM
# kernels are HEAD's).
if [[ $(nvidia-smi --query-gpu=name --format=csv,noheader) == *H200* ]]; then
  ln -sf grt_D gpu_router_test
  gpu_tests gemm "$(($(seconds_left) - 5))" 'GpuGemm.*'
fi
