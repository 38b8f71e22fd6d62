#!/usr/bin/env bash
# Deployment files and a real Prometheus: the Prometheus config and alert rules pass
# promtool (and the rules' unit tests); Kubernetes, compose and Grafana files parse and agree
# with each other (ports, names, selectors, probes, the TLS probes' patch); the server command lines of the Dockerfile, the Deployment
# and the compose file start the real server (on the CPU backend, here without a
# container) and the Dockerfile's HEALTHCHECK command reports it serving; every metric the
# dashboard and rules use is exported by the server; then a real Prometheus (Debian
# package) on loopback scrapes a real server under load, and its HTTP API returns the
# series.
#   deploy_test.sh SOURCE_DIR SERVER_BINARY BENCH_BINARY CLI_BINARY
set -euo pipefail
src=$1 server=$2 bench=$3 cli=$4
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

promtool check config "$src/deploy/prometheus/prometheus.yml" >/dev/null || fail "promtool check config"
promtool check rules "$src/deploy/prometheus/rules.yml" >/dev/null || fail "promtool check rules"
(cd "$src/deploy/prometheus" && promtool test rules rules_test.yml >/dev/null) || fail "promtool test rules"
/usr/bin/python3 - "$src" <<'PY' || fail "deploy files do not parse"
import json, sys, yaml
src = sys.argv[1]
for f in ["k8s/deployment.yaml", "k8s/service.yaml", "k8s/monitoring.yaml", "k8s/hpa.yaml",
          "k8s/networkpolicy.yaml", "k8s/tls-probes.yaml", "docker-compose.yml",
          "grafana/provisioning/datasources/prometheus.yml",
          "grafana/provisioning/dashboards/moe-router.yml"]:
    docs = [d for d in yaml.safe_load_all(open(f"{src}/deploy/{f}")) if d is not None]
    assert docs, f
dash = json.load(open(f"{src}/deploy/grafana/dashboard.json"))
assert len(dash["panels"]) >= 6
PY

# The files agree with each other; prints the server command lines to try, one a line.
/usr/bin/python3 - "$src" >"$tmp/command_lines" <<'PY' || fail "deploy files disagree"
import json, re, sys, yaml
src = sys.argv[1]
load = lambda f: [d for d in yaml.safe_load_all(open(f"{src}/deploy/{f}")) if d is not None]
docker = open(f"{src}/Dockerfile").read().replace("\\\n", " ")
def instruction(name):  # the JSON array of a Dockerfile instruction
    m = re.search(rf"^{name}\s+(?:--\S+\s+)*(?:CMD\s+)?(\[.*\])\s*$", docker, re.M)
    assert m, f"Dockerfile has no exec-form {name}"
    return json.loads(m.group(1))
def flag(args, name):
    return args[args.index(name) + 1]
def port(address):
    return int(address.rsplit(":", 1)[1])
cmd, health = instruction("CMD"), instruction("HEALTHCHECK")
expose = sorted(int(p) for p in re.search(r"^EXPOSE\s+(.*)$", docker, re.M).group(1).split())
assert re.search(r"^USER\s+(?!root\b)\S+", docker, re.M), "the image must not run as root"
assert len(re.findall(r"^FROM\s+nvidia/cuda:13", docker, re.M)) == 2, "two CUDA 13 stages"
assert health[0] == "moe-router" and health[-1] == "health", health
deployment = load("k8s/deployment.yaml")[0]
pod = deployment["spec"]["template"]
container = pod["spec"]["containers"][0]
args = container["args"]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
assert ports == {"grpc": port(flag(args, "--address")), "metrics": port(flag(args, "--metrics_address"))}, ports
assert sorted(ports.values()) == expose, (ports, expose)
assert port(flag(cmd, "--address")) == ports["grpc"] and port(flag(cmd, "--metrics_address")) == ports["metrics"]
assert port(flag(health, "--address")) == ports["grpc"], health
for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
    assert container[probe]["grpc"]["port"] == ports["grpc"], probe
# The TLS probes' patch, merged as a strategic merge does (a null deletes): HTTP probes of the
# metrics port's health paths on the same container, no gRPC probe left.
patched = json.loads(json.dumps(container))
patch = load("k8s/tls-probes.yaml")[0]["spec"]["template"]["spec"]["containers"]
assert [c["name"] for c in patch] == [container["name"]], patch
for key, value in patch[0].items():
    if key == "name":
        continue
    if value is None:
        patched.pop(key, None)
        continue
    merged = dict(patched.get(key, {}))
    for field, v in value.items():
        if v is None:
            merged.pop(field, None)
        else:
            merged[field] = v
    patched[key] = merged
assert "startupProbe" not in patched, patched
assert {k: patched[k]["httpGet"]["path"] for k in ("readinessProbe", "livenessProbe")} == \
    {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}, patched
for k in ("readinessProbe", "livenessProbe"):
    assert "grpc" not in patched[k] and patched[k]["httpGet"]["port"] == "metrics", patched[k]
for kind in ("requests", "limits"):
    assert container["resources"][kind]["nvidia.com/gpu"] == 1, kind
assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
labels = pod["metadata"]["labels"]
assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
service = load("k8s/service.yaml")[0]
assert service["spec"]["clusterIP"] == "None", "the Service must be headless"
assert service["spec"]["selector"].items() <= labels.items()
service_ports = {p["name"]: p for p in service["spec"]["ports"]}
for name, p in service_ports.items():
    assert p["targetPort"] == name and name in ports, p
for monitor in load("k8s/monitoring.yaml"):
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= labels.items(), monitor["kind"]
    endpoints = spec.get("podMetricsEndpoints") or spec.get("endpoints")
    assert endpoints and all(e["port"] == "metrics" and e["path"] == "/metrics" for e in endpoints)
policy = load("k8s/networkpolicy.yaml")[0]
assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
assert policy["spec"]["policyTypes"] == ["Ingress"]
rules = {r["ports"][0]["port"]: r["from"] for r in policy["spec"]["ingress"]}
assert sorted(rules) == sorted(ports), (rules, ports)  # both ports reachable, each by name
assert rules["grpc"] == [{"namespaceSelector": {}}], rules["grpc"]
assert rules["metrics"][0]["namespaceSelector"] and rules["metrics"][0]["podSelector"], rules
hpa = load("k8s/hpa.yaml")[0]
target = hpa["spec"]["scaleTargetRef"]
assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"]), target
compose = load("docker-compose.yml")[0]["services"]["moe-router"]["command"]
for line in (cmd, args, compose):
    print(json.dumps(line))
PY

# Each command line starts the real server (model and flags as written; the backend, the
# demo's depth and the ports overridden for this machine: later flags win), and the
# HEALTHCHECK command, pointed at it, exits 0 with SERVING.
n=0
while read -r line; do
  n=$((n + 1))
  mapfile -t argv < <(/usr/bin/python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])))' "$line")
  "$server" "${argv[@]}" --backend=cpu --cpu_threads=2 --demo_layers=2 </dev/null \
    --address=127.0.0.1:0 --metrics_address=127.0.0.1:0 --port_file="$tmp/ports$n" \
    2>"$tmp/server$n.log" &
  pid=$!
  for _ in $(seq 1 600); do [ -s "$tmp/ports$n" ] || ! kill -0 "$pid" 2>/dev/null && break; sleep 0.05; done
  read -r p _ <"$tmp/ports$n" || fail "command line $line did not start: $(cat "$tmp/server$n.log")"
  healthy=
  for _ in $(seq 1 600); do
    if out=$("$cli" --address "127.0.0.1:$p" health </dev/null 2>&1) && [ "$out" = SERVING ]; then healthy=1; break; fi
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -n "$healthy" ] || fail "HEALTHCHECK never reported SERVING for $line: $(tail -3 "$tmp/server$n.log")"
done <"$tmp/command_lines"
[ "$n" = 3 ] || fail "expected 3 command lines, got $n"

port_file=$tmp/ports
"$server" --model=demo-mixtral --demo_layers=2 --backend=cpu --cpu_threads=2 \
  --address=127.0.0.1:0 --metrics_address=127.0.0.1:0 --port_file="$port_file" 2>"$tmp/server.log" &
pids+=($!)
for _ in $(seq 1 600); do [ -s "$port_file" ] && break; sleep 0.05; done
read -r grpc_port metrics_port <"$port_file" || fail "server did not start: $(cat "$tmp/server.log")"
for _ in $(seq 1 600); do grep -q "serving gRPC" "$tmp/server.log" && break; sleep 0.05; done

# The TLS probes' paths answer (plaintext, from the serving state).
[ "$(curl -sf "http://127.0.0.1:$metrics_port/healthz")" = "alive: serving" ] || fail "/healthz"
[ "$(curl -sf "http://127.0.0.1:$metrics_port/readyz")" = "ready: serving" ] || fail "/readyz"

# Every metric named by the dashboard and the rules exists in a scrape (after traffic).
"$bench" --address=127.0.0.1:$grpc_port --model=demo-mixtral --concurrency=4 --duration_s=1 \
  --warmup_s=0 --progress=false >/dev/null
scrape=$(curl -sf "http://127.0.0.1:$metrics_port/metrics")
for name in $(grep -ohE 'moe_router_[a-z_]+' "$src/deploy/grafana/dashboard.json" \
              "$src/deploy/prometheus/rules.yml" "$src/deploy/k8s/hpa.yaml" | sort -u); do
  case $name in moe_router_*_bucket|moe_router_*_sum|moe_router_*_count) base=${name%_*} ;; *) base=$name ;; esac
  # A here-string, not `echo | grep -q`: under pipefail, grep -q quitting at its match can
  # end echo with SIGPIPE (a one-page pipe) and fail the check on a metric that is there.
  grep -q "^# TYPE $base " <<<"$scrape" || fail "metric $name is not exported"
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
    grep -q '"1"\]' <<<"$up" || fail "up != 1: $up"
    hist=$(query 'count(moe_router_request_duration_seconds_bucket{job="moe-router"})')
    grep -q '"result":\[{' <<<"$hist" || fail "no latency histogram: $hist"
    echo "1 passed, 0 failed"
    exit 0
  fi
  sleep 1
done
fail "Prometheus never returned moe_router_requests_total; log: $(tail -5 "$tmp/prometheus.log")"
