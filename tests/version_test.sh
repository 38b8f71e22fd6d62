#!/usr/bin/env bash
# Every shipped binary answers --version with one line, "NAME VERSION (commit C, BUILD_TYPE,
# CUDA ARCHS | CPU only)", exit 0 and nothing started: VERSION is the project's
# (CMakeLists.txt), C a commit of this repository (12 hex digits, "-dirty" if tracked files
# had changed) or "unknown" outside a git checkout, and all of them report the same build.
# The stamp is taken at build time, so C may be an earlier commit than HEAD by the time the
# test runs; it must still name one.
#   version_test.sh SOURCE_DIR PROJECT_VERSION BINARY...
set -euo pipefail
src=$1 version=$2
shift 2
fail() { echo "FAIL: $*"; exit 1; }
first=""
for bin in "$@"; do
  name=$(basename "$bin")
  out=$(timeout 20 "$bin" --version) || fail "$name --version exited $?"
  echo "$out"
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "$name: more than one line"
  re="^$name ([0-9]+\.[0-9]+\.[0-9]+) \(commit ([0-9a-f]{12}(-dirty)?|unknown), ([A-Za-z]+), (CUDA [0-9a-z,-]+|CPU only)\)$"
  [[ $out =~ $re ]] || fail "$name: '$out' is not NAME VERSION (commit C, TYPE, CUDA ...)"
  [ "${BASH_REMATCH[1]}" = "$version" ] || fail "$name: version ${BASH_REMATCH[1]}, project $version"
  commit=${BASH_REMATCH[2]%-dirty}
  if [ "$commit" != unknown ]; then
    git -C "$src" cat-file -e "$commit^{commit}" 2>/dev/null ||
      fail "$name: commit $commit is not in $src"
  fi
  rest=${out#"$name "}
  [ -z "$first" ] && first=$rest
  [ "$rest" = "$first" ] || fail "$name reports '$rest', another binary '$first'"
done
echo "PASS: $# binaries"
