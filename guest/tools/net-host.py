#!/usr/bin/env python3
"""Host side of the guest's net workloads (pure Python 3, run as root inside
the network namespace that holds the guest's tap device).

  net-host.py echo  [--bind 10.0.0.1] [--port 7] [--drop-every N] [--dup-every N] [--corrupt-every N]
        UDP echo service for workload=net-echo (runs until killed); the --*-every
        options inject faults so a test can check that the guest notices them.
  net-host.py sink  [--bind 10.0.0.1] [--port 9] [--idle 2]
        counts datagrams for net-bench's tx phase; prints a summary line after
        `--idle` seconds without traffic (following at least one datagram) or on
        SIGTERM/SIGINT, then keeps counting (one line per burst).
  net-host.py flood [--bind 10.0.0.1] [--port 5001] [--size 1024] [--max-seconds 60]
        waits for the guest's "BHNET-RX-START seconds=S size=N port=P" datagram on
        --port, then sends size-byte datagrams (u64 little-endian sequence number
        first) as fast as it can to the sender's address until "BHNET-RX-STOP"
        arrives or S+3 seconds pass; then waits for the next start (until killed).
  net-host.py badframes --ifname tap0 [--guest-ip 10.0.0.2] [--src-ip 10.0.0.1]
        sends malformed frames to the guest through an AF_PACKET socket and
        prints how many of each kind (the guest's MAC is taken from the
        neighbour table, so ping it first, or pass --guest-mac).
"""
import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import time


def udp_socket(bind, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):   # 33/32: SO_RCVBUFFORCE/SO_SNDBUFFORCE
        try:
            s.setsockopt(socket.SOL_SOCKET, force, 32 << 20)    # root: past net.core.[rw]mem_max
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, opt, 32 << 20)
    s.bind((bind, port))
    return s


def stop_on_signals():
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def cmd_echo(a):
    s = udp_socket(a.bind, a.port)
    stop_on_signals()
    n = 0
    print(f"net-host echo: listening on {a.bind}:{a.port}", flush=True)
    try:
        while True:
            data, addr = s.recvfrom(65536)
            n += 1
            if a.drop_every and n % a.drop_every == 0:
                continue
            if a.corrupt_every and n % a.corrupt_every == 0 and len(data) > 8:
                data = data[:-1] + bytes([data[-1] ^ 0x40])
            s.sendto(data, addr)
            if a.dup_every and n % a.dup_every == 0:
                s.sendto(data, addr)
    except KeyboardInterrupt:
        pass
    print(f"net-host echo: echoed {n} datagrams", flush=True)


def cmd_sink(a):
    s = udp_socket(a.bind, a.port)
    stop_on_signals()
    print(f"net-host sink: counting on {a.bind}:{a.port}", flush=True)
    n = nbytes = 0
    first = last = None
    maxseq = -1

    def report():
        if not n:
            return
        dt = max(last - first, 1e-9)
        print(f"net-host sink: {n} datagrams {nbytes} bytes in {dt:.3f} s: "
              f"{n / dt:.0f} pps {nbytes * 8 / dt / 1e6:.1f} Mbit/s; highest seq {maxseq} "
              f"({maxseq + 1 - n} not seen)", flush=True)

    s.settimeout(0.2)
    try:
        while True:
            try:
                data = s.recv(65536)
            except socket.timeout:
                if n and time.monotonic() - last >= a.idle:
                    report()
                    n = nbytes = 0
                    maxseq = -1
                continue
            now = time.monotonic()
            if not n:
                first = now
            last = now
            n += 1
            nbytes += len(data)
            if len(data) >= 8:
                maxseq = max(maxseq, struct.unpack_from("<Q", data)[0])
    except KeyboardInterrupt:
        report()


