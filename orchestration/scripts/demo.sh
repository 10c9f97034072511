#!/usr/bin/env bash
# The main job: build Bulkhead (release) and the test guest, then boot the guest under KVM:
# `hello` on 2 vCPUs and `smp` on 4, showing the guest's console and Bulkhead's exit status.
source "$(dirname "$0")/common.sh"
cd "$ROOT"

ensure_packages
build_guest
log "building bulkhead (swift build -c release)"
swift build -c release --product bulkhead
BULKHEAD="$(swift build -c release --show-bin-path)/bulkhead"

if [[ $(kvm_status) != available ]]; then
    log "/dev/kvm is not usable on this machine: the demo needs KVM"
    exit 1
fi

run() {
    printf '\n$ bulkhead %s\n' "$*"
    set +e
    "$BULKHEAD" "$@"
    local status=$?
    set -e
    printf '(exit status %d)\n' "$status"
    return "$status"
}

run run --kernel guest/build/guest.elf --cmdline "workload=hello" --vcpus 2 --memory 256M
run run --kernel guest/build/guest.elf --cmdline "workload=smp" --vcpus 4
printf '\nDemo OK: the test guest booted, ran its workloads in ring 3 and exited with status 0.\n'
