#!/usr/bin/env python3
"""Measures which pages of `bulkhead` and `bulkhead-domain` the running processes really touch,
and writes the linker scripts that put those pages side by side (orchestration/link/*.ld).

Why: Linux maps a file's pages 64 KiB at a time (fault-around: a fault maps the cached pages of
the aligned 16-page window around it; MADV_RANDOM does not turn that off, it only stops
read-ahead). The code a domain runs is a few hundred KiB scattered over 5 MiB of text, so most of
its RSS was neighbours of the pages it uses. Placing the used input sections (functions, each
object's .text, .rodata) together in `.text.hot` and `.rodata.hot` leaves fewer windows to map.

How: the release binaries are linked with a map (-Map), copied onto a small ext4 file system on a
loop device whose read-ahead is 0, and their page cache is dropped. There a page fault reads only
the page it needs, so fault-around has no cached neighbours to map: /proc/PID/pagemap shows the
pages the process really touched. Each workload (blk and net VMs, their chaos scenarios, the
RTL8139, the API) runs alone, with the cache dropped before it; a page is attributed to every
input section it overlaps (page granularity: the next pass, linked with this pass's scripts, drops
what was only a neighbour). Sections are grouped by the set of workloads that touched them, the
most shared first, so that a blk domain does not map the net domain's windows.

    sudo orchestration/scripts/working-set.py [--passes 2]

Root: the loop device, KVM, network namespaces. Writes orchestration/link/bulkhead.ld and
orchestration/link/bulkhead-domain.ld and prints, per pass, how much of each binary each
workload touched. Patterns the linker finds no section for are ignored, so a stale script costs
memory, never a failed build; regenerate after changes that move much code (a new toolchain, a
new domain).
"""
import argparse
import bisect
import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, os.path.join(ROOT, "orchestration/bench"))
import memory  # noqa: E402
from bench import tap_namespace  # noqa: E402

PRODUCTS = ("bulkhead", "bulkhead-domain")
GUEST = os.path.join(ROOT, "guest/build/guest.elf")
NET_HOST = os.path.join(ROOT, "guest/tools/net-host.py")
EXAMPLES = os.path.join(ROOT, "orchestration/examples")
PAGE = 4096


def log(msg):
    print(f"working-set: {msg}", file=sys.stderr, flush=True)


# -- the binaries and their link maps --

