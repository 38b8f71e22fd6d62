#!/usr/bin/env bash
# One-caller latency, A/B: the echo server and moe-router-server variants side by side,
# measured in turns (ROUNDS times) so drift on the host hits them all alike.
#   one_caller_ab.sh BIN_DIR OUT_DIR "FLAGS_A" "FLAGS_B" ... (env: TOKENS, MODE, SECS, ROUNDS,
#   and CALLERS: concurrent callers, default 1)
# A FLAGS argument starting with "echo" is another echo server variant with the flags that
# follow (e.g. "echo --handoff"); any other is a moe-router-server variant. Leading NAME=VALUE
# words are put in that server's environment (e.g. "GLIBC_TUNABLES=... --flag"), except
# SERVER_BIN=PATH, which runs that moe-router-server binary instead (an older build).
# Columns "in" and "out": the transport's way in and way out (moe-router-bench
# --same_host_timing, from each server's arrival stamp), which add up with the server's time
# to about the p50.
set -euo pipefail
bin=$1 out=$2; shift 2
tokens=${TOKENS:-1} mode=${MODE:-unary} secs=${SECS:-2} rounds=${ROUNDS:-3} callers=${CALLERS:-1}
mkdir -p "$out"
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
"$bin/echo_server" --address=127.0.0.1:50300 --hidden=7168 --top_k=8 >"$out/echo.log" 2>&1 &
pids+=($!)
ports=(50300) labels=(echo)
i=1
for label in "$@"; do
  port=$((50300 + i))
  envs=() flags=$label server_bin=$bin/moe-router-server
  while [[ $flags =~ ^([A-Za-z_][A-Za-z0-9_]*=[^ ]*)\ *(.*)$ ]]; do
    if [[ ${BASH_REMATCH[1]} == SERVER_BIN=* ]]; then
      server_bin=${BASH_REMATCH[1]#SERVER_BIN=}
    else
      envs+=("${BASH_REMATCH[1]}")
    fi
    flags=${BASH_REMATCH[2]}
  done
  if [[ $flags == echo* ]]; then
    env "${envs[@]}" "$bin/echo_server" --address=127.0.0.1:$port --hidden=7168 --top_k=8 \
      ${flags#echo} >"$out/server_$i.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do grep -q "listening" "$out/server_$i.log" && break; sleep 0.1; done
    ports+=($port) labels+=("$label")
  else
    env "${envs[@]}" "$server_bin" --model=demo-deepseek-v3 --address=127.0.0.1:$port \
      --metrics_address= $flags >"$out/server_$i.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 1200); do grep -q "serving gRPC" "$out/server_$i.log" && break; sleep 0.1; done
    ports+=($port) labels+=("server $label")
  fi
  i=$((i + 1))
done
echo "| round | target | p50 us | p90 us | server p50 us | queue p50 us | compute p50 us | in p50 us | out p50 us | req/s |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for r in $(seq 1 "$rounds"); do
  for j in "${!ports[@]}"; do
    args=(--address=127.0.0.1:${ports[$j]} --model=demo-deepseek-v3 --layers=58 --concurrency=$callers
          --tokens=$tokens --duration_s=$secs --warmup_s=0.5 --progress=false --same_host_timing
          --json="$out/run.json")
    [ "$mode" = stream ] && args+=(--stream)
    "$bin/moe-router-bench" "${args[@]}" >/dev/null
    python3 -c "import json,sys; r=json.load(open('$out/run.json')); print(f\"| $r | ${labels[$j]} | {r['p50_us']:.0f} | {r['p90_us']:.0f} | {r['server_p50_us']:.0f} | {r.get('queue_p50_us', 0):.0f} | {r['compute_p50_us']:.0f} | {r.get('way_in_p50_us', 0):.0f} | {r.get('way_out_p50_us', 0):.0f} | {r['qps']:.0f} |\")"
  done
done
