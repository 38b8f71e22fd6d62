#!/usr/bin/env bash
# Kernel A/B: two router_bench builds measured in turns on one GPU (ROUNDS rounds of A
# then B, so drift hits both alike), then per row the median of each and the change.
#   router_ab.sh ROUTER_BENCH_A ROUTER_BENCH_B OUT_DIR [router_bench args...]
# (env ROUNDS, default 2; default args: --quick). Columns: fused with PDL and without,
# A -> B in us. Refuses two identical binaries: an A/B of a build against itself (a
# failed rebuild leaves the old binary in place) measures nothing.
# Resolution (H200, bench/NOTES.md sessions 31-32): a binary against itself moves +-0.01
# us under PDL, and a same-session rebuild of the tree with every line number shifted gave
# identical SASS and +-0.02; a binary from an earlier session moved rows up to +-0.1 us.
# Build A from the base commit in the same session, and read a change by the rows whose
# kernels changed, against unchanged rows in the same run.
set -euo pipefail
a=$1 b=$2 out=$3
shift 3
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--quick)
rounds=${ROUNDS:-2}
if cmp -s "$a" "$b"; then
  echo "router_ab.sh: $a and $b are the same binary" >&2
  exit 2
fi
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  "$a" "${args[@]}" >"$out/a$r.txt" 2>&1
  "$b" "${args[@]}" >"$out/b$r.txt" 2>&1
done
/usr/bin/python3 - "$out" "$rounds" <<'PY'
import re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def rows(path):  # shape -> (fused PDL, fused no PDL)
    got = {}
    for line in open(path):
        m = re.match(r"^(\S+ t=\d+|gemm \S+)\s+\d+\s+([\d.]+)\s+\d+%\s+([\d.]+)", line)
        if m:
            got[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return got
runs = {side: [rows(f"{out}/{side}{r}.txt") for r in range(1, rounds + 1)] for side in "ab"}
print(f"{'shape':<24} {'PDL A':>7} {'PDL B':>7} {'change':>7}   {'noPDL A':>7} {'noPDL B':>7} {'change':>7}")
for shape in runs["a"][0]:
    if not all(shape in r for side in "ab" for r in runs[side]):
        continue
    med = {side: [statistics.median(r[shape][i] for r in runs[side]) for i in (0, 1)]
           for side in "ab"}
    print(f"{shape:<24} {med['a'][0]:7.2f} {med['b'][0]:7.2f} {med['b'][0] - med['a'][0]:+7.2f}"
          f"   {med['a'][1]:7.2f} {med['b'][1]:7.2f} {med['b'][1] - med['a'][1]:+7.2f}")
PY
