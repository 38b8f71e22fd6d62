#!/usr/bin/env bash
# Session 54, device call 3: the heuristic's 64 x 128 tiles for the large-K 128 x 128 GEMMs
# (ChooseGemmTileM). (1) gpu_router_test, all of it; (2) the GEMM rows with each tile forced
# (one round: on an H200 too, whose HBM is faster, so per-SM intake may bind instead);
# (3) the full router_bench table (JSON).
# Bundle: .gpu with router_bench, gpu_router_test and this script; carry [".gpu"].
set -u
cd "$(dirname "$0")" || exit 1
source ./env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
OUTDIR=${1:-.}
s=$SECONDS
timeout 200 ./gpu_router_test 2>&1 | grep -E "FAILED|PASSED|Failure|tests from.*ran|Expected|Which" | tail -30
echo "rc=${PIPESTATUS[0]} tests took $((SECONDS - s)) s"
for tile in 128 64x128 64; do
  s=$SECONDS
  echo "== tile $tile"
  timeout 100 ./router_bench --filter "gemm 128x128,gemm 64x64x131072" --gemm_tile $tile 2>&1 | grep -E "^gemm|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
s=$SECONDS
timeout 250 ./router_bench --json "$OUTDIR/router_bench.json" > "$OUTDIR/router_bench.txt" 2>&1
echo "rc=$? router_bench took $((SECONDS - s)) s"
grep -E "^gemm" "$OUTDIR/router_bench.txt"
echo "done at $SECONDS s"
