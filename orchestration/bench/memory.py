#!/usr/bin/env python3
"""Where a process's resident memory is: /proc/PID/smaps grouped by what is mapped (each shared
object, the executable, the heap, anonymous mappings, memfds), with RSS, PSS and the anonymous
part of each, guest RAM left out (the shared memfd mapping of at least --guest-mib MiB that the
core and every virtio domain map).

As a command it runs a VM (or anything), samples its process tree every 0.25 s and prints, for
each process name (`bulkhead`, `blk0`, `blk0-standby`, ...), the breakdown at the moment its
RSS without guest RAM was highest:

    orchestration/bench/memory.py -- .build/release/bulkhead run --disk disk.img \\
        --cmdline "workload=blk-bench mode=randread bs=4096 qd=32 seconds=3"

bench.py imports it for its memory rows.
"""
import argparse
import os
import re
import subprocess
import sys
import threading

GUEST_MIB = 256
MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")


def proc_tree(pid):
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for c in f.read().split():
                    out += proc_tree(int(c))
    except OSError:
        pass
    return out


def object_name(path, perms):
    """The group a mapping counts under: a file's base name, or what the kernel calls it."""
    if not path:
        return "anonymous"
    if path.startswith("/memfd:"):
        return "memfd:" + path[len("/memfd:"):].replace(" (deleted)", "")
    if path.startswith("["):
        return path
    return os.path.basename(path.replace(" (deleted)", ""))


def mappings(pid, guest_mib=GUEST_MIB):
    """[(object, perms, size KiB, {Rss, Pss, Anonymous, ...} KiB, is guest RAM)] from smaps."""
    out = []
    with open(f"/proc/{pid}/smaps") as f:
        current = None
        for line in f:
            m = MAPPING.match(line)
            if m:
                lo, hi, perms, path = int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4).strip()
                is_guest = hi - lo >= guest_mib << 20 and perms[3] == "s" and path.startswith("/memfd:")
                current = (object_name(path, perms), perms, (hi - lo) >> 10, {}, is_guest)
                out.append(current)
            elif current is not None:
                k, _, v = line.partition(":")
                v = v.split()
                if len(v) == 2 and v[1] == "kB":
                    current[3][k] = int(v[0])
    return out


def sample(pid, guest_mib=GUEST_MIB):
    """One process: {comm, rss, pss, anon, file, shmem (all KiB, guest RAM excluded), by_object,
    vmrss, guest_rss} or None when it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        st = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    st[k] = int(v.split()[0])
        maps = mappings(pid, guest_mib)
    except (OSError, ValueError, IndexError):
        return None
    by = {}
    guest_rss = guest_pss = 0
    for name, perms, size, f, is_guest in maps:
        if is_guest:
            guest_rss += f.get("Rss", 0)
            guest_pss += f.get("Pss", 0)
            continue
        o = by.setdefault(name, {"rss": 0, "pss": 0, "anon": 0, "size": 0})
        o["rss"] += f.get("Rss", 0)
        o["pss"] += f.get("Pss", 0)
        # Anonymous: pages this process wrote (a file page it writes becomes its own copy:
        # relocated pointers, .data, .bss), the heap, stacks. The rest of a file mapping is the
        # file's page cache, shared with every process that maps the file.
        o["anon"] += f.get("Anonymous", 0)
        o["size"] += size
    rss = sum(o["rss"] for o in by.values())
    return {"pid": pid, "comm": comm, "vmrss": st.get("VmRSS", 0), "guest_rss": guest_rss,
            "rss": st.get("VmRSS", 0) - guest_rss, "smaps_rss": rss,
            "pss": sum(o["pss"] for o in by.values()),
            "anon": st.get("RssAnon", 0), "file": st.get("RssFile", 0),
            "shmem": st.get("RssShmem", 0) - guest_rss, "by_object": by}


def drop_page_cache(paths):
    """Writes back and drops the page cache of each file (none of them may be running), so that
    the next exec reads it as from an installed binary. Right after a link, the page cache holds
    the linker's writes, often as large folios, and a process touching one page of a large folio
    has the whole folio mapped: on kernel 6.18 that added 0.6 MiB to a domain's RSS."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


class Sampler:
    """Samples a process tree every `period` s; keeps, per comm, the sample with the highest RSS
    without guest RAM."""

    def __init__(self, pid, extra_pids=(), period=0.25, guest_mib=GUEST_MIB):
        self.pid, self.extra, self.period, self.guest_mib = pid, list(extra_pids), period, guest_mib
        self.peak = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(self.period):
            for p in proc_tree(self.pid) + self.extra:
                s = sample(p, self.guest_mib)
                if s and (s["comm"] not in self.peak or s["rss"] > self.peak[s["comm"]]["rss"]):
                    self.peak[s["comm"]] = s

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.peak


def breakdown_lines(s, top=12):
    """Markdown rows of one process's breakdown, largest RSS first; the rest summed in one row."""
    rows = sorted(s["by_object"].items(), key=lambda kv: -kv[1]["rss"])
    lines = [f"**{s['comm']}**: RSS {s['rss']} KiB without guest RAM (anonymous {s['anon']}, file {s['file']}, "
             f"shmem {s['shmem']}), PSS {s['pss']} KiB", "",
             "| mapped object | RSS KiB | file or shared pages | anonymous (written by this process) | PSS KiB |",
             "|---|---:|---:|---:|---:|"]
    rest = {"rss": 0, "pss": 0, "anon": 0, "n": 0}
    for i, (name, o) in enumerate(rows):
        if o["rss"] == 0:
            continue
        if i < top:
            lines.append(f"| {name} | {o['rss']} | {o['rss'] - o['anon']} | {o['anon']} | {o['pss']} |")
        else:
            for k in ("rss", "pss", "anon"):
                rest[k] += o[k]
            rest["n"] += 1
    if rest["n"]:
        lines.append(f"| {rest['n']} others | {rest['rss']} | {rest['rss'] - rest['anon']} | {rest['anon']} | {rest['pss']} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guest-mib", type=int, default=GUEST_MIB)
    ap.add_argument("--top", type=int, default=14)
    ap.add_argument("argv", nargs="+")
    a = ap.parse_args()
    p = subprocess.Popen(a.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    sampler = Sampler(p.pid, guest_mib=a.guest_mib)
    out, _ = p.communicate()
    peak = sampler.finish()
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("BULKHEAD-RESULT") or "error" in line:
            print(line)
    for comm, s in sorted(peak.items()):
        print()
        print("\n".join(breakdown_lines(s, a.top)))
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
