#!/usr/bin/env bash
# Regenerates proto/c/ from proto/bulkhead.proto with protoc-c (package protobuf-c-compiler).
# Idempotent: running it twice gives the same files. The generated files are committed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
proto_dir="$root/proto"
out="$proto_dir/c"

command -v protoc-c >/dev/null || { echo "gen-proto: protoc-c not found (apt-get install protobuf-c-compiler)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

(cd "$proto_dir" && protoc-c --c_out="$tmp" bulkhead.proto)

mkdir -p "$out/include"
mv "$tmp/bulkhead.pb-c.c" "$out/bulkhead.pb-c.c"
mv "$tmp/bulkhead.pb-c.h" "$out/include/bulkhead.pb-c.h"
echo "gen-proto: wrote $out/bulkhead.pb-c.c and $out/include/bulkhead.pb-c.h ($(protoc-c --version | head -1))"
