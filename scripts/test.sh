#!/usr/bin/env bash
# Builds moe-router and runs the whole test suite (what .ci/run calls), through the CMake
# presets of CMakePresets.json (build/<preset's dir>).
#   scripts/test.sh              release build, all tests (GPU tests skip without a GPU)
#   BUILD_TYPE=Sanitize scripts/test.sh   the same under ASan + UBSan (preset `sanitize`)
#   BUILD_TYPE=Tsan scripts/test.sh       ThreadSanitizer (preset `tsan`), on the tests it can
#     judge: the preset leaves out those through gRPC or protobuf maps (Debian's libraries
#     are not instrumented; README)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build_type=${BUILD_TYPE:-RelWithDebInfo}
case "$build_type" in
  RelWithDebInfo) preset=default ;;
  Sanitize) preset=sanitize ;;
  Tsan) preset=tsan ;;
  *)
    echo "scripts/test.sh: BUILD_TYPE must be RelWithDebInfo, Sanitize or Tsan, not '$build_type'" >&2
    exit 2
    ;;
esac
jobs=${JOBS:-$(nproc)}
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$jobs"
ctest --preset "$preset" -j "$jobs"
