#!/usr/bin/env bash
# Written in session 58 for the next device time (not run): (1) gpu_router_test at the
# latest commit (session 58 added a 32-tile and a 64-tile of 4-stage splits to
# GpuGemm.PdlLaunchesGiveThePlainLaunchBits, never run on a GPU); (2) the few-row and
# 64-tile timelines under PDL at 3b6598f, against session 57's call 5
# (h100_s57_call5_timeline.txt), to see why 4 early stages of B beat 16 at 32-tiles while
# 16 beat 4 at 16-tiles (bench/NOTES.md session 58); (3) on an H200 (which has not run the
# few-row tiles, nor session 58's early-stage rules), the M = N GEMM table and the few-row
# edges. Bundle: .gpu with router_bench, gpu_router_test (libmoe_kernels.so in lib/),
# device_steps.sh and this script; carry [".gpu"].
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
gpu_tests gpu_router_test 170
s=$SECONDS
echo "== timelines"
timeout 120 ./router_bench --gemm_timeline \
  --filter "gemm 16x16x131072,gemm 32x32x131072,gemm 64x64x131072" 2>&1 | tail -10
echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
case "$(nvidia-smi --query-gpu=name --format=csv,noheader)" in
  *H200*)
    bench_rows "GEMM table (H200)" 150 ./router_bench --filter gemm
    bench_rows "few-row edges (H200)" 100 ./router_bench --filter gemm --gemm_shapes \
      "1x8x8192,8x8x65536,24x24x131072,9x100x131072,32x256x65536,16x64x65536,64x256x65536"
    ;;
esac
sanitize GpuGemm.PdlLaunchesGiveThePlainLaunchBits memcheck racecheck
echo "done at $SECONDS s"
