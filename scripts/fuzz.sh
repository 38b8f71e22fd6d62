#!/usr/bin/env bash
# Fuzzes the parsers that take outside bytes with clang's libFuzzer, under ASan + UBSan:
#   safetensors_fuzz      any bytes as a safetensors file (checkpoints, router files)
#   route_request_fuzz    any bytes as a RouteRequest, validated and routed on the CPU backend
#   batch_merge_fuzz      up to four requests routed alone and merged into batches: the same
#                         answers to the bit
#   npy_fuzz              any bytes as the CLI's .npy input
#
#   scripts/fuzz.sh                    each target 60 s
#   SECONDS_PER_TARGET=600 scripts/fuzz.sh safetensors_fuzz
#
# Starts from the checked-in corpus (tests/fuzz/corpus/<target>); new inputs that widen
# coverage go to build/fuzz/corpus/<target>, a crash to build/fuzz/crash-<target>-*. Copy a
# crash into tests/fuzz/corpus/<target>/ once fixed: the test suite replays that folder
# (ctest -R _replay), also in builds without clang.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh clang libclang-rt-14-dev  # libFuzzer and the sanitizers' runtimes
seconds=${SECONDS_PER_TARGET:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors_fuzz route_request_fuzz batch_merge_fuzz npy_fuzz)
build_dir=${BUILD_DIR:-build/fuzz}
CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOE_ROUTER_CUDA=OFF -DMOE_ROUTER_LIBFUZZER=ON > /dev/null
cmake --build "$build_dir" -j "${JOBS:-$(nproc)}" --target "${targets[@]}"
status=0
for t in "${targets[@]}"; do
  corpus="$build_dir/corpus/$t"
  mkdir -p "$corpus"
  echo "== $t: ${seconds}s"
  # The checked-in seeds are read, not written: new inputs land in the build's corpus.
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  "$build_dir/tests/$t" -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="$build_dir/crash-$t-" "$corpus" "tests/fuzz/corpus/$t" || status=1
done
exit $status