def cmd_flood(a):
    s = udp_socket(a.bind, a.port)
    stop_on_signals()
    print(f"net-host flood: waiting for BHNET-RX-START on {a.bind}:{a.port}", flush=True)
    try:
        while True:
            s.setblocking(True)
            data, addr = s.recvfrom(65536)
            if not data.startswith(b"BHNET-RX-START"):
                continue
            kv = dict(w.split(b"=", 1) for w in data.split()[1:] if b"=" in w)
            secs = float(kv.get(b"seconds", b"3"))
            size = int(kv.get(b"size", str(a.size).encode()))
            size = max(8, min(size, 1472))
            limit = min(secs + 3, a.max_seconds)
            payload = bytearray(size)
            seq = 0
            start = time.monotonic()
            s.setblocking(False)
            stopped = False
            while not stopped:
                for _ in range(256):
                    struct.pack_into("<Q", payload, 0, seq)
                    try:
                        s.sendto(payload, addr)
                        seq += 1
                    except (BlockingIOError, ENOBUFS_ERRORS):
                        pass
                while True:       # drain the start/stop messages the guest sends
                    try:
                        m = s.recv(65536)
                    except BlockingIOError:
                        break
                    if m.startswith(b"BHNET-RX-STOP"):
                        stopped = True
                if time.monotonic() - start >= limit:
                    break
            dt = time.monotonic() - start
            print(f"net-host flood: sent {seq} datagrams of {size} bytes to {addr[0]}:{addr[1]} in "
                  f"{dt:.3f} s ({seq / dt:.0f} pps){' (stopped by the guest)' if stopped else ''}",
                  flush=True)
    except KeyboardInterrupt:
        pass


ENOBUFS_ERRORS = OSError  # sendto on a full tap queue may fail with ENOBUFS


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def ip_header(src, dst, proto, payload_len, ident=1, total=None, ihl=5, version=4, frag=0x4000,
              good_csum=True):
    tot = total if total is not None else 20 + payload_len
    h = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, tot, ident, frag, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    c = csum(h)
    if not good_csum:
        c ^= 0x5a5a
    return h[:10] + struct.pack("!H", c) + h[12:]


def udp_packet(src, dst, sport, dport, data, ulen=None, good_csum=True):
    ulen_v = ulen if ulen is not None else 8 + len(data)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, 8 + len(data))
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    c = csum(pseudo + u) or 0xffff
    if not good_csum:
        c ^= 0x1234
    return struct.pack("!HHHH", sport, dport, ulen_v, c) + data


def mac_bytes(m):
    return bytes(int(x, 16) for x in m.split(":"))


