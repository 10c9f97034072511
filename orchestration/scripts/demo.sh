#!/usr/bin/env bash
# The main job: build Bulkhead (release) and the test guest, then
#  1. boot the test guest (hello on 2 vCPUs, smp on 4);
#  2. run blk-verify on a disk served by the blk driver domain while `bulkhead chaos` injects
#     every fault kind (crash, segv, hang, corrupt-message, seccomp, exit, slow) and a burst of
#     crashes; print the chaos summary (restarts, reasons, recovery times) and re-verify every
#     block of the disk from the host;
#  3. the same for a NIC: net-echo against a UDP echo peer on a tap in a network namespace the
#     demo creates (10.0.0.1/24, guest 10.0.0.2) and removes, every fault kind injected;
#  4. the same over an emulated RTL8139 (PCI; every register access a message to its domain).
source "$(dirname "$0")/common.sh"
cd "$ROOT"

ensure_packages
build_guest
log "building bulkhead (swift build -c release)"
swift build -c release >/dev/null
BIN="$(swift build -c release --show-bin-path)"

if [[ $(kvm_status) != available ]]; then
    log "/dev/kvm is not usable on this machine: the demo needs KVM"
    exit 1
fi

show() {
    printf '\n$ bulkhead %s\n' "$*"
    set +e
    "$BIN/bulkhead" "$@"
    local status=$?
    set -e
    printf '(exit status %d)\n' "$status"
    return "$status"
}

show run --kernel guest/build/guest.elf --cmdline "workload=hello" --vcpus 2 --memory 256M
show run --kernel guest/build/guest.elf --cmdline "workload=smp" --vcpus 4

DISK=/tmp/bulkhead-example-disk.img   # named in orchestration/examples/blk-vm.json
OUT="$(mktemp)"
trap 'rm -f "$DISK" "$OUT"' EXIT
rm -f "$DISK"
truncate -s 32M "$DISK"
printf '\n# blk-verify on a disk served by a driver domain, every fault kind injected meanwhile\n'
printf '$ bulkhead chaos --config orchestration/examples/blk-vm.json --scenario orchestration/examples/every-fault.chaos.json\n'
set +e
"$BIN/bulkhead" chaos --config orchestration/examples/blk-vm.json \
    --scenario orchestration/examples/every-fault.chaos.json >"$OUT" 2>&1
status=$?
set -e
grep -v -e '^guest: blk-verify [0-9]*%' -e ' warning bulkhead: ' "$OUT"
printf '(exit status %d)\n' "$status"

passes=$(sed -n 's/^BULKHEAD-RESULT blk-verify .* passes=\([0-9]*\).*/\1/p' "$OUT")
printf '\n# the host re-checks every block the guest wrote (guest/tools/check-blk-verify.py)\n'
python3 guest/tools/check-blk-verify.py "$DISK" --seed 11 --pass "${passes:-0}"
grep -q '^BULKHEAD-RESULT blk-verify status=ok .*mismatches=0 io_errors=0' "$OUT"
((status == 0))

NS="bulkhead-demo-$$"
ECHO_PID=""
cleanup_net() {
    [[ -n "$ECHO_PID" ]] && kill "$ECHO_PID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
}
trap 'cleanup_net; rm -f "$DISK" "$OUT"' EXIT
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip tuntap add dev tap0 mode tap
ip netns exec "$NS" ip addr add 10.0.0.1/24 dev tap0
ip netns exec "$NS" ip link set tap0 up
ip netns exec "$NS" python3 guest/tools/net-host.py echo --bind 10.0.0.1 --port 7 >/dev/null 2>&1 &
ECHO_PID=$!
sleep 0.3
# `bulkhead chaos` for a NIC in the namespace, every fault kind of net-faults.chaos.json: prints
# the run (without warnings and progress lines) and its exit status, left in $status; the caller
# checks the result line.
nic_chaos() {
    local config=$1
    printf '$ ip netns exec %s bulkhead chaos --config %s --scenario orchestration/examples/net-faults.chaos.json\n' "$NS" "$config"
    set +e
    ip netns exec "$NS" "$BIN/bulkhead" chaos --config "$config" \
        --scenario orchestration/examples/net-faults.chaos.json >"$OUT" 2>&1
    status=$?
    set -e
    grep -v -e ' warning bulkhead: ' -e '^guest: net-echo [0-9]' "$OUT"
    printf '(exit status %d)\n' "$status"
}
printf '\n# net-echo through a NIC served by a driver domain (tap0 in namespace %s), every fault kind injected\n' "$NS"
nic_chaos orchestration/examples/net-vm.json
grep -q '^BULKHEAD-RESULT net-echo status=ok .*corrupt=0' "$OUT"
grep -q 'link_down_seen=0' "$OUT"
((status == 0))

printf '\n# the same over an emulated RTL8139 on PCI: its registers are served by the rtl8139 domain\n'
nic_chaos orchestration/examples/rtl8139-vm.json
grep -q '^BULKHEAD-RESULT net-echo status=ok .*corrupt=0 duplicates=0' "$OUT"
((status == 0))
printf '\nDemo OK: every fault kind was survived by the disk, the virtio NIC and the emulated NIC: no I/O error, no lost write, link never down.\n'
