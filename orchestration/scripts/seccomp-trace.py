#!/usr/bin/env python3
"""Which system calls each driver domain kind makes once it is sandboxed, against its allowlist.

Runs real workloads with `strace -f` on the core (blk: blk-verify with flushes, blk-bench in four
modes, a read-only disk, every fault hook, a warm standby taking over after SIGKILL, SIGSTOP/
SIGCONT, control pings, shutdown; net: net-echo under a ping flood and malformed frames, every
fault hook, net-bench both ways; probe: the sandbox test suite), then for every domain process
takes the calls after its `seccomp(SECCOMP_SET_MODE_FILTER, ...) = 0` (the end of
`Sandbox.enter`: nothing before it needs to be allowed) and compares them, per domain kind, with
the allowlist in the Swift sources (`SeccompPolicy+*.swift`). It compares names; the arguments
that matter are shown as seen, and the lists' argument conditions are checked by the filter
itself during the runs (a call they refuse is an unexpected SIGSYS, reported as such).

Called by seccomp-trace.sh (which builds first). Root, /dev/kvm, strace, iproute2, python3.
Exit status 0 when every call seen is on the list (calls killed by SIGSYS on purpose, the
`seccomp` fault hook and the probe's forbidden attempts, are listed apart), 1 otherwise.
"""
import argparse
import collections
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

# The policy each domain kind loads (domains/main.swift → <Kind>Domain.main / SandboxProbe).
POLICY_OF_KIND = {"blk": "block", "net": "net", "rtl8139": "rtl8139", "probe": "probe"}
# A forbidden call a fault hook makes on purpose (VirtioDomainServer.inject, case .seccomp).
DELIBERATE_HOOK = re.compile(r'^openat\(AT_FDCWD, "/etc/passwd"')
# Probe attempts that must not die of SIGSYS (the others exist to be killed).
PROBE_CLEAN = {"idle", "fd-limit", "memory-limit", "crash", "exit"}

STRACE = ["strace", "-f", "-q", "-e", "trace=all", "-s", "96"]


