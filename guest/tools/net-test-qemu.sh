#!/bin/bash
# End-to-end test of the guest's NIC drivers and stack under QEMU with a tap
# device in a private network namespace (needs root, QEMU, python3, ping;
# socat only for the link-flap step). Creates the namespace $NETNS (default
# bhtest) with tap0 = 10.0.0.1/24 and removes it at the end; kills only the
# processes it started.
#   usage: guest/tools/net-test-qemu.sh [--nic virtio|rtl8139]   (exit 0 = every check passed)
#   --nic virtio  (default) QEMU microvm, virtio-net-device (virtio-mmio version 2)
#   --nic rtl8139 QEMU pc (SeaBIOS assigns the BARs), QEMU's RTL8139 on PCI, the guest
#                 run with nic=rtl8139; adds a check of workload=exits (rtl8139_pio_ns)
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
nic=virtio
while [ $# -gt 0 ]; do
    case "$1" in
    --nic) nic=${2:-}; shift 2 ;;
    --nic=*) nic=${1#--nic=}; shift ;;
    *) echo "usage: $0 [--nic virtio|rtl8139]" >&2; exit 2 ;;
    esac
done
case "$nic" in
virtio)
    machine=(-M microvm,acpi=off -global virtio-mmio.force-legacy=false)
    nicdev=(-device virtio-net-device,netdev=n0)
    extra= ;;
rtl8139)
    # romfile= : no iPXE option ROM (SeaBIOS would run it for nothing)
    machine=(-M pc)
    nicdev=(-device rtl8139,netdev=n0,mac=52:54:00:12:34:56,romfile=)
    extra=nic=rtl8139 ;;
*) echo "unknown --nic $nic (virtio or rtl8139)" >&2; exit 2 ;;
esac
echo "net-test-qemu: nic=$nic"
NETNS=${NETNS:-bhtest}
tmp=$(mktemp -d /tmp/bh-net-test.XXXXXX)
pids=()
fails=0

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del "$NETNS" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

check() {   # check <name> <condition-result 0/1> <detail>
    if [ "$2" = 0 ]; then echo "PASS $1: $3"; else echo "FAIL $1: $3"; fails=$((fails + 1)); fi
}

make -s -C "$here" || exit 125
if ip netns list | grep -qw "$NETNS"; then echo "netns $NETNS already exists" >&2; exit 2; fi
ip netns add "$NETNS" || exit 2
nsx() { ip netns exec "$NETNS" "$@"; }
nsx ip tuntap add dev tap0 mode tap
nsx ip addr add 10.0.0.1/24 dev tap0
nsx ip link set tap0 up
nsx ip link set lo up

host() {    # host <name> <net-host.py args...>: start a helper in the namespace
    local name=$1; shift
    # `ip netns exec` execs python3, so $! is the helper itself
    ip netns exec "$NETNS" python3 "$here/tools/net-host.py" "$@" > "$tmp/$name.log" 2>&1 &
    pids+=($!)
}
host echo echo
host sink sink
host flood flood
host faulty echo --port 7007 --drop-every 500 --dup-every 300 --corrupt-every 700
sleep 0.5

