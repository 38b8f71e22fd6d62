#!/usr/bin/env bash
# The service benchmark: moe-router-server (DeepSeek-V3 demo) and, side by side, the
# bare gRPC echo server taking the same payload (the transport's ceiling), both loaded
# by moe-router-bench on the same host: 1, 8, 64, 256 callers, unary and streaming, 1 and
# 16 tokens per request; then the CPU backend for comparison.
#   service_bench.sh BIN_DIR OUT_DIR [SECONDS] [BACKEND (default cuda)]
# BIN_DIR holds moe-router-server, moe-router-bench and echo_server. Prints a markdown
# table; writes every run as a JSON line to OUT_DIR/service_bench.jsonl.
# PORT_BASE=N moves the ports (default 50150). A subset:
# CALLERS="1 8" MODES=unary TOKENS=1 CPU=0 SERVER_FLAGS=--cuda_graphs=false ECHO_FLAGS=--busy_us=25 service_bench.sh ...
# Before any row, both servers take a 1 s burst of 64 callers at 16 tokens (not recorded),
# so that no row pays for connections, threads or first-use paths. (A freshly started echo
# server used to answer 16-token calls 2-5x slower until its first burst: glibc's malloc
# handed freed request buffers back to the kernel, ~28 page faults a request. Both servers
# now fix the thresholds at start-up, server/heap_tuning.cc.) Rows of one caller are
# measured ONE_CALLER_ROUNDS times (default 3), echo and routed in turns; the table shows
# the round with the median routed - echo gap (the JSON lines keep every round), because
# one 2 s sample of one caller moves by tens of us from run to run on a shared host.
set -euo pipefail
bin=$1 out=$2 secs=${3:-3} backend=${4:-cuda}
base=${PORT_BASE:-50150}  # ports base+1 (server), base+2 (echo), base+3 (CPU server)
routed_port=$((base + 1)) echo_port=$((base + 2)) cpu_port=$((base + 3))
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

measure() {  # label port callers stream tokens seconds json_out
  local args=(--address=127.0.0.1:$2 --model=demo-deepseek-v3 --layers=58 --concurrency=$3
              --tokens=$5 --duration_s=$6 --warmup_s=1 --progress=false --same_host_timing
              --json="$7")
  [ "$4" = stream ] && args+=(--stream)
  "$bin/moe-router-bench" "${args[@]}" >/dev/null
}

row() {  # label callers stream tokens json
  /usr/bin/env python3 - "$5" "$1" "$2" "$3" "$4" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
errs = sum(r["errors"].values())
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {sys.argv[5]} | {r['qps']:.0f} | "
      f"{r['tokens_per_s']:.0f} | {r['p50_us']:.0f} | {r['p90_us']:.0f} | {r['p99_us']:.0f} | "
      f"{r['p999_us']:.0f} | {r.get('server_p50_us', 0):.0f} | {r.get('compute_p50_us', 0):.0f} | {errs} |")
PY
}

record() {  # label round json: appends the run to the JSON lines, tagged
  sed "s/^{/{\"target\": \"$1\", \"round\": $2, /" "$3" >>"$jsonl"
}

run() {  # label port callers stream tokens: one measurement, recorded and printed
  measure "$1" "$2" "$3" "$4" "$5" "$secs" "$out/run.json"
  record "$1" 1 "$out/run.json"
  row "$1" "$3" "$4" "$5" "$out/run.json"
}

# One caller: echo and routed in turns, ONE_CALLER_ROUNDS times; prints the pair of the
# round whose routed - echo p50 gap is the median.
one_caller() {  # backend port mode tokens
  local rounds=${ONE_CALLER_ROUNDS:-3}
  for r in $(seq 1 "$rounds"); do
    measure echo $echo_port 1 "$3" "$4" "$secs" "$out/echo_$r.json"
    measure "$1" "$2" 1 "$3" "$4" "$secs" "$out/routed_$r.json"
    record echo "$r" "$out/echo_$r.json"
    record "$1" "$r" "$out/routed_$r.json"
  done
  local median
  median=$(/usr/bin/env python3 - "$out" "$rounds" <<'PY'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
gap = lambda r: (json.load(open(f"{out}/routed_{r}.json"))["p50_us"]
                 - json.load(open(f"{out}/echo_{r}.json"))["p50_us"])
order = sorted(range(1, n + 1), key=gap)
print(order[(n - 1) // 2])
PY
)
  row echo 1 "$3" "$4" "$out/echo_$median.json"
  row "$1" 1 "$3" "$4" "$out/routed_$median.json"
}

"$bin/echo_server" --address=127.0.0.1:$echo_port --model=demo-deepseek-v3 --hidden=7168 --top_k=8 \
  ${ECHO_FLAGS:-} >"$out/echo.log" 2>&1 &
pids+=($!)
start_server "$backend" $routed_port
measure echo $echo_port 64 unary 16 1 "$out/burst.json"  # warm both (see the top)
measure "$backend" $routed_port 64 unary 16 1 "$out/burst.json"
echo "| target | callers | mode | tokens | req/s | tokens/s | p50 us | p90 us | p99 us | p99.9 us | server p50 us | compute p50 us | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for tokens in ${TOKENS:-1 16}; do
  for mode in ${MODES:-unary stream}; do
    for callers in ${CALLERS:-1 8 64 256}; do
      if [ "$callers" = 1 ]; then
        one_caller "$backend" $routed_port $mode $tokens
        continue
      fi
      run echo $echo_port $callers $mode $tokens
      run "$backend" $routed_port $callers $mode $tokens
    done
  done
done
[ "${CPU:-1}" = 0 ] && exit 0
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
start_server cpu $cpu_port
measure cpu $cpu_port 64 unary 16 1 "$out/burst.json"
for callers in 1 64; do run cpu $cpu_port $callers unary 1; done
