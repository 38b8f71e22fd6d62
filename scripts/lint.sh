#!/usr/bin/env bash
# Static checks beyond the compilers' warnings (the builds use -Werror), the same two that
# run as tests in CI (format_check, clang_tidy_check):
#   clang-format: every C++ and CUDA source laid out as .clang-format says;
#   clang-tidy: .clang-tidy's checks over every C++ file (.cc) of the `default` preset's
#     compile database, headers of the tree included; the CUDA sources are nvcc's.
#   scripts/lint.sh          both (clang-tidy parses gRPC and Abseil for every file: ~6
#                            minutes on 2 cores)
#   scripts/lint.sh format   clang-format only (seconds)
# Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
case "$what" in
  all | format) ;;
  *)
    echo "usage: scripts/lint.sh [all|format]" >&2
    exit 2
    ;;
esac
scripts/install-deps.sh
tests/format_check.sh .
[ "$what" = format ] && exit 0
jobs=${JOBS:-$(nproc)}
cmake --preset default >/dev/null
cmake --build --preset default --target moe_router_proto -j "$jobs"
tests/clang_tidy_check.sh . build/relwithdebinfo "$jobs"