def log(message):
    print(f"==> {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Driving workloads


def children(pid):
    found = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            found += [int(p) for p in open(task).read().split()]
        except OSError:
            pass
    return found


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return None


def api(path, method, target, body=None, timeout=30):
    """One HTTP request on the operator API's unix socket; returns (status, body)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(path)
        payload = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {target} HTTP/1.1\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        s.sendall(head.encode() + payload)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as error:
        return 0, str(error)
    finally:
        s.close()
    text = data.decode(errors="replace")
    try:
        return int(text.split(" ", 2)[1]), text.split("\r\n\r\n", 1)[-1]
    except (IndexError, ValueError):
        return 0, text


class Run:
    """`bulkhead run ARGS` under strace (inside `ip netns exec NS` for net runs)."""

    def __init__(self, ctx, name, args, netns=None):
        self.ctx, self.name = ctx, name
        self.trace = os.path.join(ctx.out, f"{name}.strace")
        self.socket = os.path.join(ctx.out, f"{name}.sock")
        command = STRACE + ["-o", self.trace, ctx.bulkhead, "run", "--kernel", ctx.guest,
                            "--api-socket", self.socket] + args
        if netns:
            command = ["ip", "netns", "exec", netns] + command
        self.stdout = open(os.path.join(ctx.out, f"{name}.stdout"), "w")
        self.stderr = open(os.path.join(ctx.out, f"{name}.stderr"), "w")
        log(f"{name}: {' '.join(args)}")
        self.process = subprocess.Popen(command, stdout=self.stdout, stderr=self.stderr, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        ctx.traces.append(self.trace)

    def domain(self, id):
        for pid in descendants(self.process.pid):
            if comm(pid) == id:
                return pid
        return None

    def wait_for_domain(self, id, seconds=30):
        deadline = time.time() + seconds
        while time.time() < deadline and self.process.poll() is None:
            pid = self.domain(id)
            if pid:
                return pid
            time.sleep(0.02)
        return None

    def wait_for_api(self, seconds=60):
        deadline = time.time() + seconds
        while time.time() < deadline and self.process.poll() is None:
            if os.path.exists(self.socket):
                return True
            time.sleep(0.05)
        return False

    def inject(self, domain, fault, argument=None, seconds=15):
        """Injects through the API, retrying while the domain is not serving (409)."""
        body = {"fault": fault}
        if argument is not None:
            body["argument"] = argument
        deadline = time.time() + seconds
        while time.time() < deadline and self.process.poll() is None:
            status, text = api(self.socket, "POST", f"/domains/{domain}/inject", body)
            if status == 202:
                log(f"{self.name}: injected {fault} into {domain}")
                return True
            time.sleep(0.1)
        log(f"{self.name}: could not inject {fault} into {domain}")
        return False

    def ping(self, domain, count=50):
        status, text = api(self.socket, "GET", f"/domains/{domain}/ping?count={count}")
        log(f"{self.name}: ping {domain} x{count}: {status} {text.strip()[:120]}")

    def signal(self, id, signum):
        pid = self.domain(id)
        if pid:
            os.kill(pid, signum)
            log(f"{self.name}: {signal.Signals(signum).name} → {id} (pid {pid})")
        return pid

    def stop_and_continue(self, id, seconds=0.3):
        pid = self.signal(id, signal.SIGSTOP)
        if pid:
            time.sleep(seconds)
            os.kill(pid, signal.SIGCONT)
            log(f"{self.name}: SIGCONT → {id} (pid {pid})")

    def finish(self, timeout=300):
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.stdout.close()
        self.stderr.close()
        out = open(self.stdout.name).read()
        err = open(self.stderr.name).read()
        results = [l for l in out.splitlines() if l.startswith("BULKHEAD-RESULT")]
        reports = [l for l in err.splitlines() if l.startswith("bulkhead: domain ")]
        summary = f"{self.name}: exit {self.process.returncode}; " + " | ".join(
            [r[:160] for r in results] + reports)
        self.ctx.summaries.append(summary)
        log(summary)


def every_fault(run, id, watchdog_seconds):
    """The control path and every fault hook, one after the other, on a serving domain. Each
    fault that ends the domain is followed by a wait for its successor (the warm standby)."""
    def replaced(action, seconds):
        before = run.wait_for_domain(id)
        action()
        deadline = time.time() + seconds
        while time.time() < deadline and run.process.poll() is None:
            now = run.domain(id)
            if now and now != before:
                return
            time.sleep(0.05)

    run.ping(id)
    run.inject(id, "slow", 200)
    time.sleep(0.5)
    run.inject(id, "slow", 0)
    run.stop_and_continue(id)                    # the interrupted poll resumes: restart_syscall
    run.stop_and_continue(f"{id}-standby")
    time.sleep(0.3)
    # Under strace, segv does not kill: a traced pid 1 stays unkillable, so the fault repeats
    # until the watchdog ends it. The calls made are the same (none: it is a wild write).
    for fault in ["crash", "segv", "corrupt-message", "exit", "seccomp", "hang"]:
        replaced(lambda: run.inject(id, fault), watchdog_seconds + 4.0)
    replaced(lambda: run.signal(id, signal.SIGKILL), 5.0)   # from outside, as an operator would
    run.ping(id)


def blk_scenarios(ctx):
    disk = os.path.join(ctx.out, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(16 << 20)
    # blk-verify with a flush per pass, all the faults, the standby, pings.
    run = Run(ctx, "blk-faults", ["--disk", disk, "--watchdog-ms", "1500", "--cmdline",
                                  "workload=blk-verify seconds=25 bytes=4194304 qd=32 flush=1 seed=9"])
    if run.wait_for_api() and run.wait_for_domain("blk0"):
        time.sleep(1.0)
        every_fault(run, "blk0", 1.5)
    run.finish()
    # blk-bench in every mode; a crash from the command line in one of them.
    for name, cmdline, extra in [
        ("blk-bench-randwrite", "workload=blk-bench mode=randwrite bs=4096 qd=16 seconds=2", ["--inject-fault", "blk0:crash@1.5"]),
        ("blk-bench-randread", "workload=blk-bench mode=randread bs=65536 qd=4 seconds=2 virtio_event_idx=0", []),
        ("blk-bench-write", "workload=blk-bench mode=write bs=1048576 qd=2 seconds=2", []),
        ("blk-bench-read", "workload=blk-bench mode=read bs=16384 qd=8 seconds=2", []),
    ]:
        run = Run(ctx, name, ["--disk", disk, "--cmdline", cmdline] + extra)
        run.finish()
    # cache=none: O_DIRECT, aligned requests through Linux AIO, flushes; a fresh zeroed disk,
    # as blk-storm's read-back expects.
    fresh = os.path.join(ctx.out, "direct.img")
    with open(fresh, "wb") as f:
        f.truncate(16 << 20)
    run = Run(ctx, "blk-direct-storm", ["--disk", fresh + ",cache=none", "--cmdline",
                                        "workload=blk-storm seconds=2 qd=32 bytes=4194304"])
    run.finish()
    # A read-only disk (the guest sees VIRTIO_BLK_F_RO and only reads).
    run = Run(ctx, "blk-readonly-bench", ["--disk", disk + ",readonly", "--cmdline", "workload=blk-bench mode=randread seconds=1"])
    run.finish()


class NetNamespace:
    def __init__(self, ctx, mtu=9000):
        self.name = f"bh-sctrace-{os.getpid()}"
        self.helpers = []
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        for command in (["ip", "link", "set", "lo", "up"], ["ip", "tuntap", "add", "tap0", "mode", "tap"],
                        ["ip", "link", "set", "tap0", "mtu", str(mtu)], ["ip", "addr", "add", "10.0.0.1/24", "dev", "tap0"],
                        ["ip", "link", "set", "tap0", "up"]):
            subprocess.run(["ip", "netns", "exec", self.name] + command, check=True)

    def start(self, command):
        process = subprocess.Popen(["ip", "netns", "exec", self.name] + command,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.helpers.append(process)
        return process

    def close(self):
        for process in self.helpers:
            if process.poll() is None:
                process.kill()
                process.wait()
        subprocess.run(["ip", "netns", "del", self.name])


PINGER = """
import os, socket, struct, sys, time
dst, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.setblocking(False)
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
for seq in range(count):
    body = struct.pack("!BBHHH", 8, 0, 0, os.getpid() & 0xffff, seq) + b"bulkhead" * 7
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    try: s.sendto(body, (dst, 0))
    except OSError: pass
    try:
        while True: s.recv(2048)
    except OSError: pass
    time.sleep(interval)
"""

INJECTOR = """
import os, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0))
bc = b"\\xff" * 6 + b"\\x02\\x00\\x00\\x00\\x00\\x01"
for frame in [b"\\xff" * 6, bc[:13], os.urandom(60), bc + os.urandom(1500),
              bc + b"\\x08\\x00" + os.urandom(2086), bc + b"\\x08\\x00" + os.urandom(9000)]:
    for _ in range(20):
        try: s.send(frame)
        except OSError: pass
