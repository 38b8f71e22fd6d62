#!/usr/bin/env bash
# Session 62, call 4: where the one-token CTA epilogue's cycles go now (DeepSeek-V3 and
# Qwen3-30B, the two decode targets still missed at one token). epilogue_probe's cold/warm
# cycles and sub-phases, then ncu's source counters on a warm loop of each family's
# CtaRouteToken (session 19's method: `--set full`, the SASS source page as CSV). Since
# session 19 DeepSeek-V3 takes GroupColumnRankedRouteToken (session 37) and Qwen3
# ColumnRankedRouteToken: nobody has profiled either. Bundle: .gpu with epilogue_probe,
# device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
echo "== epilogue_probe"
timeout 60 ./epilogue_probe | tee "$OUT/epilogue_probe.txt"
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /usr/local/cuda/nsight-compute*/ncu \
  /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "== ncu: ${ncu:-not found}"
[ -n "$ncu" ] || exit 0
for family in deepseek_v3 qwen3_30b; do
  left=$(seconds_left)
  [ "$left" -lt 30 ] && { echo "== $family: no time left"; continue; }
  s=$SECONDS
  echo "== ncu $family"
  timeout "$left" "$ncu" --set full -k regex:ProbeCta -c 1 -f -o "$OUT/ncu_$family" \
    ./epilogue_probe --ncu "$family" >"$OUT/ncu_$family.log" 2>&1
  echo "rc=$? took $((SECONDS - s)) s"
  tail -3 "$OUT/ncu_$family.log"
  "$ncu" -i "$OUT/ncu_$family.ncu-rep" --page source --csv --print-source sass \
    >"$OUT/src_$family.csv" 2>&1
  "$ncu" -i "$OUT/ncu_$family.ncu-rep" --page details >"$OUT/details_$family.txt" 2>&1
  wc -l "$OUT/src_$family.csv"
  grep -E "Duration|Elapsed Cycles|Warp Cycles Per Issued|Issued Ipc" "$OUT/details_$family.txt" | head -6
done
echo "done at $SECONDS s"
