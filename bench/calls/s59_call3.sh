#!/usr/bin/env bash
# Session 59, device call 3 (host side only; the GPU serves the router): (1) a throwaway
# probe (bench/calls/s59_copy_probe.cc, built static by hand as copy_bench) of the 16-token parse
# copy: 229 KB from a source another core has just written, with streaming stores, alone
# against split with a spinning helper core, for a few core placements; (2)
# bench/one_caller_ab.sh at one caller, 16 tokens, stream and unary, 7 rounds each (the
# session 58 rows were the median of 3 with a spread of +12..+133 us). Bundle: .gpu with
# copy_bench, moe-router-server, moe-router-bench, echo_server, one_caller_ab.sh,
# device_steps.sh and this script. As run, (2) failed: device-bundle stopped at the static
# copy_bench ("not a dynamic executable") before writing env.sh, so the servers found no
# libraries (call 4 ran it).
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
lscpu | grep -E "Model name|^CPU\(s\)|NUMA node|L3"
echo "== copy probe"
for cores in "1 2 3" "1 2 9" "2 1 3" "5 9 13"; do
  # shellcheck disable=SC2086
  timeout 60 ./copy_bench $cores 2000
done
for mode in stream unary; do
  s=$SECONDS
  echo "== one caller, 16 tokens, $mode"
  TOKENS=16 MODE=$mode ROUNDS=7 SECS=2 timeout 200 bash ./one_caller_ab.sh . "$OUT/oc_$mode" "" \
    | tee "$OUT/one_caller_16_$mode.md"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
done
echo "done at $SECONDS s"
