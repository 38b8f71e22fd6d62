#!/usr/bin/env bash
# Builds moe-router and runs the whole test suite (what .ci/run calls).
#   scripts/test.sh              release build, all tests (GPU tests skip without a GPU)
#   BUILD_TYPE=Sanitize scripts/test.sh   the same under ASan + UBSan
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build_type=${BUILD_TYPE:-RelWithDebInfo}
build_dir=${BUILD_DIR:-build/${build_type,,}}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" -DMOE_ROUTER_WERROR=ON
cmake --build "$build_dir" -j "$jobs"
cd "$build_dir"
ctest --output-on-failure -j "$jobs" --timeout 600
