# shellcheck shell=bash
# Steps shared by the per-call device scripts (bench/sNN_call*.sh), which stay as the record
# of what each device call ran. Sourced by a script that device-bundle copied into .gpu/
# together with this file:
#   source "$(dirname "$0")/device_steps.sh" && device_start
# Functions print "== what", the command's exit code and seconds, and the lines that matter;
# full outputs go to $OUT (the device tool brings them back). Calls stop 15 s before the
# tool's 600 s limit, or at DEVICE_LIMIT_S seconds where a call runs under a shorter one.

# cd to the bundle, the bundled libraries on the path, the GPU named first in the log.
device_start() {
  cd "$(dirname "${BASH_SOURCE[1]}")" || exit 1
  # shellcheck disable=SC1091
  source ./env.sh
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader
}

# Seconds left before the tool's limit (or DEVICE_LIMIT_S), less a margin.
seconds_left() { echo $((${DEVICE_LIMIT_S:-585} - SECONDS)); }

# gpu_tests NAME TIMEOUT [GTEST_FILTER]: gpu_router_test into $OUT/NAME.txt, its summary.
gpu_tests() {
  local s=$SECONDS
  echo "== gpu_router_test ($1${3:+: $3})"
  timeout "$2" ./gpu_router_test ${3:+--gtest_filter="$3"} >"$OUT/$1.txt" 2>&1
  echo "rc=$? took $((SECONDS - s)) s"
  grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/$1.txt" | head -20
}

# server_tests TIMEOUT: server_test on the CUDA backend (the bundle's moe-router-server) into
# $OUT/server_test.txt, its summary.
server_tests() {
  local s=$SECONDS
  echo "== server_test, CUDA backend"
  MOE_TEST_BACKEND=cuda MOE_SERVER_BINARY=$PWD/moe-router-server \
    timeout "$1" ./server_test >"$OUT/server_test.txt" 2>&1
  echo "rc=$? took $((SECONDS - s)) s"
  grep -E "^\[  (PASSED|FAILED)|tests from .* ran|FAILED|Failure" "$OUT/server_test.txt" | head -20
}

# bench_rows LABEL TIMEOUT BINARY ARGS...: a router_bench run's table rows (and errors).
bench_rows() {
  local label=$1 limit=$2 s=$SECONDS
  shift 2
  echo "== $label"
  timeout "$limit" "$@" 2>&1 | grep -E "^(gemm|[a-z0-9_]+ t=)|rror"
  echo "rc=${PIPESTATUS[0]} took $((SECONDS - s)) s"
}

# sanitize GTEST_FILTER TOOL...: compute-sanitizer's tools one after another on the filtered
# tests while time is left, each into $OUT/TOOL.txt.
sanitize() {
  local filter=$1 cs tool left s
  shift
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in "$@"; do
    left=$(seconds_left)
    [ "$left" -lt 60 ] && { echo "== $tool: no time left"; continue; }
    s=$SECONDS
    echo "== $tool ($filter)"
    timeout "$left" "$cs" --tool "$tool" ./gpu_router_test --gtest_filter="$filter" \
      >"$OUT/$tool.txt" 2>&1
    echo "rc=$? took $((SECONDS - s)) s"
    grep -E "PASSED|FAILED|SUMMARY" "$OUT/$tool.txt" | head -5
  done
}
