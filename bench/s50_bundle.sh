#!/usr/bin/env bash
# Makes the device bundle of bench/s50_call1.sh (bench/NOTES.md session 50): three
# router_bench builds of one tree and two gpu_router_tests, each variant with its own
# libmoe_kernels.so:
#   bench/s50_bundle.sh   -> .gpu: rb_base rb_r rb_t, r/ and t/ (gpu_router_test +
#                            libmoe_kernels.so), router_ab.sh, s50_call1.sh
# then the device call with carry [".gpu"]: bash .gpu/s50_call1.sh
#
# The variants are HEAD's kernels with one patch each (s50_two_tile_short_pass_branch = r,
# s50_two_tile_short_pass_instances = t), built for sm_90a in git worktrees and kept
# stripped in .gpu_s50/ (git-ignored) with the kernels' tree hash and the patches' hashes: a
# later run reuses them while those are unchanged, else rebuilds all three, so that every
# build of an A/B comes from one tree and one session's compiler (router_ab.sh's rule).
# ~15 minutes on 2 cores from nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache=.gpu_s50
declare -A patch=(
  [r]=bench/s50_two_tile_short_pass_branch.patch
  [t]=bench/s50_two_tile_short_pass_instances.patch
)
stamp() {
  git rev-parse HEAD:kernels HEAD:tests
  for v in r t; do sha1sum "${patch[$v]}"; done
}

build_variant() {  # $1: base|r|t
  local wt=/tmp/moe_s50_$1
  git worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"
  git worktree add -f --detach "$wt" HEAD >/dev/null
  (cd "$wt" && { [ "$1" = base ] || git apply "$root/${patch[$1]}"; } &&
    cmake --preset hopper >/dev/null &&
    ninja -C build/gpu -j"${JOBS:-2}" router_bench gpu_router_test >/dev/null)
  cp "$wt/build/gpu/bench/router_bench" "$cache/rb_$1"
  mkdir -p "$cache/$1"
  cp "$wt/build/gpu/tests/gpu_router_test" "$wt/build/gpu/kernels/libmoe_kernels.so" "$cache/$1/"
  git worktree remove --force "$wt"
}

scripts/install-deps.sh >/dev/null
if [ "$(cat "$cache/STAMP" 2>/dev/null)" != "$(stamp)" ]; then
  echo "s50_bundle: building the variants into $cache (kernels, tests or patches changed, or none yet)"
  rm -rf "$cache" && mkdir -p "$cache"
  for v in base r t; do build_variant "$v"; done
  strip "$cache"/rb_* "$cache"/*/gpu_router_test "$cache"/*/libmoe_kernels.so
  stamp >"$cache/STAMP"
fi
rm -rf .gpu
../shared/tools/device-bundle .gpu "$cache"/rb_base "$cache"/rb_r "$cache"/rb_t \
  bench/router_ab.sh bench/s50_call1.sh
cp -r "$cache/r" "$cache/t" .gpu/
du -sh .gpu