qemu() {    # qemu <logfile> <cmdline...>
    local log=$1; shift
    nsx timeout 120 qemu-system-x86_64 -accel kvm "${machine[@]}" -cpu host,-arch-capabilities \
        -m 256M -smp 1 -nographic -no-reboot -nodefaults -serial stdio \
        -monitor unix:"$tmp/mon.sock",server,nowait \
        -device isa-debug-exit,iobase=0x501,iosize=2 \
        -netdev tap,id=n0,ifname=tap0,script=no,downscript=no "${nicdev[@]}" \
        -kernel "$here/build/guest.elf" -append "$* $extra" > "$log" 2>&1
    echo $(( $? >> 1 ))
}
# the result line, and the RTL8139 driver's register counters
result() { grep -e '^BULKHEAD-RESULT' -e '^guest: rtl8139: capr_writes' "$1"; }
# Wait (up to 20 s) until net-echo has resolved the peer and starts sending: the
# pc machine's firmware takes a few seconds before the guest runs.
wait_ready() { for _ in $(seq 200); do grep -q '^guest: net-echo: ' "$1" 2>/dev/null && return; sleep 0.1; done; }
key() { grep '^BULKHEAD-RESULT' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# 1. net-echo
rc=$(qemu "$tmp/echo.out" workload=net-echo count=2000)
result "$tmp/echo.out"
check net-echo "$([ "$rc" = 0 ] && [ "$(key "$tmp/echo.out" received)" = 2000 ]; echo $?)" "exit $rc"

# 2. net-echo duration=10 with pings (20 at 10 ms, then a 2000-ping flood) and malformed frames
qemu "$tmp/dur.out" workload=net-echo duration=10 > "$tmp/dur.rc" &
qpid=$!
pids+=($qpid)
wait_ready "$tmp/dur.out"
sleep 0.5
nsx ping -c 20 -i 0.01 -W 1 10.0.0.2 > "$tmp/ping1.log" 2>&1
nsx ping -f -c 2000 -W 1 10.0.0.2 > "$tmp/ping2.log" 2>&1
nsx python3 "$here/tools/net-host.py" badframes --repeat 3 > "$tmp/bad.log" 2>&1
wait $qpid
rc=$(cat "$tmp/dur.rc")
result "$tmp/dur.out"
tail -1 "$tmp/bad.log"
p1=$(grep -o '[0-9]* received' "$tmp/ping1.log" | cut -d' ' -f1)
p2=$(grep -o '[0-9]* received' "$tmp/ping2.log" | cut -d' ' -f1)
echo "ping: ${p1:-0}/20 and ${p2:-0}/2000 replies"
check net-echo-duration "$([ "$rc" = 0 ]; echo $?)" "exit $rc"
check ping "$([ "${p1:-0}" = 20 ] && [ "${p2:-0}" -ge 1990 ] && [ "$(key "$tmp/dur.out" pings_answered)" -ge 2010 ]; echo $?)" \
    "replies ${p1:-0}/20 ${p2:-0}/2000, guest pings_answered=$(key "$tmp/dur.out" pings_answered)"
check malformed "$([ "$(key "$tmp/dur.out" malformed)" = 48 ]; echo $?)" "guest counted malformed=$(key "$tmp/dur.out" malformed) of 48 sent"

# 3. net-bench both ways
tap_rx() { nsx cat /sys/class/net/tap0/statistics/rx_packets; }   # frames the guest sent
rx0=$(tap_rx)
rc=$(qemu "$tmp/bench.out" workload=net-bench seconds=3)
rx1=$(tap_rx)
sleep 2.5      # the sink reports after 2 s idle
result "$tmp/bench.out"
grep 'net-host' "$tmp/sink.log" | tail -1
grep 'sent' "$tmp/flood.log" | tail -1
sunk=$(grep -o 'sink: [0-9]* datagrams' "$tmp/sink.log" | tail -1 | awk '{print $2}')
txp=$(key "$tmp/bench.out" tx_packets)
# A loaded host may drop datagrams in the sink's socket (UDP RcvbufErrors), which
# the guest cannot see; the tap interface counts every frame the guest sent.
echo "host UDP counters (InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors ...): $(nsx awk '/^Udp:/ {if (h) print; h=1}' /proc/net/snmp)"
echo "tap0 received $((rx1 - rx0)) frames from the guest during net-bench (tx_packets=$txp plus ARP/start/stop)"
check net-bench "$([ "$rc" = 0 ] && [ $((rx1 - rx0)) -ge "${txp:-1}" ] && [ $((rx1 - rx0)) -le $(( ${txp:-0} + 100 )) ] && [ "$(key "$tmp/bench.out" rx_packets)" -gt 0 ]; echo $?)" \
    "exit $rc, tap0 got $((rx1 - rx0)) frames for tx_packets=${txp:-0} (sink counted ${sunk:-0}), guest received $(key "$tmp/bench.out" rx_packets)"

# 4. link flap through the QEMU monitor
qemu "$tmp/flap.out" workload=net-echo duration=4 max_loss=50 > "$tmp/flap.rc" &
qpid=$!
pids+=($qpid)
wait_ready "$tmp/flap.out"
sleep 1
echo "set_link n0 off" | socat - UNIX-CONNECT:"$tmp/mon.sock" > /dev/null
sleep 0.5
echo "set_link n0 on" | socat - UNIX-CONNECT:"$tmp/mon.sock" > /dev/null
wait $qpid
result "$tmp/flap.out"
check link-flap "$([ "$(cat "$tmp/flap.rc")" = 0 ] && [ "$(key "$tmp/flap.out" link_down_seen)" = 1 ]; echo $?)" \
    "link_down_seen=$(key "$tmp/flap.out" link_down_seen)"

# 5. the guest notices what a faulty echo service does (3000 datagrams: drops 6,
#    answers 10 twice, corrupts 4; number 2100 is corrupted and doubled)
rc=$(qemu "$tmp/faulty.out" workload=net-echo count=3000 port=7007 timeout_ms=200)
result "$tmp/faulty.out"
check fault-detection "$([ "$rc" = 1 ] && [ "$(key "$tmp/faulty.out" corrupt)" = 5 ] && \
    [ "$(key "$tmp/faulty.out" duplicates)" = 7 ] && [ "$(key "$tmp/faulty.out" lost)" -ge 6 ]; echo $?)" \
    "exit $rc (want 1), corrupt=$(key "$tmp/faulty.out" corrupt) (5) duplicates=$(key "$tmp/faulty.out" duplicates) (7) lost=$(key "$tmp/faulty.out" lost) (6)"

# 6. rtl8139: the cost of one register access (a read of IDR0) seen from the guest
if [ "$nic" = rtl8139 ]; then
    rc=$(qemu "$tmp/exits.out" workload=exits)
    result "$tmp/exits.out"
    check exits "$([ "$rc" = 0 ] && [ -n "$(key "$tmp/exits.out" rtl8139_pio_ns)" ]; echo $?)" \
        "rtl8139_pio_ns=$(key "$tmp/exits.out" rtl8139_pio_ns)"
fi

echo "net-test-qemu: $fails failure(s)"
[ $fails = 0 ]
