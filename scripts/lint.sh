#!/usr/bin/env bash
# Static checks beyond the compilers' warnings (the builds use -Werror):
#   clang-format: every C++ and CUDA source laid out as .clang-format says (also the
#     format_check test, so CI enforces it);
#   clang-tidy: .clang-tidy's checks over every C++ file (.cc) of the `default` preset's
#     compile database, headers of the tree included; the CUDA sources are nvcc's.
#   scripts/lint.sh          both (clang-tidy parses gRPC and Abseil for every file: ~20
#                            minutes on 2 cores, so it is not part of CI's test run)
#   scripts/lint.sh format   clang-format only (seconds)
# Exits non-zero on any finding. Installs clang-format and clang-tidy if missing.
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
scripts/install-deps.sh clang-tidy
tests/format_check.sh .
[ "$what" = format ] && exit 0
cmake --preset default >/dev/null
cmake --build --preset default --target moe_router_proto -j "${JOBS:-$(nproc)}"
run-clang-tidy -p build/relwithdebinfo -quiet -j "${JOBS:-$(nproc)}" \
  "$(pwd)/(kernels|server|client|bench|tests)/.*\.cc$"
