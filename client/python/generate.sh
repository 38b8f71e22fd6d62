#!/usr/bin/env bash
# Generates the Python modules the client needs into client/python/gen (outside a CMake
# build); then: PYTHONPATH=client/python:client/python/gen python3 ...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mkdir -p "$here/gen"
protoc --proto_path="$root/proto" --python_out="$here/gen" --grpc_out="$here/gen" \
  --plugin=protoc-gen-grpc="$(command -v grpc_python_plugin)" \
  "$root/proto/moe_router/v1/router.proto"
echo "generated into $here/gen"
