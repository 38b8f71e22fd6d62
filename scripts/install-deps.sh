#!/usr/bin/env bash
# Installs the Debian 12 packages moe-router needs to build, test and run, skipping
# those already present, and any further packages named as arguments (scripts/fuzz.sh:
# clang and its libFuzzer runtime). Needs root (or sudo).
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config git
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libabsl-dev
  libcivetweb-dev civetweb libgtest-dev libgmock-dev prometheus curl
  python3 python3-grpcio python3-numpy python3-protobuf python3-yaml openssl
  clang-format clang-tidy "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
