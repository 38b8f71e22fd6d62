#!/usr/bin/env bash
# Builds moe-router, starts moe-router-server with a built-in demo model (the GPU if one is
# usable, else the CPU backend), routes a small batch with the CLI, prints the chosen
# experts and the metrics URL, then stops the server.
#   scripts/run.sh                 demo-deepseek-v3, 4 tokens
#   MODEL=demo-qwen3-30b TOKENS=8 scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build_dir=${BUILD_DIR:-build/relwithdebinfo}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j "${JOBS:-$(nproc)}" --target moe-router-server moe-router
model=${MODEL:-demo-deepseek-v3}
log=$(mktemp)
ports=$(mktemp)
"$build_dir/server/moe-router-server" --model "$model" --address 127.0.0.1:${PORT:-50051} \
  --metrics_address 127.0.0.1:${METRICS_PORT:-9090} --port_file "$ports" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log" "$ports"' EXIT
for _ in $(seq 1 600); do
  [ -s "$ports" ] && break
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
read -r grpc_port metrics_port <"$ports"
cli="$build_dir/client/moe-router --address 127.0.0.1:$grpc_port"
# The port opens before the model is loaded (health NOT_SERVING meanwhile): wait for SERVING.
for _ in $(seq 1 1200); do
  $cli health >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
cat "$log"
$cli health
$cli models
$cli route "$model" --layer 0 --tokens "${TOKENS:-4}"
echo "metrics: http://127.0.0.1:$metrics_port/metrics"
curl -sf "http://127.0.0.1:$metrics_port/metrics" | grep -E '^moe_router_(requests_total|model_info)' || true
