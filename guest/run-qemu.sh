#!/bin/sh
# Boot the test guest under QEMU (microvm, KVM) and exit with the guest's own
# debug-exit code (QEMU's isa-debug-exit exits with (code << 1) | 1).
#   usage: guest/run-qemu.sh [-smp N] [-m SIZE] [cmdline...]
#   e.g.   guest/run-qemu.sh -smp 4 workload=smp
# Environment: QEMU (default qemu-system-x86_64), TIMEOUT (default 60 s),
#   DISK=<raw image>: attach it as a modern virtio-blk-device (virtio-mmio v2),
#   e.g. DISK=/tmp/disk.img guest/run-qemu.sh -smp 1 workload=blk-verify
set -u
here=$(cd "$(dirname "$0")" && pwd)
smp=2
mem=256M
while [ $# -gt 0 ]; do
    case "$1" in
    -smp) smp=$2; shift 2 ;;
    -m) mem=$2; shift 2 ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || set -- workload=hello
disk_args=
if [ -n "${DISK:-}" ]; then
    disk_args="-global virtio-mmio.force-legacy=false -drive id=d0,file=$DISK,format=raw,if=none,cache=none -device virtio-blk-device,drive=d0"
fi
make -s -C "$here" >&2 || exit 125
# -cpu host,-arch-capabilities: PVM refuses QEMU's write of MSR 0x10a
# (IA32_ARCH_CAPABILITIES) that plain `-cpu host` makes.
timeout "${TIMEOUT:-60}" "${QEMU:-qemu-system-x86_64}" \
    -accel kvm -M microvm -cpu host,-arch-capabilities -m "$mem" -smp "$smp" \
    -nographic -no-reboot -nodefaults -serial stdio \
    -device isa-debug-exit,iobase=0x501,iosize=2 $disk_args \
    -kernel "$here/build/guest.elf" -append "$*"
rc=$?
case $rc in
124|137) echo "run-qemu: timed out" >&2; exit 124 ;;
0) echo "run-qemu: guest did not use the debug-exit port" >&2; exit 126 ;;
esac
if [ $((rc & 1)) -eq 1 ]; then exit $((rc >> 1)); fi
echo "run-qemu: qemu failed (exit $rc)" >&2
exit 125
