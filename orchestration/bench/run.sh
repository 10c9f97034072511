#!/usr/bin/env bash
# Issue 7: Bulkhead against QEMU in one run: disk, launch, memory, network, recovery, control
# path. Builds release binaries and the test guest, installs QEMU (and qemu-storage-daemon) from
# Debian if missing, runs orchestration/bench/bench.py (peers one at a time, interleaved), and
# writes the table to orchestration/bench/results/bench-<date>.md and orchestration/bench/RESULTS.md.
# Root (KVM, a network namespace). About 10 minutes with the defaults (3 disk rounds).
#   SECONDS_PER_RUN=3 LAUNCH_RUNS=10 NET_REPS=2 KILLS=20 QEMU_KILLS=3 PING=1000 ONLY=disk,launch,...
#   DISK_MODES='write 1M,qd32' DISK_PEERS='cache=none' DISK_REPEAT=1: a quick look at a few disk rows
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_packages
command -v qemu-storage-daemon >/dev/null || {
    log "installing qemu-system-common (qemu-storage-daemon)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-common >/dev/null
}
build_guest
log "building Bulkhead (release)"
swift build -c release >/dev/null
BIN="$(swift build -c release --show-bin-path)"

DISK="$(mktemp /tmp/bulkhead-bench-disk-XXXXXX.img)"
trap 'rm -f "$DISK"' EXIT
# Written out (not sparse), so reads hit real extents.
dd if=/dev/zero of="$DISK" bs=1M count=256 oflag=direct status=none

PING_ARG=()
# The control-path probe needs GET /domains/{id}/ping in the operator API.
if grep -q '"ping"' Sources/BulkheadAPI/APIServer.swift 2>/dev/null; then PING_ARG=(--ping "${PING:-1000}"); fi

python3 orchestration/bench/bench.py --bulkhead "$BIN/bulkhead" --guest guest/build/guest.elf --disk "$DISK" \
    --seconds "${SECONDS_PER_RUN:-3}" --launch-runs "${LAUNCH_RUNS:-10}" --net-reps "${NET_REPS:-2}" \
    --kills "${KILLS:-20}" --qemu-kills "${QEMU_KILLS:-3}" "${PING_ARG[@]}" \
    --only "${ONLY:-disk,launch,net,recovery,control,registers}" \
    --disk-modes "${DISK_MODES:-}" --disk-peers "${DISK_PEERS:-}" --disk-repeat "${DISK_REPEAT:-3}" \
    --output "orchestration/bench/results/bench-$(date +%Y%m%d-%H%M%S).md" \
    --output orchestration/bench/RESULTS.md