def build(tmp):
    """Release build of each product with a link map; returns {product: (binary, map)}."""
    out = {}
    for product in PRODUCTS:
        path = os.path.join(tmp, f"{product}.map")
        subprocess.run(["swift", "build", "-c", "release", "--product", product, "-Xlinker", f"-Map={path}"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out[product] = path
    bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    return {p: (os.path.join(bin_dir, p), m) for p, m in out.items()}


MAP_LINE = re.compile(r"^ (\S+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+) (\S.*)$")


def input_sections(map_path):
    """[(address, size, section, object)] of the allocated input sections of .text and .rodata, by address."""
    out, pending, started = [], None, False
    with open(map_path, errors="replace") as f:
        for line in f:
            if not started:
                started = line.startswith("Linker script and memory map")
                continue
            m = MAP_LINE.match(line)
            if not m:
                s = line.strip()
                pending = s if line.startswith(" .") and " " not in s else None
                continue
            section = m.group(1) or pending
            pending = None
            addr, size, obj = int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip()
            if not section or not addr or not size or obj.startswith("*"):
                continue
            if kind_of(section):
                out.append((addr, size, section, obj))
    out.sort()
    return out


def kind_of(section):
    if section == ".text" or section.startswith(".text."):
        return "text"
    # Mergeable strings and constants are merged across objects; they stay where they are.
    if (section == ".rodata" or section.startswith(".rodata.")) and not re.match(r"\.rodata\.(str|cst)", section):
        return "rodata"
    return None


def file_pattern(obj):
    """The linker script's pattern for an input file: archive:member, or the last two path parts."""
    m = re.search(r"([^/]+\.a)\(([^)]+)\)$", obj)
    if m:
        return f"*{m.group(1)}:{m.group(2)}"
    return "*/" + "/".join(obj.split("/")[-2:])


# The standard library's Swift code is one 1.6 MB `.text` in libswiftCore.a(Swift.o) (only part of
# it has function sections): moving it would only move the problem.
def movable(section, obj):
    return not (section == ".text" and obj.endswith("libswiftCore.a(Swift.o)"))


# -- touched pages --

def resident_offsets(pid, binary_name):
    """File offsets of the pages of `binary_name` mapped in process `pid` (== addresses in the ELF: each
    PT_LOAD's offset equals its address)."""
    out = set()
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        with open(f"/proc/{pid}/pagemap", "rb") as pm:
            for line in maps:
                f = line.split()
                if len(f) < 6 or os.path.basename(f[5]) != binary_name:
                    continue
                lo, hi = (int(x, 16) for x in f[0].split("-"))
                off = int(f[2], 16)
                pm.seek(lo // PAGE * 8)
                data = pm.read((hi - lo) // PAGE * 8)
                for i in range(len(data) // 8):
                    if data[i * 8 + 7] & 0x80:  # bit 63: present
                        out.add(off + i * PAGE)
    except OSError:
        pass
    return out


class Watch:
    """Samples every process of a tree; unions the pages of each binary they map."""

    def __init__(self, pid):
        self.pid = pid
        self.pages = {p: set() for p in PRODUCTS}

    def sample(self):
        for p in memory.proc_tree(self.pid):
            for product in PRODUCTS:
                self.pages[product] |= resident_offsets(p, product)


def run_workload(argv, env, seconds_cap=60):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    watch = Watch(p.pid)
    deadline = time.monotonic() + seconds_cap
    while p.poll() is None and time.monotonic() < deadline:
        watch.sample()
        time.sleep(0.1)
    if p.poll() is None:
        p.kill()
    out = p.communicate()[0].decode(errors="replace")
    if "status=ok" not in out:
        log(f"workload did not end with status=ok: {' '.join(argv)[:160]}\n{out[-400:]}")
    return watch.pages


@contextlib.contextmanager
def no_readahead_fs(tmp):
    """An ext4 file system on a loop device with read_ahead_kb=0, mounted at tmp/fs."""
    img, mnt = os.path.join(tmp, "fs.img"), os.path.join(tmp, "fs")
    subprocess.run(["truncate", "-s", "160M", img], check=True)
    subprocess.run(["mkfs.ext4", "-q", img], check=True)
    dev = subprocess.run(["losetup", "-f", "--show", img], check=True, capture_output=True, text=True).stdout.strip()
    try:
        with open(f"/sys/block/{os.path.basename(dev)}/queue/read_ahead_kb", "w") as f:
            f.write("0")
        os.makedirs(mnt)
        subprocess.run(["mount", dev, mnt], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", mnt])
    finally:
        subprocess.run(["losetup", "-d", dev])


def workloads(bin_dir, disk):
    """(label, argv prefix for a namespace or None, argv, helpers) of each profiled workload."""
    bh = [os.path.join(bin_dir, "bulkhead")]
    vm = ["--kernel", GUEST, "--memory", "256M", "--vcpus", "1"]
    ex = lambda name: os.path.join(EXAMPLES, name)
    # The example spec, on this run's disk.
    spec = json.load(open(ex("blk-vm.json")))
    spec["disks"] = [{"path": disk}]
    blk_spec = os.path.join(os.path.dirname(disk), "blk-vm.json")
    with open(blk_spec, "w") as f:
        json.dump(spec, f)
    return [
        ("blk", None, bh + ["run"] + vm + ["--disk", disk, "--cmdline",
                                          "workload=blk-bench mode=randread bs=4096 qd=32 seconds=2"], ()),
        ("blk-direct", None, bh + ["run"] + vm + ["--disk", disk + ",cache=none", "--cmdline",
                                                 "workload=blk-bench mode=randwrite bs=4096 qd=32 seconds=2"], ()),
        ("blk-chaos", None, bh + ["chaos", "--config", blk_spec, "--scenario", ex("every-fault.chaos.json")], ()),
        ("net", "ns", bh + ["run"] + vm + ["--net", "tap=tap0", "--cmdline", "workload=net-bench seconds=2"],
         (["sink", "--idle", "0.5"], ["flood"])),
        ("net-chaos", "ns", bh + ["chaos", "--config", ex("net-vm.json"), "--scenario", ex("net-faults.chaos.json")],
         (["echo", "--bind", "10.0.0.1", "--port", "7"],)),
        ("rtl8139", "ns", bh + ["run"] + vm + ["--net", "tap=tap0,model=rtl8139", "--cmdline", "workload=exits"], ()),
        ("rtl8139-chaos", "ns", bh + ["chaos", "--config", ex("rtl8139-vm.json"), "--scenario", ex("net-faults.chaos.json")],
         (["echo", "--bind", "10.0.0.1", "--port", "7"],)),
    ]


def profile(binaries, tmp):
    """{product: {page offset: set of workload labels}}, measured on the read-ahead-free file system."""
    touched = {p: collections.defaultdict(set) for p in PRODUCTS}
    disk = os.path.join(tmp, "disk.img")
    subprocess.run(["dd", "if=/dev/zero", f"of={disk}", "bs=1M", "count=64", "status=none"], check=True)
    with no_readahead_fs(tmp) as fs:
        for product, (binary, _) in binaries.items():
            shutil.copy2(binary, os.path.join(fs, product))
        env = dict(os.environ, BULKHEAD_DOMAIN=os.path.join(fs, "bulkhead-domain"))
        runs = workloads(fs, disk)
        for label, ns, argv, helpers in runs:
            memory.drop_page_cache([os.path.join(fs, p) for p in PRODUCTS])
            if ns:
                with tap_namespace("bhws") as name:
                    procs = [subprocess.Popen(["ip", "netns", "exec", name, "python3", NET_HOST] + h,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for h in helpers]
                    time.sleep(0.3)
                    try:
                        pages = run_workload(["ip", "netns", "exec", name] + argv, env)
                    finally:
                        for h in procs:
                            h.kill()
                            h.wait()
            else:
                pages = run_workload(argv, env)
            for product in PRODUCTS:
                for off in pages[product]:
                    touched[product][off].add(label)
            log(f"  {label:14} " + "  ".join(f"{p} {len(pages[p]) * 4} KiB" for p in PRODUCTS))
    return touched


# -- the linker scripts --

def hot_sections(map_path, touched):
    """{kind: [(signature, address, pattern, section)]}: every movable input section that overlaps a
    touched page, with the set of workloads that touched it."""
    sections = input_sections(map_path)
    starts = [s[0] for s in sections]
    ends, m = [], 0
    for a, size, _, _ in sections:
        m = max(m, a + size)
        ends.append(m)
    hot = {}
    for off, labels in touched.items():
        i = bisect.bisect_right(starts, off + PAGE - 1) - 1
        while i >= 0 and ends[i] > off:
            a, size, section, obj = sections[i]
            if a + size > off and movable(section, obj):
                key = (file_pattern(obj), section)
                entry = hot.setdefault(key, [set(), a, kind_of(section)])
                entry[0] |= labels
            i -= 1
    out = {"text": [], "rodata": []}
    for (pattern, section), (labels, a, kind) in hot.items():
        out[kind].append((frozenset(labels), a, pattern, section))
    # The most shared first; then one group per workload set; address order inside a group.
    for kind in out:
        out[kind].sort(key=lambda e: (-len(e[0]), sorted(e[0]), e[1]))
    return out


def write_script(path, product, hot, toolchain, passes):
    with open(path, "w") as f:
        f.write(f"/* The working set of {product}, first: generated by orchestration/scripts/working-set.py\n"
                f"   ({passes} pass{'es' if passes > 1 else ''}, {toolchain}); do not edit by hand.\n"
                f"   The input sections the profiled workloads touched, grouped by the set of workloads that\n"
                f"   touched them, the most shared first. Added to the default script (INSERT), release only. */\n")
        # .text.hot goes before .text. .rodata.hot after .rodata, on a page of its own: Swift emits
        # its constant data with relocations in writable `.rodata` sections, so .rodata.hot is
        # writable and must start a segment of its own (the linker would otherwise make the
        # segment it shares a page with writable); .rodata, without them, stays read-only.
        for kind, name, where in (("text", ".text.hot", "BEFORE .text"), ("rodata", ".rodata.hot", "AFTER .rodata")):
            align = "  . = ALIGN(CONSTANT (MAXPAGESIZE));\n" if kind == "rodata" else ""
            f.write(f"SECTIONS\n{{\n{align}  {name} :\n  {{\n")
            # One line per run of sections of the same file within a group.
            lines = []
            for labels, _, pattern, section in hot.get(kind, ()):
                if lines and lines[-1][0] == labels and lines[-1][1] == pattern:
                    lines[-1][2].append(section)
                else:
                    lines.append((labels, pattern, [section]))
            group = None
            for labels, pattern, sections in lines:
                if labels != group:
                    group = labels
                    f.write(f"    /* {' '.join(sorted(labels))} */\n")
                f.write(f"    {pattern}({' '.join(sections)})\n")
            f.write(f"  }}\n}}\nINSERT {where};\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passes", type=int, default=2)
    a = ap.parse_args()
    toolchain = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    toolchain = re.sub(r"\s*\(.*", "", toolchain)
    os.makedirs(os.path.join(ROOT, "orchestration/link"), exist_ok=True)
    for product in PRODUCTS:  # Package.swift links with them: an empty one to start from
        path = os.path.join(ROOT, "orchestration/link", f"{product}.ld")
        if not os.path.exists(path):
            write_script(path, product, {}, toolchain, 0)
    for n in range(1, a.passes + 1):
        with tempfile.TemporaryDirectory(prefix="bulkhead-ws-") as tmp:
            log(f"pass {n}: building with link maps")
            binaries = build(tmp)
            log(f"pass {n}: profiling")
            touched = profile(binaries, tmp)
            for product, (_, map_path) in binaries.items():
                hot = hot_sections(map_path, touched[product])
                path = os.path.join(ROOT, "orchestration/link", f"{product}.ld")
                write_script(path, product, hot, toolchain, n)
                sizes = {k: sum(1 for _ in v) for k, v in hot.items()}
                log(f"pass {n}: {product}: {len(touched[product]) * 4} KiB touched, "
                    f"{sizes['text']} text and {sizes['rodata']} rodata sections -> {os.path.relpath(path, ROOT)}")
                # SwiftPM does not know the executables depend on the script: make the next build link them.
                os.unlink(binaries[product][0])


if __name__ == "__main__":
    main()
