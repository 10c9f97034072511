#!/usr/bin/env bash
# Launch-time benchmark: Bulkhead (release build) against QEMU microvm, same guest, same run.
# Writes the table to orchestration/bench/results/launch.md.
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_packages
build_guest
swift build -c release --product bulkhead >/dev/null
python3 orchestration/bench/launch.py \
    --bulkhead "$(swift build -c release --show-bin-path)/bulkhead" \
    --guest guest/build/guest.elf --runs "${RUNS:-15}" \
    --output orchestration/bench/results/launch.md
