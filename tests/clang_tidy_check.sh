#!/usr/bin/env bash
# Runs clang-tidy with the tree's .clang-tidy over every C++ file (.cc) of the tree in a
# build's compile database (the CUDA sources are nvcc's); exits non-zero on any finding.
#   clang_tidy_check.sh SOURCE_DIR BUILD_DIR [JOBS]
set -euo pipefail
src=$(cd "$1" && pwd)
build=$2
jobs=${3:-$(nproc)}
if [ ! -f "$build/compile_commands.json" ]; then
  echo "clang_tidy_check: no compile_commands.json in $build (configure with" \
    "CMAKE_EXPORT_COMPILE_COMMANDS=ON, as the presets do)" >&2
  exit 1
fi
exec run-clang-tidy -p "$build" -quiet -j "$jobs" "$src/(kernels|server|client|bench|tests)/.*\.cc$"
