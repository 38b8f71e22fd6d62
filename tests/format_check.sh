#!/usr/bin/env bash
# Checks that every C++ and CUDA source of the tree is laid out as .clang-format says
# (clang-format --dry-run --Werror): CI refuses an unformatted change.
#   format_check.sh SOURCE_DIR [CLANG_FORMAT]
set -euo pipefail
cd "$1"
clang_format=${2:-clang-format}
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cc' '*.h' '*.cu' '*.cuh')
else  # a source tree without git metadata
  mapfile -t files < <(find kernels server client bench tests proto \
    \( -name '*.cc' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -type f | sort)
fi
[ ${#files[@]} -gt 0 ] || { echo "format_check: no sources found in $1" >&2; exit 1; }
"$clang_format" --dry-run --Werror "${files[@]}"
echo "format_check: ${#files[@]} files formatted as .clang-format says"
