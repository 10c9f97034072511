#!/usr/bin/env python3
"""Bulkhead against QEMU in one run (issue 7): launch, disk, memory, network, recovery, control
path, with the same test guest (guest/build/guest.elf) under the same KVM.

Peers run one at a time (the bench machine has 2 cores), interleaved: for each workload every
peer runs once before the next workload starts, so drift on the machine hits all peers alike.
Every figure is the guest's own (`BULKHEAD-RESULT` line) unless the row says otherwise.

Prints one markdown summary table (figures, Bulkhead/QEMU ratio, the issue's target, met or
missed) followed by the detail tables, and writes it to every --output. Needs root (/dev/kvm,
network namespace for the NIC rows).
"""
import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, HERE)
import launch  # noqa: E402  (time_to_result)
import memory  # noqa: E402  (RSS/PSS per process and per mapping)
from memory import proc_tree  # noqa: E402

GUEST_MIB = 256


@contextlib.contextmanager
def tap_namespace(prefix):
    """A private network namespace with tap0 at 10.0.0.1/24 (the guest is 10.0.0.2), removed
    afterwards; yields its name."""
    ns = f"{prefix}{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for command in (["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"], ["ip", "addr", "add", "10.0.0.1/24", "dev", "tap0"],
                        ["ip", "link", "set", "tap0", "up"], ["ip", "link", "set", "lo", "up"]):
            subprocess.run(["ip", "netns", "exec", ns] + command, check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns])


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def parse_result(text):
    for line in text.splitlines():
        if line.startswith("BULKHEAD-RESULT "):
            words = line.split()
            kv = {"workload": words[1]}
            for w in words[2:]:
                if "=" in w:
                    k, v = w.split("=", 1)
                    kv[k] = v
            return kv
    return None


