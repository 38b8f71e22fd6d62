#!/usr/bin/env bash
# The service benchmark: moe-router-server (DeepSeek-V3 demo) and, side by side, the
# bare gRPC echo server taking the same payload (the transport's ceiling), both loaded
# by moe-router-bench on the same host: 1, 8, 64, 256 callers, unary and streaming, 1 and
# 16 tokens per request; then the CPU backend for comparison.
#   service_bench.sh BIN_DIR OUT_DIR [SECONDS] [BACKEND (default cuda)]
# BIN_DIR holds moe-router-server, moe-router-bench and echo_server. Prints a markdown
# table; writes every run as a JSON line to OUT_DIR/service_bench.jsonl. A subset:
# CALLERS="1 8" MODES=unary TOKENS=1 CPU=0 SERVER_FLAGS=--cuda_graphs=false ECHO_FLAGS=--busy_us=25 service_bench.sh ...
set -euo pipefail
bin=$1 out=$2 secs=${3:-3} backend=${4:-cuda}
mkdir -p "$out"
jsonl=$out/service_bench.jsonl
: >"$jsonl"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

start_server() {  # backend port
  "$bin/moe-router-server" --model=demo-deepseek-v3 --backend="$1" --address=127.0.0.1:$2 \
    --metrics_address= --max_queued_requests=100000 ${SERVER_FLAGS:-} >"$out/server_$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 1200); do grep -q "serving gRPC" "$out/server_$1.log" && return 0; sleep 0.1; done
  echo "server ($1) did not start"; cat "$out/server_$1.log"; exit 1
}

run() {  # label port callers stream tokens
  local args=(--address=127.0.0.1:$2 --model=demo-deepseek-v3 --layers=58 --concurrency=$3
              --tokens=$5 --duration_s=$secs --warmup_s=1 --progress=false --json="$out/run.json")
  [ "$4" = stream ] && args+=(--stream)
  "$bin/moe-router-bench" "${args[@]}" >/dev/null
  sed "s/^{/{\"target\": \"$1\", /" "$out/run.json" >>"$jsonl"
  /usr/bin/env python3 - "$out/run.json" "$1" "$3" "$4" "$5" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
errs = sum(r["errors"].values())
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {sys.argv[5]} | {r['qps']:.0f} | "
      f"{r['tokens_per_s']:.0f} | {r['p50_us']:.0f} | {r['p90_us']:.0f} | {r['p99_us']:.0f} | "
      f"{r['p999_us']:.0f} | {r.get('server_p50_us', 0):.0f} | {r.get('compute_p50_us', 0):.0f} | {errs} |")
PY
}

"$bin/echo_server" --address=127.0.0.1:50152 --model=demo-deepseek-v3 --hidden=7168 --top_k=8 \
  ${ECHO_FLAGS:-} >"$out/echo.log" 2>&1 &
pids+=($!)
start_server "$backend" 50151
echo "| target | callers | mode | tokens | req/s | tokens/s | p50 us | p90 us | p99 us | p99.9 us | server p50 us | compute p50 us | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for tokens in ${TOKENS:-1 16}; do
  for mode in ${MODES:-unary stream}; do
    for callers in ${CALLERS:-1 8 64 256}; do
      run echo 50152 $callers $mode $tokens
      run "$backend" 50151 $callers $mode $tokens
    done
  done
done
[ "${CPU:-1}" = 0 ] && exit 0
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
start_server cpu 50153
for callers in 1 64; do run cpu 50153 $callers unary 1; done
