#!/usr/bin/env bash
# Every shipped binary's --help says how to use it. For the binaries that parse Abseil
# flags, every ABSL_FLAG defined in the source file named beside the binary is listed with
# its help text (Abseil's default lists only files named after the binary, so these printed
# "No flags matched"); Abseil's --help exits 1. The others print their usage and exit 0.
#   help_test.sh BINARY=FLAGS_SOURCE... -- BINARY...
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
checked=0
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  bin=${1%%=*} src=${1#*=}
  shift
  name=$(basename "$bin")
  rc=0
  out=$(timeout 20 "$bin" --help 2>&1) || rc=$?
  [ "$rc" -le 1 ] || fail "$name --help exited $rc"
  case $out in *"No flags matched"*) fail "$name --help lists no flags" ;; esac
  flags=$(grep -oE '^ABSL_FLAG\([^,]+, *[a-z0-9_]+' "$src" | sed -E 's/.*, *//')
  [ -n "$flags" ] || fail "no ABSL_FLAG found in $src"
  for f in $flags; do
    grep -qE "^ +--$f \(" <<<"$out" || fail "$name --help does not list --$f"
  done
  echo "PASS: $name lists its $(wc -w <<<"$flags") flags"
  checked=$((checked + 1))
done
[ "${1:-}" = -- ] && shift
for bin in "$@"; do
  name=$(basename "$bin")
  out=$(timeout 20 "$bin" --help 2>&1) || fail "$name --help exited $?"
  grep -q "^usage: $name" <<<"$out" || fail "$name --help prints no usage line"
  echo "PASS: $name prints its usage"
  checked=$((checked + 1))
done
[ "$checked" -gt 0 ] || fail "no binaries given"
