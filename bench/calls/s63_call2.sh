#!/usr/bin/env bash
# Session 63, call 2: call 1's restructure (C) and tree (D) lost; now the smaller cuts on
# warp 0's chain in the one-token grouped epilogue. B: lane / top_k by a host-computed
# reciprocal (session 62's patch, landed as e9baab3). E: B + group scores ranked on OrderedKeys
# by MinusOneIfAbove (no float compare and select per group) + the kept-column search
# summed as a tree. gpu_router_test of E (B's own test binary would not fit the carry),
# epilogue_probe A / B / E, router_ab.sh A B E on the rows whose epilogue changed.
# Bundle: .gpu with rb_A rb_B rb_E grt_E probe_A probe_B probe_E, device_steps.sh,
# router_ab.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_E gpu_router_test
gpu_tests gpu_router_test_E 150
for v in A B E; do
  echo "== epilogue_probe $v"
  timeout 40 "./probe_$v" >"$OUT/probe_$v.txt" 2>&1
  echo "rc=$?"
  grep -A8 "^CtaRouteToken" "$OUT/probe_$v.txt" | grep -E "^(deepseek_v3|qwen3_30b|kimi_k2) "
done
s=$SECONDS
echo "== A/B/E (router_ab.sh, ROUNDS=2)"
rows='deepseek_v3 t=1$,deepseek_v3 t=16$,kimi_k2 t=1$,qwen3_30b t=1$,mixtral t=1$'
ROUNDS=2 timeout "$(seconds_left)" ./router_ab.sh ./rb_A ./rb_B ./rb_E "$OUT/ab" --quick \
  --filter "$rows" | tee "$OUT/ab.txt"
echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
rm -rf "$OUT/ab"
echo "done at $SECONDS s"
