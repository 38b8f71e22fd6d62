#!/usr/bin/env bash
# Session 58, device call 3: (1) gpu_router_test at d7c3edd (32-tiles' 4 early stages of B
# under PDL; call 2 timed the same code as rb_D); (2) the service benchmark at d7c3edd
# (bench/service_bench.sh, 2 s rows; the last one ran on an H200 in session 26);
# (3) compute-sanitizer memcheck / racecheck on the forced-tile GEMM test while time is left.
# Bundle: .gpu with gpu_router_test (libmoe_kernels.so in lib/), moe-router-server,
# moe-router-bench, echo_server, service_bench.sh and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
s=$SECONDS
echo "== gpu_router_test (all)"
timeout 150 ./gpu_router_test > "$OUT/gpu_router_test.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/gpu_router_test.txt" | head -20
s=$SECONDS
echo "== service bench"
timeout 330 bash ./service_bench.sh . "$OUT/service" 2 > "$OUT/service_bench.md" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
cat "$OUT/service_bench.md"
cp "$OUT/service/service_bench.jsonl" "$OUT/" 2>/dev/null
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for tool in memcheck racecheck; do
  left=$((585 - SECONDS))
  [ $left -lt 60 ] && { echo "== $tool: no time left"; continue; }
  s=$SECONDS
  echo "== $tool (GpuGemm.EveryStagedTileMatchesTheReference)"
  timeout $left "$CS" --tool $tool ./gpu_router_test \
    --gtest_filter=GpuGemm.EveryStagedTileMatchesTheReference > "$OUT/$tool.txt" 2>&1
  echo "rc=$? took $((SECONDS - s)) s"
  grep -E "PASSED|FAILED|SUMMARY" "$OUT/$tool.txt" | head -5
done
echo "done at $SECONDS s"