def cmd_badframes(a):
    gmac = a.guest_mac
    if not gmac:
        out = subprocess.run(["ip", "neigh", "show", a.guest_ip, "dev", a.ifname],
                             capture_output=True, text=True).stdout.split()
        if "lladdr" not in out:
            sys.exit("net-host badframes: guest MAC unknown (ping the guest first or pass --guest-mac)")
        gmac = out[out.index("lladdr") + 1]
    with open(f"/sys/class/net/{a.ifname}/address") as f:
        hmac = f.read().strip()
    dst, src = mac_bytes(gmac), mac_bytes(hmac)
    eth = dst + src + b"\x08\x00"
    g, h = a.guest_ip, a.src_ip
    good_udp = udp_packet(h, g, 1234, 9999, b"x" * 32)
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"ping" * 8
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    bad_icmp = icmp[:2] + struct.pack("!H", csum(icmp) ^ 0x0101) + icmp[4:]
    kinds = {
        "runt_6": dst,
        "runt_13": eth[:13],
        "eth_only": eth,                                                          # IP shorter than 20
        "ip_short_10": eth + ip_header(h, g, 17, 0)[:10],
        "ip_version_6": eth + ip_header(h, g, 17, len(good_udp), version=6) + good_udp,
        "ip_ihl_3": eth + ip_header(h, g, 17, len(good_udp), ihl=3) + good_udp,
        "ip_ihl_15": eth + ip_header(h, g, 17, len(good_udp), ihl=15) + good_udp[:8],
        "ip_total_too_big": eth + ip_header(h, g, 17, len(good_udp), total=1400) + good_udp,
        "ip_total_too_small": eth + ip_header(h, g, 17, len(good_udp), total=12) + good_udp,
        "ip_bad_csum": eth + ip_header(h, g, 17, len(good_udp), good_csum=False) + good_udp,
        "udp_len_too_big": eth + ip_header(h, g, 17, len(good_udp)) + udp_packet(h, g, 1234, 9999, b"x" * 32, ulen=500),
        "udp_len_too_small": eth + ip_header(h, g, 17, len(good_udp)) + udp_packet(h, g, 1234, 9999, b"x" * 32, ulen=4),
        "udp_bad_csum": eth + ip_header(h, g, 17, len(good_udp)) + udp_packet(h, g, 1234, 9999, b"x" * 32, good_csum=False),
        "udp_truncated": eth + ip_header(h, g, 17, 4) + good_udp[:4],
        "icmp_bad_csum": eth + ip_header(h, g, 1, len(bad_icmp)) + bad_icmp,
        "icmp_short": eth + ip_header(h, g, 1, 4) + icmp[:4],
        "arp_short": dst + src + b"\x08\x06" + b"\x00\x01\x08\x00",
        "arp_bad_hlen": b"\xff" * 6 + src + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x800, 7, 4, 1) + b"\0" * 20,
        # dropped but not malformed:
        "fragment": eth + ip_header(h, g, 17, len(good_udp), frag=0x2000) + good_udp,
        "other_dst_ip": eth + ip_header(h, "10.0.0.77", 17, len(good_udp)) + good_udp,
        "other_dst_mac": b"\x02\x00\x00\x00\x00\x99" + src + b"\x08\x00" + ip_header(h, g, 17, len(good_udp)) + good_udp,
        "ipv6_ethertype": dst + src + b"\x86\xdd" + b"\0" * 60,
        "good_udp_no_port": eth + ip_header(h, g, 17, len(good_udp)) + good_udp,
        "good_ping": eth + ip_header(h, g, 1, len(icmp)) + icmp,
    }
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.ifname, 0))
    malformed = 0
    for name, frame in kinds.items():
        try:
            for _ in range(a.repeat):
                s.send(frame)
        except OSError as e:
            print(f"net-host badframes: {name}: not sent ({e})", flush=True)
            continue
        if name not in ("fragment", "other_dst_ip", "other_dst_mac", "ipv6_ethertype",
                        "good_udp_no_port", "good_ping"):
            malformed += a.repeat
        print(f"net-host badframes: {name}: {a.repeat} x {len(frame)} bytes", flush=True)
        time.sleep(0.01)
    print(f"net-host badframes: sent {malformed} malformed frames and "
          f"{6 * a.repeat} well-formed ones that the guest drops or answers", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo")
    e.add_argument("--bind", default="10.0.0.1")
    e.add_argument("--port", type=int, default=7)
    e.add_argument("--drop-every", type=int, default=0, help="fault injection: drop every Nth datagram")
    e.add_argument("--dup-every", type=int, default=0, help="fault injection: answer every Nth twice")
    e.add_argument("--corrupt-every", type=int, default=0, help="fault injection: flip a bit in every Nth")
    k = sub.add_parser("sink")
    k.add_argument("--bind", default="10.0.0.1")
    k.add_argument("--port", type=int, default=9)
    k.add_argument("--idle", type=float, default=2.0)
    f = sub.add_parser("flood")
    f.add_argument("--bind", default="10.0.0.1")
    f.add_argument("--port", type=int, default=5001)
    f.add_argument("--size", type=int, default=1024)
    f.add_argument("--max-seconds", type=float, default=60)
    b = sub.add_parser("badframes")
    b.add_argument("--ifname", default="tap0")
    b.add_argument("--guest-ip", default="10.0.0.2")
    b.add_argument("--src-ip", default="10.0.0.1")
    b.add_argument("--guest-mac")
    b.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    {"echo": cmd_echo, "sink": cmd_sink, "flood": cmd_flood, "badframes": cmd_badframes}[a.cmd](a)


if __name__ == "__main__":
    main()
