#!/usr/bin/env bash
# Makes the device bundles of bench/s48_call1.sh and s48_call2.sh (bench/NOTES.md session 48).
#   bench/s48_bundle.sh call1          -> .gpu: rb_base rb_m rb_j rb_e rb_d, router_ab.sh, the script
#   bench/s48_bundle.sh call2 VARIANT  -> .gpu: VARIANT's gpu_router_test (base|m|j|e|d), HEAD's
#                                         moe-router-server, server_test, libmoe_kernels.so,
#                                         peers.py, the script
# then the device call with carry [".gpu"]: bash .gpu/s48_callN.sh
#
# The variants are HEAD's kernels with one patch each (s47_two_tile_pass_of_two = d,
# s47_two_tile_uncapped = e, s48_two_tile_prefetch = j, s48_two_tile_staged_tokens = m),
# built for sm_90a in git worktrees and kept stripped in .gpu_s48/ (git-ignored) with the
# kernels' tree hash and the patches' hashes: a later run reuses them while those are
# unchanged, else rebuilds all five, so that every build of an A/B comes from one tree and
# one session's compiler (router_ab.sh's rule). ~25 minutes on 2 cores from nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
what=${1:-}
case "$what" in
  call1) ;;
  call2) [ $# -eq 2 ] || { echo "usage: bench/s48_bundle.sh call2 base|m|j|e|d" >&2; exit 2; } ;;
  *)
    sed -n '2,8p' "$0" >&2
    exit 2
    ;;
esac
cache=.gpu_s48
declare -A patch=(
  [d]=bench/s47_two_tile_pass_of_two.patch
  [e]=bench/s47_two_tile_uncapped.patch
  [j]=bench/s48_two_tile_prefetch.patch
  [m]=bench/s48_two_tile_staged_tokens.patch
)
variants=(m j e d)
stamp() {
  git rev-parse HEAD:kernels
  for v in "${variants[@]}"; do sha1sum "${patch[$v]}"; done
}

build_variant() {  # $1: d|e|j|m
  local wt=/tmp/moe_s48_$1
  git worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"
  git worktree add -f --detach "$wt" HEAD >/dev/null
  (cd "$wt" && git apply "$root/${patch[$1]}" && cmake --preset hopper >/dev/null &&
    ninja -C build/gpu -j"${JOBS:-2}" router_bench gpu_router_test >/dev/null)
  cp "$wt/build/gpu/bench/router_bench" "$cache/rb_$1"
  cp "$wt/build/gpu/tests/gpu_router_test" "$cache/gpu_router_test_$1"
  git worktree remove --force "$wt"
}

scripts/install-deps.sh >/dev/null
cmake --preset hopper >/dev/null
ninja -C build/gpu -j"${JOBS:-2}" router_bench gpu_router_test moe_kernels_shared server_test \
  moe-router-server >/dev/null
if [ "$(cat "$cache/STAMP" 2>/dev/null)" != "$(stamp)" ]; then
  echo "s48_bundle: building the variants into $cache (kernels or patches changed, or none yet)"
  rm -rf "$cache" && mkdir -p "$cache"
  cp build/gpu/bench/router_bench "$cache/rb_base"
  cp build/gpu/tests/gpu_router_test "$cache/gpu_router_test_base"
  for v in "${variants[@]}"; do build_variant "$v"; done
  strip "$cache"/rb_* "$cache"/gpu_router_test_*
  stamp > "$cache/STAMP"
fi

rm -rf .gpu
tools=../shared/tools/device-bundle
if [ "$what" = call1 ]; then
  "$tools" .gpu "$cache"/rb_base "$cache"/rb_m "$cache"/rb_j "$cache"/rb_e "$cache"/rb_d \
    bench/router_ab.sh bench/s48_call1.sh
else
  v=$2
  [ -f "$cache/gpu_router_test_$v" ] || { echo "no variant '$v' (base|m|j|e|d)" >&2; exit 2; }
  work=$(mktemp -d)
  cp "$cache/gpu_router_test_$v" "$work/gpu_router_test"
  for f in build/gpu/server/moe-router-server build/gpu/tests/server_test \
    build/gpu/kernels/libmoe_kernels.so; do
    cp "$f" "$work/" && strip "$work/$(basename "$f")"
  done
  "$tools" .gpu "$work"/gpu_router_test "$work"/moe-router-server "$work"/server_test \
    "$work"/libmoe_kernels.so bench/peers.py bench/s48_call2.sh
  rm -rf "$work"
fi
du -sh .gpu
