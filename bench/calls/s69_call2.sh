#!/usr/bin/env bash
# Session 69, call 2, the code as landed (launch attributes in one place; the epilogue
# kernels' early trigger of call 1 reverted; the heuristic's rank-0 clusters past 128 tokens
# for routers of up to 64 experts):
# - the whole gpu_router_test (its family tests route 256 tokens by the heuristic's config);
# - server_test on the CUDA backend (the completion stamp's launch now through
#   LaunchAttributes);
# - --pdl_timeline --candidates past 128 tokens for the routers of up to 64 experts: the
#   heuristic's configs against the tuner's fastest.
# Bundle (a tarball: the gRPC libraries): rb_C, grt_C, server_test, moe-router-server,
# device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_C gpu_router_test
gpu_tests grt_C 220
server_tests 120
s=$SECONDS
echo "== C: --pdl_timeline --candidates past 128 tokens, routers of up to 64 experts"
rows='mixtral t=144$,mixtral t=256$,gpt_oss_20b t=200$,gpt_oss_20b t=256$'
rows+=',llama4_scout t=160$,llama4_scout t=256$,deepseek_v2_lite t=144$,deepseek_v2_lite t=256$'
timeout "$(($(seconds_left) - 5))" ./rb_C --pdl_timeline --candidates --filter "$rows" \
  >"$OUT/timeline_C.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^[a-z0-9_]+ +t=.*(tuned|heur)|tuner" "$OUT/timeline_C.txt" | cut -c1-150
echo "done at $SECONDS s"