# ---------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, a):
        self.a = a
        self.bh = a.bulkhead
        self.guest = a.guest
        self.disk = a.disk
        self.summary = []   # rows: (what, bulkhead, qemu, ratio, target, met)
        self.sections = []  # (title, markdown lines)
        self.notes = []
        self.rss = {}       # label -> {comm: memory.sample() at that process's peak RSS}
        self.load_at_start = os.getloadavg()

    # -- peers --
    def qemu(self, extra, cmdline, machine="microvm"):
        return ["qemu-system-x86_64", "-accel", "kvm", "-M", f"{machine},memory-backend=mem",
                "-object", f"memory-backend-memfd,id=mem,size={GUEST_MIB}M,share=on",
                "-cpu", "host,-arch-capabilities", "-m", f"{GUEST_MIB}M", "-smp", "1",
                "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
                "-device", "isa-debug-exit,iobase=0x501,iosize=2",
                "-global", "virtio-mmio.force-legacy=false",
                "-kernel", self.guest, "-append", cmdline] + extra

    def bulkhead(self, extra, cmdline):
        return [self.bh, "run", "--kernel", self.guest, "--memory", f"{GUEST_MIB}M", "--vcpus", "1",
                "--cmdline", cmdline] + extra

    def qsd_start(self, sock):
        try:
            os.unlink(sock)
        except FileNotFoundError:
            pass
        p = subprocess.Popen(["qemu-storage-daemon", "--blockdev",
                              f"driver=file,node-name=f0,filename={self.disk},cache.direct=on,aio=io_uring",
                              "--export", f"type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,"
                              f"addr.path={sock},writable=on"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(200):
            if os.path.exists(sock):
                return p
            time.sleep(0.01)
        p.kill()
        raise RuntimeError("qemu-storage-daemon did not create its socket: " + p.stderr.read().decode())

    def run_vm(self, argv, timeout=120, sample_rss=None, during=None, extra_pids=()):
        """Runs argv to its end; returns (result dict, stdout, stderr)."""
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        sampler = memory.Sampler(p.pid, extra_pids, guest_mib=GUEST_MIB) if sample_rss else None
        side = threading.Thread(target=during, args=(p,), daemon=True) if during else None
        if side:
            side.start()
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        if side:
            side.join()
        if sampler:
            self.rss[sample_rss] = sampler.finish()
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
        r = parse_result(out)
        if not r or r.get("status") != "ok":
            log(f"run failed (exit {p.returncode}): {' '.join(argv)[:200]}\n{out[-600:]}\n{err[-600:]}")
        return r, out, err

    def row(self, what, bh, q, ratio, target, met):
        self.summary.append((what, bh, q, ratio, target, met))

    # -- 1. launch --
    def launch_rows(self):
        runs = self.a.launch_runs
        peers = {
            "Bulkhead": self.bulkhead([], "workload=hello"),
            "QEMU": self.qemu([], "workload=hello"),
        }
        samples = {k: [] for k in peers}
        for argv in peers.values():
            launch.time_to_result(argv)  # warm-up (page cache), not counted
        for _ in range(runs):
            for k, argv in peers.items():
                samples[k].append(launch.time_to_result(argv) * 1000)
        med = {k: statistics.median(v) for k, v in samples.items()}
        ratio = med["Bulkhead"] / med["QEMU"]
        lines = ["| VMM | median ms | min ms | max ms |", "|---|---:|---:|---:|"]
        for k, v in samples.items():
            lines.append(f"| {k} | {med[k]:.1f} | {min(v):.1f} | {max(v):.1f} |")
        self.sections.append((f"Launch: process start to the guest's `hello` result line ({runs} runs each, interleaved; 256 MiB, 1 vCPU, no devices)", lines))
        self.row("Launch to `hello` (median ms)", f"{med['Bulkhead']:.1f}", f"{med['QEMU']:.1f}",
                 f"{ratio:.2f}×", "≤ 0.33×", ratio <= 0.33)

    # -- 2. disk --
    DISK_MODES = [
        ("randread 4k qd1", "mode=randread bs=4096 qd=1", "iops"),
        ("randread 4k qd32", "mode=randread bs=4096 qd=32", "iops"),
        ("randwrite 4k qd1", "mode=randwrite bs=4096 qd=1", "iops"),
        ("randwrite 4k qd32", "mode=randwrite bs=4096 qd=32", "iops"),
        ("read 1M qd8", "mode=read bs=1048576 qd=8", "mbps"),
        ("write 1M qd8", "mode=write bs=1048576 qd=8", "mbps"),
    ]

    def disk_peers(self):
        d = self.disk
        drive = lambda opts: ["-drive", f"id=d0,file={d},format=raw,if=none,{opts}",
                              "-device", "virtio-blk-device,drive=d0"]
        sock = "/tmp/bulkhead-bench-vub.sock"
        return [
            ("QEMU aio=threads cache=none", lambda c: (self.qemu(drive("cache=none,aio=threads"), c), None)),
            ("QEMU aio=io_uring cache=none", lambda c: (self.qemu(drive("cache=none,aio=io_uring"), c), None)),
            ("QEMU aio=threads cache=writeback", lambda c: (self.qemu(drive("cache=writeback,aio=threads"), c), None)),
            ("QEMU vhost-user-blk + qemu-storage-daemon (io_uring, O_DIRECT)",
             lambda c: (self.qemu(["-chardev", f"socket,id=c0,path={sock}", "-device", "vhost-user-blk,chardev=c0"], c),
                        self.qsd_start(sock))),
            ("Bulkhead blk domain", lambda c: (self.bulkhead(["--disk", d], c), None)),
            ("Bulkhead blk domain cache=none", lambda c: (self.bulkhead(["--disk", d + ",cache=none"], c), None)),
        ]

    def disk_rows(self):
        secs = self.a.seconds
        peers = self.disk_peers()
        modes = self.DISK_MODES
        # --disk-modes / --disk-peers: a quick look at a few rows; the full run measures all.
        if self.a.disk_modes:
            modes = [m for m in modes if any(w in m[0] for w in self.a.disk_modes.split(","))]
        if self.a.disk_peers:
            peers = [p for p in peers if any(w in p[0] for w in self.a.disk_peers.split(","))]
        repeat = max(1, self.a.disk_repeat)
        runs = {}  # (mode, peer) -> [result or None], one per repeat
        with open(self.disk, "rb") as f:  # page cache warm for the buffered peers, as in steady state
            while f.read(1 << 20):
                pass
        for label, args, metric in modes * repeat:
            for name, make in peers:
                # No peer inherits another's dirty pages: an O_DIRECT write over a dirty cached
                # page first writes that page back. Right after the page-cache peers (~1.5 M
                # buffered 4k writes), that cut the next O_DIRECT peer's randwrite qd32 from
                # ~90k to ~17k IOPS. The clean pages stay cached for the buffered peers.
                flush = os.open(self.disk, os.O_RDONLY)
                os.fsync(flush)
                os.close(flush)
                argv, qsd = make(f"workload=blk-bench {args} seconds={secs}")
                rss_label = None
                if label == "randread 4k qd32":
                    rss_label = f"disk: {name}"
                r, _, _ = self.run_vm(argv, sample_rss=rss_label, extra_pids=[qsd.pid] if qsd else ())
                if qsd:
                    qsd.terminate()
                    qsd.wait()
                ok = r if r and r.get("status") == "ok" else None
                runs.setdefault((label, name), []).append(ok)
                log(f"disk {label:18} {name:40} " + (f"iops={r['iops']} mbps={r['mbps']} p50={r['p50_us']}us"
                                                      if ok else "FAILED"))
        # Each cell: the run with the median figure (runs interleaved with the peers'), or
        # None when every run failed.
        res = {}
        metrics = {label: metric for label, _, metric in modes}
        for key, results in runs.items():
            good = sorted((r for r in results if r), key=lambda r: float(r[metrics[key[0]]]))
            res[key] = good[len(good) // 2] if good else None
        names = [n for n, _ in self.disk_peers()]  # the table's columns, run or not
        short = ["QEMU threads", "QEMU io_uring", "QEMU writeback", "QEMU vhost-user", "Bulkhead", "Bulkhead cache=none"]
        lines = ["| workload | " + " | ".join(short)
                 + " | Bulkhead cache=none / best QEMU cache=none | Bulkhead / QEMU writeback |",
                 "|---|" + "---:|" * (len(short) + 2)]
        for label, _, metric in modes:
            cells, vals = [], {}
            for n in names:
                r = res.get((label, n))
                if r:
                    vals[n] = float(r[metric])
                    cells.append(f"{r[metric]} ({r['p50_us']}/{r['p99_us']})")
                else:
                    cells.append("failed" if (label, n) in res else "–")
            bh = vals.get("Bulkhead blk domain")
            direct = vals.get("Bulkhead blk domain cache=none")
            best = max([vals[n] for n in names[:2] if n in vals] or [0])
            wb = vals.get(names[2])
            r1 = direct / best if direct and best else None
            r2 = bh / wb if bh and wb else None
            fmt = lambda x: f"{x:.2f}×" if x else "–"
            lines.append(f"| {label} ({metric}) | " + " | ".join(cells) + f" | {fmt(r1)} | {fmt(r2)} |")
            target = 1.2 if "qd32" in label and "4k" in label else 1.0
            # Like for like, as the issue names it: both sides O_DIRECT (cache=none).
            self.row(f"Disk {label} ({'IOPS' if metric == 'iops' else 'MB/s'}), cache=none both sides, "
                     f"vs best QEMU in-process (threads or io_uring)",
                     f"{direct:.0f}" if direct else "failed", f"{best:.0f}" if best else "failed",
                     f"{r1:.2f}×" if r1 else "–", f"≥ {target:.1f}×", bool(r1 and r1 >= target))
            self.row(f"Disk {label} ({'IOPS' if metric == 'iops' else 'MB/s'}), writeback both sides",
                     f"{bh:.0f}" if bh else "failed", f"{wb:.0f}" if wb else "failed",
                     f"{r2:.2f}×" if r2 else "–", "(no target)", None)
        self.sections.append((
            f"Disk: guest `blk-bench`, {secs} s per run, {repeat} round(s) of every peer interleaved, the median run "
            f"shown; one 256 MiB raw file on the same filesystem (written out, not sparse), 1 vCPU, 256 MiB guest; "
            f"cells: IOPS or MB/s (p50/p99 µs)", lines))

    # -- 3. network --
    def net_rows(self):
        with tap_namespace("bhbench") as ns:
            helpers = []
            try:
                tool = os.path.join(HERE, "../../guest/tools/net-host.py")
                sink_lines = []
                sink = subprocess.Popen(["ip", "netns", "exec", ns, "python3", tool, "sink", "--idle", "0.5"],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                flood = subprocess.Popen(["ip", "netns", "exec", ns, "python3", tool, "flood"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                helpers = [sink, flood]
                threading.Thread(target=lambda: [sink_lines.append(l) for l in sink.stdout], daemon=True).start()
                time.sleep(0.5)
                secs = self.a.seconds
                cmd = f"workload=net-bench seconds={secs}"
                peers = [
                    ("QEMU virtio-net (tap, vhost=off)",
                     self.qemu(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
                                "-device", "virtio-net-device,netdev=n0"], cmd)),
                    ("Bulkhead net domain", self.bulkhead(["--net", "tap=tap0"], cmd)),
                ]
                res = {n: [] for n, _ in peers}
                for rep in range(self.a.net_reps):
                    for name, argv in peers:
                        before = len(sink_lines)
                        r, _, _ = self.run_vm(["ip", "netns", "exec", ns] + argv,
                                              sample_rss=f"net: {name}" if rep == 0 else None)
                        time.sleep(1.0)  # the sink's summary line, 0.5 s after the burst
                        arrived = None
                        for l in sink_lines[before:]:
                            m = re.search(r"(\d+) pps ([\d.]+) Mbit/s", l)
                            if m:
                                arrived = (int(m.group(1)), float(m.group(2)))
                        if r and r.get("status") == "ok":
                            r["arrived"] = arrived
                            res[name].append(r)
                        log(f"net {name:34} " + (f"tx_pps={r['tx_pps']} rx_pps={r['rx_pps']} host-saw={arrived}"
                                                 if r else "FAILED"))
                med = lambda name, f: statistics.median(f(r) for r in res[name]) if res[name] else None
                fields = [("guest→host packets/s (sent by guest)", lambda r: float(r["tx_pps"])),
                          ("guest→host packets/s (arrived at host sink)", lambda r: float(r["arrived"][0]) if r["arrived"] else 0.0),
                          ("guest→host Mbit/s (sent)", lambda r: float(r["tx_mbps"])),
                          ("host→guest packets/s (received by guest)", lambda r: float(r["rx_pps"])),
                          ("host→guest Mbit/s (received)", lambda r: float(r["rx_mbps"]))]
                qn, bn = peers[0][0], peers[1][0]
                lines = ["| figure (median of runs) | QEMU | Bulkhead | Bulkhead / QEMU |", "|---|---:|---:|---:|"]
                for fname, f in fields:
                    q, b = med(qn, f), med(bn, f)
                    ratio = b / q if q and b is not None else None
                    lines.append(f"| {fname} | {q:.0f} | {b:.0f} | {ratio:.2f}× |" if ratio is not None
                                 else f"| {fname} | {q} | {b} | – |")
                    if "Mbit" in fname or "arrived" in fname or "received by" in fname:
                        self.row(f"Net {fname}", f"{b:.0f}" if b is not None else "failed",
                                 f"{q:.0f}" if q else "failed", f"{ratio:.2f}×" if ratio else "–", "≥ 1.0×",
                                 bool(ratio and ratio >= 1.0))
                self.sections.append((f"Network: guest `net-bench` (1024-byte UDP, {secs} s each way), tap0 in a private "
                                      f"namespace, `net-host.py sink/flood` on the host side, {self.a.net_reps} runs "
                                      f"each, interleaved", lines))
            finally:
                for h in helpers:
                    h.terminate()
                    h.wait()

    # -- 4. recovery --
    def recovery_rows(self):
        kills = self.a.kills
        # Bulkhead: SIGKILL the serving blk domain `kills` times during randread qd1.
        secs = max(4, kills // 5 + 3)

        def killer(p):
            time.sleep(1.0)
            n = 0
            while n < kills and p.poll() is None:
                for c in proc_tree(p.pid)[1:]:
                    try:
                        if open(f"/proc/{c}/comm").read().strip() == "blk0":
                            os.kill(c, signal.SIGKILL)
                            n += 1
                            break
                    except OSError:
                        pass
                time.sleep(0.15)
            killer.sent = n
        killer.sent = 0
        r, _, err = self.run_vm(self.bulkhead(["--disk", self.disk],
                                              f"workload=blk-bench mode=randread qd=1 seconds={secs}"), during=killer)
        m = re.search(r"recoveries=(\d+) recovery_ms_median=([\d.]+) recovery_ms_p99=([\d.]+)", err)
        bh_med = float(m.group(2)) if m else None
        bh_p99 = float(m.group(3)) if m else None
        bh_guest_max = float(r["max_us"]) / 1000 if r else None
        # QEMU: vhost-user-blk, qemu-storage-daemon SIGKILLed and restarted at once, reconnect=1.
        sock = "/tmp/bulkhead-bench-vub.sock"
        stalls = []
        for i in range(self.a.qemu_kills):
            state = {"qsd": self.qsd_start(sock)}

            def qkill(p):
                time.sleep(2.0)
                state["qsd"].kill()
                state["qsd"].wait()
                state["qsd"] = self.qsd_start(sock)
            argv = self.qemu(["-chardev", f"socket,id=c0,path={sock},reconnect=1",
                              "-device", "vhost-user-blk,chardev=c0"], "workload=blk-bench mode=randread qd=1 seconds=5")
            qr, _, _ = self.run_vm(argv, during=qkill)
            state["qsd"].terminate()
            state["qsd"].wait()
            if qr and qr.get("status") == "ok":
                stalls.append(float(qr["max_us"]) / 1000)
        q_med = statistics.median(stalls) if stalls else None
        lines = ["| | kills | I/O stall, median ms | p99 ms | worst stall the guest saw (blk-bench max_us) ms | I/O errors |",
                 "|---|---:|---:|---:|---:|---:|",
                 f"| Bulkhead (core: domain death → first completion by the next domain) | {killer.sent} | "
                 f"{bh_med} | {bh_p99} | {bh_guest_max} | {r.get('io_errors') if r else '–'} |",
                 f"| QEMU vhost-user-blk, qemu-storage-daemon SIGKILLed and restarted at once, `reconnect=1` | "
                 f"{len(stalls)} (one per run) | {q_med} | – | {max(stalls) if stalls else None} | – |"]
        self.sections.append(("Recovery: backend SIGKILLed during randread 4k qd1", lines))
        if bh_med and q_med:
            ratio = q_med / bh_med
            self.row("Recovery: I/O stall after a backend kill (median ms)", f"{bh_med:.2f}", f"{q_med:.0f}",
                     f"{ratio:.0f}× faster", "≥ 100× faster", ratio >= 100)
        if bh_guest_max and q_med:
            ratio = q_med / bh_guest_max
            self.row(f"Recovery: worst guest-visible stall over {killer.sent} kills vs QEMU median (ms)",
                     f"{bh_guest_max:.2f}", f"{q_med:.0f}", f"{ratio:.0f}× faster", "≥ 100× faster", ratio >= 100)

    # -- 5. memory (sampled during the disk and net runs) --
    def memory_rows(self):
        lines = ["| run | process | VmRSS KiB | RSS without guest RAM KiB | RssAnon | RssFile | RssShmem without guest RAM "
                 "| PSS without guest RAM KiB |",
                 "|---|---|---:|---:|---:|---:|---:|---:|"]
        for label, procs in self.rss.items():
            for comm, t in sorted(procs.items()):
                lines.append(f"| {label} | {comm} | {t['vmrss']} | **{t['rss']}** | {t['anon']} | {t['file']} | "
                             f"{t['shmem']} | {t['pss']} |")
        self.sections.append(("Memory: peak RSS per process during the runs (256 MiB guest; guest RAM = the shared "
                              "memfd mapping of ≥ 256 MiB, taken out with /proc/PID/smaps; QEMU's guest RAM is a "
                              "memfd too, `memory-backend-memfd,share=on`)", lines))
        mib = lambda v: f"{v / 1024:.1f}"
        bd = self.rss.get("disk: Bulkhead blk domain", {})
        bn = self.rss.get("net: Bulkhead net domain", {})
        qd = self.rss.get("disk: QEMU aio=io_uring cache=none", {})
        qn = self.rss.get("net: QEMU virtio-net (tap, vhost=off)", {})
        for what, procs, qemu in (("blk VM", bd, qd), ("net VM", bn, qn)):
            if "bulkhead" in procs:
                c, q = procs["bulkhead"], qemu.get("qemu-system-x86", {}).get("rss", 0)
                self.row(f"Memory: core RSS without guest RAM (MiB; PSS in brackets), {what}",
                         f"{mib(c['rss'])} ({mib(c['pss'])})", f"{mib(q)} (QEMU)" if q else "–",
                         f"{c['rss'] / q:.2f}×" if q else "–", "≤ 8 MiB RSS", c["rss"] <= 8 * 1024)
        for procs in (bd, bn):
            for comm, t in sorted(procs.items()):
                if comm != "bulkhead":
                    self.row(f"Memory: domain `{comm}` RSS (MiB; PSS in brackets)", f"{mib(t['rss'])} ({mib(t['pss'])})",
                             "–", "–", "≤ 4 MiB RSS", t["rss"] <= 4 * 1024)
        # Where the pages are: per mapping, for the core and one domain of each kind, and QEMU.
        body = []
        for label, procs, comms in (("disk: Bulkhead blk domain", bd, ("bulkhead", "blk0")), ("net: Bulkhead net domain", bn, ("net0",)),
                                    ("disk: QEMU aio=io_uring cache=none", qd, ("qemu-system-x86",))):
            for comm in comms:
                if comm in procs:
                    body += [f"{label}, " + memory.breakdown_lines(procs[comm], top=10)[0]] + memory.breakdown_lines(procs[comm], top=10)[1:] + [""]
        if body:
            self.sections.append(("Memory: where each process's RSS is, per mapped object (the peak sample above; "
                                  "`orchestration/bench/memory.py` prints the same for any command)", body[:-1]))

    # -- 6. control path --
    def control_rows(self):
        if not self.a.ping:
            self.notes.append("Control path: not measured in this run (no ping endpoint in this build).")
            return
        sock = f"/tmp/bulkhead-bench-{os.getpid()}.sock"
        result = {}

        def ping(p):
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            time.sleep(0.5)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(30)
            s.connect(sock)
            s.sendall(f"GET /domains/blk0/ping?count={self.a.ping} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
            result["body"] = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")
        self.run_vm(self.bulkhead(["--disk", self.disk, "--api-socket", sock],
                                  "workload=blk-bench mode=randread qd=1 seconds=4"), during=ping)
        try:
            j = json.loads(result["body"])
        except (KeyError, ValueError):
            self.notes.append(f"Control path: ping endpoint failed: {result.get('body', 'no answer')[:200]}")
            return
        self.sections.append(("Control path: `GET /domains/blk0/ping` (core → domain `Ping` on the control ring, "
                              "domain → core `Pong`), during randread qd1",
                              ["| messages | median µs | p99 µs | max µs |", "|---:|---:|---:|---:|",
                               f"| {j.get('count')} | {j.get('median_us')} | {j.get('p99_us')} | {j.get('max_us')} |"]))
        self.row("Control message round trip core→domain→core (median / p99 µs)",
                 f"{j.get('median_us')} / {j.get('p99_us')}", "–", "–", "(no target)", None)

    def register_rows(self):
        """A forwarded register access: the guest's `exits` workload reads an RTL8139 register
        back to back (rtl8139_pio_ns, with the core's own UART register as the yardstick), on
        Bulkhead (every access a message to the rtl8139 domain) and on QEMU's in-process RTL8139
        (-M pc). Bulkhead's core also reports the round trip exit → answer, and net-echo over the
        RTL8139 gives it for sparse accesses (the domain asleep between them)."""
        with tap_namespace("bhreg") as ns:
            echo = None
            try:
                peers = [
                    ("QEMU RTL8139 (-M pc, in process)",
                     self.qemu(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
                                "-device", "rtl8139,netdev=n0,romfile="], "workload=exits", machine="pc")),
                    ("Bulkhead RTL8139 (rtl8139 domain)", self.bulkhead(["--net", "tap=tap0,model=rtl8139"], "workload=exits")),
                ]
                res = {n: [] for n, _ in peers}
                core = []
                for _ in range(5):
                    for name, argv in peers:
                        r, _, err = self.run_vm(["ip", "netns", "exec", ns] + argv)
                        if r and r.get("status") == "ok" and "rtl8139_pio_ns" in r:
                            res[name].append(r)
                        m = re.search(r"register_rtt_us_median=([\d.]+) register_rtt_us_p99=([\d.]+)", err)
                        if m:
                            core.append((float(m.group(1)), float(m.group(2))))
                tool = os.path.join(HERE, "../../guest/tools/net-host.py")
                echo = subprocess.Popen(["ip", "netns", "exec", ns, "python3", tool, "echo", "--bind", "10.0.0.1", "--port", "7"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.3)
                _, _, err = self.run_vm(["ip", "netns", "exec", ns] + self.bulkhead(
                    ["--net", "tap=tap0,model=rtl8139"], "workload=net-echo nic=rtl8139 ip=10.0.0.2 peer=10.0.0.1 duration=3 rate=300"))
                sparse = re.search(r"register_accesses=(\d+) register_rtt_us_median=([\d.]+) register_rtt_us_p99=([\d.]+)", err)
            finally:
                if echo:
                    echo.terminate()
                    echo.wait()
        med = lambda name, key: statistics.median(float(r[key]) / 1000 for r in res[name]) if res[name] else None
        qn, bn = peers[0][0], peers[1][0]
        lines = ["| µs per guest access (median of 5 runs) | QEMU | Bulkhead | Bulkhead / QEMU |", "|---|---:|---:|---:|"]
        for label, key in (("RTL8139 register read (inl IDR0), back to back", "rtl8139_pio_ns"),
                           ("UART register read (the VMM's own device, yardstick)", "uart_pio_ns")):
            q, b = med(qn, key), med(bn, key)
            lines.append(f"| {label} | {q:.1f} | {b:.1f} | {b / q:.2f}× |" if q and b else f"| {label} | {q} | {b} | – |")
        if core:
            lines.append(f"| Bulkhead core: exit → domain's answer, back to back (median / p99 of the runs' medians, p99s) "
                         f"| – | {statistics.median(c[0] for c in core):.1f} / {statistics.median(c[1] for c in core):.1f} | – |")
        if sparse:
            lines.append(f"| Bulkhead core: exit → answer, sparse (net-echo at 300/s, {sparse.group(1)} accesses; "
                         f"median / p99) | – | {sparse.group(2)} / {sparse.group(3)} | – |")
        self.sections.append(("Forwarded register access: the guest's `exits` workload on an RTL8139, 5 runs each, "
                              "interleaved; tap0 in a private namespace", lines))
        q, b = med(qn, "rtl8139_pio_ns"), med(bn, "rtl8139_pio_ns")
        self.row("Forwarded register read, guest-side µs (Bulkhead: to the rtl8139 domain and back; QEMU: in process)",
                 f"{b:.1f}" if b else "failed", f"{q:.1f}" if q else "failed",
                 f"{b / q:.2f}×" if b and q else "–", "(no target)", None)
        if sparse:
            self.row("Forwarded register access round trip in the core, sparse accesses (median / p99 µs)",
                     f"{sparse.group(2)} / {sparse.group(3)}", "–", "–", "(no target)", None)

    def executables(self):
        """The binaries whose pages the memory rows count: ours and QEMU's."""
        paths = [self.bh, os.path.join(os.path.dirname(self.bh), "bulkhead-domain")]
        for name in ("qemu-system-x86_64", "qemu-storage-daemon"):
            found = shutil.which(name)
            if found:
                paths.append(os.path.realpath(found))
        return paths

    # -- output --
    def table(self):
        load = os.getloadavg()
        lines = [f"# Bulkhead vs QEMU ({time.strftime('%Y-%m-%d %H:%M')} on {os.uname().nodename}, "
                 f"{os.cpu_count()} CPUs, {cpu_model()}, kernel {os.uname().release}, "
                 f"{qemu_version()})", "",
                 f"Load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in self.load_at_start)} at the start, "
                 f"{'/'.join(f'{x:.1f}' for x in load)} at the end: other work on the machine slows the timing "
                 f"rows of every peer alike (they run interleaved), not the memory rows.", "",
                 "| figure | Bulkhead | QEMU | Bulkhead/QEMU | target | met? |", "|---|---:|---:|---:|---|---|"]
        for what, bh, q, ratio, target, met in self.summary:
            mark = "–" if met is None else ("**met**" if met else "**missed**")
            lines.append(f"| {what} | {bh} | {q} | {ratio} | {target} | {mark} |")
        for title, body in self.sections:
            lines += ["", f"### {title}", ""] + body
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n" + READING


READING = """
### Reading these figures

- **Peers ran one at a time, interleaved** (each workload: every peer once, then the next
  workload): the machine has 2 cores, and each VMM keeps the guest's vCPU and its I/O thread
  (QEMU's main loop/iothread, Bulkhead's domain) busy at once.
- **Disk: two Bulkhead columns.** `Bulkhead` is the blk domain on the host page cache
  (`--disk PATH`, buffered `pread`/`pwrite`); with a 256 MiB file its figures are page-cache
  figures, compared with QEMU's `cache=writeback`. `Bulkhead cache=none` opens the file
  `O_DIRECT` (`--disk PATH,cache=none`), like QEMU's `cache=none` columns: that is the
  like-for-like comparison the targets are checked on. Bulkhead also avoids VM exits on the
  data path: its domain polls the available ring (50 µs before it sleeps) and the guest is told
  not to kick, while every QEMU kick is an ioeventfd exit (26–75 µs each on this PVM host).
  `blk-bench` does not flush, so no peer pays for `fdatasync`.
- **1 MiB requests**: the test guest submits each 1 MiB request as one data descriptor
  (bs up to 16 MiB is accepted); QEMU's seg_max of 126 is not reached.
- **Recovery, QEMU**: qemu-storage-daemon is SIGKILLed and restarted at once (it listens again
  within milliseconds), but QEMU only retries the vhost-user socket every `reconnect=1` second
  (the option's unit is seconds; 1 is the smallest), logs `vhost VQ 0 ring restore failed`,
  and the request in flight completes only after the guest's 1 s re-notify. So ~1 s is QEMU's
  floor here. The Bulkhead median is the core's death → first completion by the next domain
  (what `recovery.sh` measures); the second row is the worst request latency the guest saw
  over all the kills, which needs nothing from the core's clock.
- **Memory: the targets are checked against RSS** (what the issue names), without the
  guest-RAM mapping; PSS, in brackets, divides each shared page among the processes that map
  it. Release builds are static PIEs (Swift runtime, glibc and libstdc++ linked in; see
  `Package.swift`), so a process's RSS is the pages of its own binary it has touched, plus its
  anonymous memory. A domain shares its binary's pages with its standby and every other domain
  (hence PSS about half of RSS); the core's are its own (PSS = RSS). QEMU's PSS depends on which
  other processes on the machine map the same shared libraries at the time.
- **What limits it**: Linux maps a file's pages 64 KiB at a time (fault-around: touching one
  page maps its cached neighbours; `MADV_RANDOM` stops read-ahead but not fault-around, measured
  on this kernel). The code a domain really touches is ~1 MiB of its 4.9 MiB of text, and was
  spread over 3.1 MiB of it. Release links now put the input sections each process touches first
  (`.text.hot`, `.rodata.hot`, from `orchestration/link/*.ld`, which
  `orchestration/scripts/working-set.py` generates by running the workloads from a file system
  without read-ahead, where pagemap shows only the touched pages): 4.0 → 3.0 MiB for a blk
  domain, 8.2 → 6.4 MiB for the core. What is left of a domain's ~3 MiB: packed hot code 1.1,
  libswiftCore's `Swift.o` `.text` 0.95 (one 1.6 MB section: its touched functions, ~130 KiB,
  sit in 15 of its 25 windows and cannot be moved), read-only data 0.55, pointers relocated at
  start-up 0.2, heap, stack and the control region 0.2. In the core, swift-argument-parser's
  FoundationEssentials (its JSON help dump and a `LocalizedError` cast) adds ~1 MiB:
  relocated metadata, its protocol conformances that every dynamic cast scans, and
  `_FoundationCollections`, `_RegexParser`, `_StringProcessing` with them. malloc tuning (trim
  threshold, top pad, mmap threshold, one arena) changed a domain by 4 KiB: its heap is 72 KiB.
- **The binaries' page cache is dropped before the runs** (`posix_fadvise(DONTNEED)`, for
  QEMU's executables too), so that the first run reads them as from an installed binary. Right
  after the link the page cache holds the linker's writes as large folios, and touching one page
  of a large folio maps all of it: the same domain binary then measured 4.6 MiB instead of
  3.9 MiB on this kernel.
- **Control path**: the median is one control-ring round trip plus two thread wake-ups. The
  blk and net domains now look at their control ring after every batch of virtqueue work (they
  used to only when idle, so a busy queue starved it); what remains of the tail is the core's
  supervisor thread sharing 2 cores with the spinning vCPU and the serving domain.
"""


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def qemu_version():
    try:
        return subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "QEMU ?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bulkhead", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--disk", required=True, help="raw image (256 MiB), written out beforehand")
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--launch-runs", type=int, default=10)
    ap.add_argument("--net-reps", type=int, default=2)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--qemu-kills", type=int, default=3)
    ap.add_argument("--ping", type=int, default=0, help="control-path probe: Ping messages (0: skip)")
    ap.add_argument("--only", default="disk,launch,net,recovery,control,registers",
                    help="comma-separated sections, in this order")
    ap.add_argument("--disk-modes", default="",
                    help="disk: only the rows whose label contains one of these (comma-separated), e.g. 'write 1M,qd32'")
    ap.add_argument("--disk-peers", default="",
                    help="disk: only the peers whose name contains one of these, e.g. 'cache=none'")
    ap.add_argument("--disk-repeat", type=int, default=1, help="disk: run each row this many times, interleaved with the peers; the median counts")
    ap.add_argument("--output", action="append", default=[])
    a = ap.parse_args()
    b = Bench(a)
    # Every peer's executables are read afresh by their first exec (see memory.drop_page_cache).
    memory.drop_page_cache(b.executables())
    b.load_at_start = os.getloadavg()
    steps = {"launch": b.launch_rows, "disk": b.disk_rows, "net": b.net_rows,
             "recovery": b.recovery_rows, "control": b.control_rows, "registers": b.register_rows}
    for name in a.only.split(","):
        log(f"--- {name}")
        t0 = time.monotonic()
        try:
            steps[name]()
        except Exception as e:  # a broken section must not cost the others
            log(f"{name} failed: {e!r}")
            b.notes.append(f"{name}: failed in this run: {e!r}")
        log(f"--- {name} took {time.monotonic() - t0:.0f} s")
    b.memory_rows()
    text = b.table()
    print(text)
    for path in a.output:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
