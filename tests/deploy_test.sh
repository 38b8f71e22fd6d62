#!/usr/bin/env bash
# Deployment files and a real Prometheus: the Prometheus config and alert rules pass
# promtool; Kubernetes, compose and Grafana files parse; every metric the dashboard and
# rules use is exported by the server; then a real Prometheus (Debian package) on
# loopback scrapes a real server under load, and its HTTP API returns the series.
#   deploy_test.sh SOURCE_DIR SERVER_BINARY BENCH_BINARY
set -euo pipefail
src=$1 server=$2 bench=$3
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

promtool check config "$src/deploy/prometheus/prometheus.yml" >/dev/null || fail "promtool check config"
promtool check rules "$src/deploy/prometheus/rules.yml" >/dev/null || fail "promtool check rules"
/usr/bin/python3 - "$src" <<'PY' || fail "deploy files do not parse"
import json, sys, yaml
src = sys.argv[1]
for f in ["k8s/deployment.yaml", "k8s/service.yaml", "k8s/monitoring.yaml", "k8s/hpa.yaml",
          "docker-compose.yml", "grafana/provisioning/datasources/prometheus.yml",
          "grafana/provisioning/dashboards/moe-router.yml"]:
    docs = [d for d in yaml.safe_load_all(open(f"{src}/deploy/{f}")) if d is not None]
    assert docs, f
dash = json.load(open(f"{src}/deploy/grafana/dashboard.json"))
assert len(dash["panels"]) >= 6
PY

port_file=$tmp/ports
"$server" --model=demo-mixtral --demo_layers=2 --backend=cpu --cpu_threads=2 \
  --address=127.0.0.1:0 --metrics_address=127.0.0.1:0 --port_file="$port_file" 2>"$tmp/server.log" &
pids+=($!)
for _ in $(seq 1 600); do [ -s "$port_file" ] && break; sleep 0.05; done
read -r grpc_port metrics_port <"$port_file" || fail "server did not start: $(cat "$tmp/server.log")"
for _ in $(seq 1 600); do grep -q "serving gRPC" "$tmp/server.log" && break; sleep 0.05; done

# Every metric named by the dashboard and the rules exists in a scrape (after traffic).
"$bench" --address=127.0.0.1:$grpc_port --model=demo-mixtral --concurrency=4 --duration_s=1 \
  --warmup_s=0 --progress=false >/dev/null
scrape=$(curl -sf "http://127.0.0.1:$metrics_port/metrics")
for name in $(grep -ohE 'moe_router_[a-z_]+' "$src/deploy/grafana/dashboard.json" \
              "$src/deploy/prometheus/rules.yml" "$src/deploy/k8s/hpa.yaml" | sort -u); do
  case $name in moe_router_*_bucket|moe_router_*_sum|moe_router_*_count) base=${name%_*} ;; *) base=$name ;; esac
  echo "$scrape" | grep -q "^# TYPE $base " || fail "metric $name is not exported"
done

prom_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$tmp/prometheus.yml" <<YML
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: moe-router
    static_configs: [{targets: ["127.0.0.1:$metrics_port"]}]
YML
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
"$bench" --address=127.0.0.1:$grpc_port --model=demo-mixtral --concurrency=4 --duration_s=4 \
  --warmup_s=0 --progress=false >/dev/null &
pids+=($!)
query() { curl -sfG "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1"; }
for _ in $(seq 1 60); do
  result=$(query 'sum(moe_router_requests_total{job="moe-router",code="OK"})' || true)
  if echo "$result" | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; sys.exit(0 if r and float(r[0]["value"][1]) > 0 else 1)' 2>/dev/null; then
    up=$(query 'up{job="moe-router"}')
    echo "$up" | grep -q '"1"\]' || fail "up != 1: $up"
    hist=$(query 'count(moe_router_request_duration_seconds_bucket{job="moe-router"})')
    echo "$hist" | grep -q '"result":\[{' || fail "no latency histogram: $hist"
    echo "1 passed, 0 failed"
    exit 0
  fi
  sleep 1
done
fail "Prometheus never returned moe_router_requests_total; log: $(tail -5 "$tmp/prometheus.log")"
