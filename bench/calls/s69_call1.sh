#!/usr/bin/env bash
# Session 69, call 1:
# - B's whole gpu_router_test: launch attributes set in one place (launch_attributes.h) for
#   every launcher, and the routing-epilogue kernels let the next launch in at their start
#   (griddepcontrol.launch_dependents; they had never triggered it);
# - A (the refactor alone) against B, two rounds, router_bench --candidates at 128 / 256
#   tokens for the routers the two-launch path serves: the tile GEMM + epilogue candidates'
#   PDL column is where the trigger shows (the next tile GEMM streams its weights while
#   the epilogue runs); cuBLASLt + epilogue is the control (cuBLASLt's launch is not PDL);
# - the routers of up to 64 experts at 256 tokens with their candidates (never measured
#   against anything but their own tuner, session 68);
# - ncu's DRAM bytes for one staged launch at DeepSeek-V3 t=128 (below).
# Bundle: rb_A, rb_B, grt_B, device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
ln -sf grt_B gpu_router_test
gpu_tests grt_B 240
for r in 1 2; do
  for v in A B; do
    s=$SECONDS
    echo "== router_bench $v round $r, 128 / 256 tokens, candidates"
    timeout "$(($(seconds_left) - 60))" ./rb_$v --tokens 128,256 \
      --filter "deepseek_v3 t=,kimi_k2 t=,glm4_moe t=" --candidates >"$OUT/rb_$v$r.txt" 2>&1
    echo "rc=$? took $((SECONDS - s)) s"
    grep -E "rror|^[a-z0-9_]+ t=|^  [a-z]|epilogue kernel" "$OUT/rb_$v$r.txt" | cut -c1-150
  done
done
# Where the staged tile's stream comes from: DeepSeek-V3 t=128 (2 token chunks x 4 expert
# tiles a split) reads each weight twice and each hidden state four times, 14.7 MB into the
# SMs for 5.5 MB of operands. DRAM bytes near 5.5 MB: the re-reads hit L2; near 14.7: they
# miss. ncu flushes L2 before the kernel (cold, as the rotated weights are in service).
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /usr/local/cuda/nsight-compute*/ncu \
  /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
left=$(seconds_left)
if [ -n "$ncu" ] && [ "$left" -gt 150 ]; then
  s=$SECONDS
  echo "== ncu, the first staged launch of DeepSeek-V3 t=128"
  timeout "$((left - 90))" "$ncu" -k regex:DecomposeKStagedKernel -c 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section LaunchStats \
    --metrics dram__bytes_read.sum,lts__t_sector_op_read_hit_rate.pct,lts__t_bytes.sum \
    ./rb_B --tokens 128 --filter "deepseek_v3 t=" >"$OUT/ncu_staged.txt" 2>&1
  echo "rc=$? took $((SECONDS - s)) s"
  grep -E "dram__bytes_read|lts__t_sector_op|lts__t_bytes|Grid Size|Duration|DRAM Through|L2 Hit|Memory Through|==ERR|==WARN" \
    "$OUT/ncu_staged.txt" | head -20
else
  echo "== ncu: ${ncu:-not found}, $left s left"
fi
s=$SECONDS
echo "== router_bench B, routers of up to 64 experts at 256 tokens, candidates"
timeout "$(($(seconds_left) - 5))" ./rb_B --tokens 256 \
  --filter "mixtral t=,gpt_oss_20b t=,llama4_scout t=,deepseek_v2_lite t=" --candidates \
  --json "$OUT/rb_small.json" >"$OUT/rb_small.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "rror|^[a-z0-9_]+ t=" "$OUT/rb_small.txt" | cut -c1-200
echo "done at $SECONDS s"
