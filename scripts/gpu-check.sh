#!/usr/bin/env bash
# Runs the GPU side of the project on a machine with an NVIDIA GPU, from a bundle made by
# ../shared/tools/device-bundle (or a build directory): the GPU tests, the epilogue probe,
# the per-launch phase timeline and the kernel benchmark. Full logs go to OUT_DIR.
#   scripts/gpu-check.sh BIN_DIR OUT_DIR [router_bench args...]
# BIN_DIR holds gpu_router_test, epilogue_probe and router_bench (and optionally
# server_test with moe-router-server: the server suite against the CUDA backend).
set -uo pipefail
bin=$1 out=$2
shift 2
mkdir -p "$out"
status=0
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
# Each stage has its own time limit: a kernel that hangs costs one stage, not the run.
echo "== epilogue_probe"
timeout 60 "$bin/epilogue_probe" 2>&1 | tee "$out/epilogue_probe.log"
echo "== gpu_router_test"
timeout "${TEST_TIMEOUT:-300}" "$bin/gpu_router_test" --gtest_brief=1 ${GTEST_FILTER:+--gtest_filter=$GTEST_FILTER} \
  >"$out/gpu_router_test.log" 2>&1 || status=1
grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests ran|Failure|Expected|Which is|seed=" \
  "$out/gpu_router_test.log" | head -40
if [ -x "$bin/server_test" ] && [ -x "$bin/moe-router-server" ]; then
  echo "== server_test against the CUDA backend"
  MOE_TEST_BACKEND=cuda MOE_SERVER_BINARY="$bin/moe-router-server" timeout 180 \
    "$bin/server_test" --gtest_brief=1 >"$out/server_test_cuda.log" 2>&1 || status=1
  grep -E "^\[  (FAILED|PASSED) |Failure" "$out/server_test_cuda.log" | head -20
fi
echo "== router_bench --timeline"
timeout 120 "$bin/router_bench" --timeline 2>&1 | tee "$out/timeline.log" | tail -20
echo "== router_bench --pdl_timeline"
timeout 150 "$bin/router_bench" --pdl_timeline 2>&1 | tee "$out/pdl_timeline.log" | tail -16
echo "== router_bench $*"
timeout "${BENCH_TIMEOUT:-300}" "$bin/router_bench" --json "$out/router_bench.json" "$@" \
  >"$out/router_bench.log" 2>&1 || status=1
tail -45 "$out/router_bench.log"
exit $status
