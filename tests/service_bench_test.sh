#!/usr/bin/env bash
# Smoke test of bench/service_bench.sh on the CPU backend (short rows): the script runs to
# the end, prints a row per target and caller count, and records every measurement (one
# caller: each round of echo and routed) as a JSON line without errors, with the transport's
# way in and way out split by both servers' arrival stamps.
#   service_bench_test.sh SOURCE_DIR SERVER_BINARY BENCH_BINARY ECHO_BINARY
set -euo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
mkdir "$tmp/bin"
ln -s "$2" "$tmp/bin/moe-router-server"
ln -s "$3" "$tmp/bin/moe-router-bench"
ln -s "$4" "$tmp/bin/echo_server"
table=$(PORT_BASE=$((20000 + $$ % 20000)) CALLERS="1 8" TOKENS=1 MODES=unary CPU=0 \
  ONE_CALLER_ROUNDS=3 "$src/bench/service_bench.sh" "$tmp/bin" "$tmp/out" 1 cpu)
echo "$table"
/usr/bin/python3 - "$tmp/out/service_bench.jsonl" "$table" <<'PY' || fail "table or JSON lines"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
rows = [r.split("|")[1:4] for r in sys.argv[2].splitlines() if r.startswith("| ") and "---" not in r]
rows = [[c.strip() for c in r] for r in rows[1:]]  # past the header
want = [["echo", "1", "unary"], ["cpu", "1", "unary"], ["echo", "8", "unary"], ["cpu", "8", "unary"]]
assert rows == want, rows
# 3 rounds of echo + routed at one caller, then one of each at 8 callers
assert [(l["target"], l["concurrency"]) for l in lines] == \
    [("echo", 1), ("cpu", 1)] * 3 + [("echo", 8), ("cpu", 8)], lines
assert sorted(l["round"] for l in lines if l["concurrency"] == 1) == [1, 1, 2, 2, 3, 3]
for l in lines:
    assert l["ok"] > 0 and sum(l["errors"].values()) == 0, l
    assert 0 < l["p50_us"] <= l["p99_us"], l
    # Both servers stamp their arrival: the transport's way in and out are in the latency.
    assert 0 < l["way_in_p50_us"] < l["p99_us"] and 0 < l["way_out_p50_us"] < l["p99_us"], l
PY
echo "service_bench smoke test passed"