"""


def nic_scenarios(ctx, label, net, nic_option=""):
    """net-echo under a ping flood and malformed frames, every fault, then net-bench, for one
    NIC model (`net`: the --net value; `nic_option`: the guest's driver choice)."""
    tool = os.path.join(ctx.root, "guest/tools/net-host.py")
    ns = NetNamespace(ctx)
    try:
        ns.start(["python3", tool, "echo", "--bind", "10.0.0.1", "--port", "7"])
        time.sleep(0.3)
        run = Run(ctx, f"{label}-faults", ["--net", net, "--watchdog-ms", "1500", "--cmdline",
                                           f"workload=net-echo {nic_option}ip=10.0.0.2 peer=10.0.0.1 duration=25 rate=300 max_loss=100"],
                  netns=ns.name)
        if run.wait_for_api() and run.wait_for_domain("net0"):
            ns.start(["python3", "-c", PINGER, "10.0.0.2", "3000", "0.01"])
            time.sleep(1.5)
            subprocess.run(["ip", "netns", "exec", ns.name, "python3", "-c", INJECTOR, "tap0"])
            every_fault(run, "net0", 1.5)
        run.finish()
        ns.start(["python3", tool, "sink", "--idle", "0.5"])
        ns.start(["python3", tool, "flood"])
        time.sleep(0.3)
        run = Run(ctx, f"{label}-bench", ["--net", net, "--cmdline",
                                          f"workload=net-bench {nic_option}seconds=2 ip=10.0.0.2 peer=10.0.0.1"], netns=ns.name)
        run.finish()
    finally:
        ns.close()


def net_scenarios(ctx):
    nic_scenarios(ctx, "net", "tap=tap0")


def rtl8139_scenarios(ctx):
    """The emulated NIC: register accesses outstanding at the deaths."""
    nic_scenarios(ctx, "rtl8139", "tap=tap0,model=rtl8139", "nic=rtl8139 ")


def probe_scenarios(ctx):
    """The probe domain exists for the sandbox tests: trace the suite itself. Not its `crash`
    attempt: a traced pid 1 is not killed by SIGSEGV, it faults forever (and the attempt makes no
    call after the boundary that the other attempts do not make)."""
    trace = os.path.join(ctx.out, "probe-tests.strace")
    log("probe: swift test --skip-build --filter BulkheadSandboxTests --skip ProbeAttemptTests/crash")
    with open(os.path.join(ctx.out, "probe-tests.stdout"), "w") as out:
        process = subprocess.Popen(STRACE + ["-o", trace, "swift", "test", "--skip-build", "--no-parallel",
                                             "--filter", "BulkheadSandboxTests", "--skip", r"ProbeAttemptTests/crash\(\)"],
                                   cwd=ctx.root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = process.wait(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = "killed after 600 s"
    text = open(out.name).read()
    passed = [l for l in text.splitlines() if re.search(r"Test run with .* (passed|failed)", l)]
    ctx.summaries.append(f"probe (BulkheadSandboxTests under strace): exit {status}; {' | '.join(passed)}")
    ctx.traces.append(trace)


# ---------------------------------------------------------------------------------------------
# Reading traces


def split_args(text):
    """Top-level comma-separated arguments of an strace call line (after the opening paren)."""
    args, depth, current, quoted, escape = [], 0, "", False, False
    for ch in text:
        if quoted:
            current += ch
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            if depth == 0:
                args.append(current.strip())
                return args
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
            continue
        current += ch
    args.append(current.strip())
    return args


# Which arguments to show per call (0-based); the rest vary without meaning (addresses, lengths).
SHOWN_ARGS = {
    "read": [0], "write": [0], "close": [0], "pread64": [0], "pwrite64": [0], "readv": [0], "writev": [0],
    "fdatasync": [0], "fsync": [0], "lseek": [0, 2], "fallocate": [0, 1], "prctl": [0], "mmap": [2, 3, 4],
    "mprotect": [2], "madvise": [2], "futex": [1], "clock_gettime": [0], "clock_nanosleep": [0, 1],
    "eventfd2": [1], "poll": [1, 2], "munmap": [],
}


class Domain:
    def __init__(self, pid, argv):
        self.pid = pid
        self.argv = argv
        self.kind = argv[1] if len(argv) > 1 else "?"
        self.sandboxed = False
        self.calls = collections.Counter()
        self.args = collections.defaultdict(collections.Counter)
        self.last = None
        self.allowed_by_test = set()
        for i, a in enumerate(argv):
            if a == "--allow" and i + 1 < len(argv):
                self.allowed_by_test.add(argv[i + 1])
        self.what = argv[3] if self.kind == "probe" and len(argv) > 3 else None
        self.killed_by = None
        self.forbidden = None


def parse_trace(path, domains):
    pending = {}
    processes = {}
    line_re = re.compile(r"^(\d+) +(.*)$")
    call_re = re.compile(r"^([a-z_0-9]+)\((.*)$")
    resumed_re = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>(.*)$")
    with open(path, errors="replace") as f:
        for raw in f:
            m = line_re.match(raw.rstrip("\n"))
            if not m:
                continue
            pid, rest = int(m.group(1)), m.group(2)
            domain = processes.get(pid)
            if rest.startswith("+++ killed by "):
                if domain:
                    domain.killed_by = rest.split()[3]
                    if domain.killed_by == "SIGSYS" and domain.sandboxed and domain.last:
                        name, text = domain.last
                        domain.calls[name] -= 1
                        if domain.calls[name] == 0:
                            del domain.calls[name]
                        domain.forbidden = f"{name}({text}"[:100]
                continue
            if rest.startswith("---") or rest.startswith("+++"):
                continue
            full = None
            m = resumed_re.match(rest)
            if m:
                name = m.group(1)
                start = pending.pop(pid, (name, ""))[1]
                full = (name, start + m.group(2))
            else:
                m = call_re.match(rest)
                if not m:
                    continue
                name, text = m.group(1), m.group(2)
                if text.endswith("<unfinished ...>"):
                    text = text[: -len("<unfinished ...>")].rstrip()
                    pending[pid] = (name, text)
                    record(domain, name, text)
                    continue
                full = (name, text)
                record(domain, name, text)
            name, text = full
            if name == "execve" and re.search(r"\) += 0$", text):
                argv = re.search(r"^\"([^\"]*)\", \[(.*?)\]", text)
                if argv:
                    items = re.findall(r'"((?:[^"\\]|\\.)*)"', argv.group(2))
                    # The path too: DomainProcess.spawn names every child bulkhead-domain.
                    if argv.group(1).endswith("/bulkhead-domain") and len(items) > 1:
                        domain = Domain(pid, items)
                        processes[pid] = domain
                        domains.append(domain)
                    else:
                        processes.pop(pid, None)
            elif name == "seccomp" and domain and not domain.sandboxed:
                if "SECCOMP_SET_MODE_FILTER" in text and "{len=" in text and re.search(r"\) += 0$", text):
                    domain.sandboxed = True


def record(domain, name, text):
    if not domain or not domain.sandboxed:
        return
    domain.calls[name] += 1
    domain.last = (name, text)
    shown = SHOWN_ARGS.get(name)
    if shown:
        args = split_args(text)
        domain.args[name][", ".join(args[i] if i < len(args) else "?" for i in shown)] += 1


# ---------------------------------------------------------------------------------------------
# Reading the allowlists


def read_policies(root):
    """{policy name: (base policy name or None, [(syscall, comment)])} from the Swift sources."""
    files = glob.glob(os.path.join(root, "Sources/BulkheadSandbox/SeccompPolicy+*.swift"))
    files += glob.glob(os.path.join(root, "domains/**/SeccompPolicy+*.swift"), recursive=True)
    policies = {}
    for path in files:
        text = open(path).read()
        parts = re.split(r"static let (\w+)\s*=\s*", text)
        for i in range(1, len(parts), 2):
            name, body = parts[i], parts[i + 1]
            base = re.match(r"SeccompPolicy\.(\w+)\.adding", body)
            rules = re.findall(r'\.init\(\s*"([a-z0-9_]+)",\s*"((?:[^"\\]|\\.)*)"', body)
            policies[name] = (base.group(1) if base else None, rules)
    return policies


def allowlist(policies, name):
    """{syscall: [the lists that allow it (a call may be allowed on several fds)]}."""
    names = collections.defaultdict(list)
    while name:
        base, rules = policies[name]
        for syscall, _ in rules:
            if name not in names[syscall]:
                names[syscall].append(name)
        name = base
    return dict(names)


# ---------------------------------------------------------------------------------------------


def report(root, domains, kinds):
    policies = read_policies(root)
    problems = 0
    lines = []
    for kind in kinds:
        mine = [d for d in domains if d.kind == kind]
        sandboxed = [d for d in mine if d.sandboxed]
        policy = POLICY_OF_KIND[kind]
        allowed = allowlist(policies, policy)
        used = collections.Counter()
        args = collections.defaultdict(collections.Counter)
        let_through = collections.Counter()
        for d in sandboxed:
            for name, count in d.calls.items():
                if name in d.allowed_by_test and name not in allowed:
                    let_through[name] += count
                    continue
                used[name] += count
                args[name].update(d.args[name])
        deaths = collections.Counter(d.killed_by or "exited" for d in sandboxed)
        lines.append(f"\n## {kind} (policy `{policy}`): {len(mine)} processes, {len(sandboxed)} sandboxed; "
                     + ", ".join(f"{k}: {v}" for k, v in sorted(deaths.items())))
        lines.append("")
        lines.append("| syscall | calls | arguments seen (calls) | on the list (from) |")
        lines.append("|---|---:|---|---|")
        for name in sorted(set(used) | set(allowed)):
            shown = ", ".join(f"`{a}` ({c})" for a, c in args[name].most_common(6))
            source = ", ".join(allowed[name]) if name in allowed else "**NO**"
            lines.append(f"| {name} | {used.get(name, 0)} | {shown} | {source} |")
        unused = sorted(set(allowed) - set(used))
        missing = sorted(set(used) - set(allowed))
        lines.append("")
        lines.append(f"allowed, not seen: {', '.join(unused) or '(none)'}")
        lines.append(f"seen, not allowed: {', '.join(missing) or '(none)'}")
        if let_through:
            lines.append(f"let through by a test's --allow: {', '.join(f'{n} ({c})' for n, c in sorted(let_through.items()))}")
        killed = collections.Counter()
        unexpected = []
        for d in sandboxed:
            if d.killed_by != "SIGSYS":
                continue
            deliberate = (kind in ("blk", "net", "rtl8139") and d.forbidden and DELIBERATE_HOOK.match(d.forbidden)) or \
                         (kind == "probe" and d.what not in PROBE_CLEAN)
            if deliberate:
                killed[(d.forbidden or "?").split("(")[0]] += 1
            else:
                unexpected.append(f"pid {d.pid} {' '.join(d.argv[1:])}: {d.forbidden}")
        if killed:
            lines.append(f"killed by SIGSYS on purpose (fault hook `seccomp`, probe attempts): "
                         + ", ".join(f"{n} ({c})" for n, c in sorted(killed.items())))
        for u in unexpected:
            lines.append(f"UNEXPECTED SIGSYS: {u}")
        problems += len(missing) + len(unexpected)
        if not sandboxed:
            lines.append("NO sandboxed process of this kind was traced")
            problems += 1
    return problems, "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.path.abspath(os.path.join(os.path.dirname(__file__), "../..")))
    parser.add_argument("--bulkhead", help="the bulkhead binary (default: .build/debug/bulkhead)")
    parser.add_argument("--guest", help="the test guest (default: guest/build/guest.elf)")
    parser.add_argument("--out", help="where traces go (default: a new directory under /tmp)")
    parser.add_argument("--only", default="blk,net,rtl8139,probe", help="comma-separated: blk, net, rtl8139, probe")
    parser.add_argument("--analyze", nargs="*", metavar="TRACE", help="only read these traces (no runs)")
    a = parser.parse_args()

    class Context:
        pass

    ctx = Context()
    ctx.root = a.root
    ctx.bulkhead = a.bulkhead or os.path.join(a.root, ".build/debug/bulkhead")
    ctx.guest = a.guest or os.path.join(a.root, "guest/build/guest.elf")
    ctx.out = a.out or tempfile.mkdtemp(prefix="bulkhead-seccomp-trace-")
    os.makedirs(ctx.out, exist_ok=True)
    ctx.traces, ctx.summaries = [], []

    only = set(a.only.split(","))
    if a.analyze is not None:
        ctx.traces = a.analyze
    else:
        if "blk" in only:
            blk_scenarios(ctx)
        if "net" in only:
            net_scenarios(ctx)
        if "rtl8139" in only:
            rtl8139_scenarios(ctx)
        if "probe" in only:
            probe_scenarios(ctx)

    domains = []
    for trace in ctx.traces:
        parse_trace(trace, domains)
    kinds = [k for k in POLICY_OF_KIND if k in only] if a.analyze is None else \
        [k for k in POLICY_OF_KIND if any(d.kind == k for d in domains)]
    problems, text = report(ctx.root, domains, kinds)
    print(f"# seccomp trace ({time.strftime('%Y-%m-%d %H:%M')}, traces in {ctx.out})")
    if ctx.summaries:
        print("\nRuns:\n" + "\n".join(f"- {s}" for s in ctx.summaries))
    print(text)
    print(f"\n{'OK' if problems == 0 else f'{problems} PROBLEM(S)'}: "
          + ("every call made after the sandbox boundary is on its domain's list" if problems == 0
             else "calls made after the sandbox boundary that the list lacks (see above)"))
    return 0 if problems == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
