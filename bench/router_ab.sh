#!/usr/bin/env bash
# Kernel A/B: two or more router_bench builds measured in turns (ROUNDS rounds of A, then
# B, then C..., so drift hits all alike), then per row the median of each and each one's
# change against A.
#   router_ab.sh ROUTER_BENCH_A ROUTER_BENCH_B [ROUTER_BENCH_C ...] OUT_DIR [router_bench args...]
# (the builds are the leading arguments that are executable files; env ROUNDS, default 2;
# default args: --quick). Columns: fused with PDL, then without, A -> B (-> C ...) in us.
# Refuses two identical binaries: an A/B of a build against itself (a failed rebuild
# leaves the old binary in place) measures nothing.
# Resolution (H200, bench/NOTES.md sessions 31-32): a binary against itself moves +-0.01
# us under PDL, and a same-session rebuild of the tree with every line number shifted gave
# identical SASS and +-0.02; a binary from an earlier session moved rows up to +-0.1 us.
# Build A from the base commit in the same session, and read a change by the rows whose
# kernels changed, against unchanged rows in the same run.
set -euo pipefail
bins=()
while [ $# -gt 0 ] && [ -f "$1" ] && [ -x "$1" ]; do
  bins+=("$1")
  shift
done
if [ ${#bins[@]} -lt 2 ] || [ $# -lt 1 ]; then
  echo "usage: router_ab.sh ROUTER_BENCH_A ROUTER_BENCH_B [ROUTER_BENCH_C ...] OUT_DIR" \
    "[router_bench args...]" >&2
  exit 2
fi
out=$1
shift
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--quick)
rounds=${ROUNDS:-2}
for i in "${!bins[@]}"; do
  for j in "${!bins[@]}"; do
    if [ "$i" -lt "$j" ] && cmp -s "${bins[$i]}" "${bins[$j]}"; then
      echo "router_ab.sh: ${bins[$i]} and ${bins[$j]} are the same binary" >&2
      exit 2
    fi
  done
done
names=(a b c d e f g h)
if [ ${#bins[@]} -gt ${#names[@]} ]; then
  echo "router_ab.sh: at most ${#names[@]} builds" >&2
  exit 2
fi
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for i in "${!bins[@]}"; do
    "${bins[$i]}" "${args[@]}" >"$out/${names[$i]}$r.txt" 2>&1
  done
done
/usr/bin/python3 - "$out" "$rounds" "${names[@]:0:${#bins[@]}}" <<'PY'
import re, statistics, sys
out, rounds, sides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]  # sides: the builds' letters
def rows(path):  # shape -> (fused PDL, fused no PDL)
    got = {}
    for line in open(path):
        m = re.match(r"^(\S+ t=\d+|gemm \S+)\s+\d+\s+([\d.]+)\s+\d+%\s+([\d.]+)", line)
        if m:
            got[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return got
runs = {side: [rows(f"{out}/{side}{r}.txt") for r in range(1, rounds + 1)] for side in sides}
def columns(label):
    cols = [f"{label} {s.upper()}" for s in sides]
    return "".join(f" {c:>7}" for c in cols[:1]) + "".join(
        f" {c:>7} {'change':>7}" for c in cols[1:])
print(f"{'shape':<24}{columns('PDL')}  {columns('noPDL')}")
for shape in runs["a"][0]:
    if not all(shape in r for side in sides for r in runs[side]):
        continue
    med = {side: [statistics.median(r[shape][i] for r in runs[side]) for i in (0, 1)]
           for side in sides}
    def values(i):
        return f" {med['a'][i]:7.2f}" + "".join(
            f" {med[s][i]:7.2f} {med[s][i] - med['a'][i]:+7.2f}" for s in sides[1:])
    print(f"{shape:<24}{values(0)}  {values(1)}")
PY
