#!/usr/bin/env python3
"""Launch time: from process start to the guest's `BULKHEAD-RESULT hello` line on stdout,
Bulkhead against QEMU microvm booting the same test guest under the same KVM, in one run.

Prints a markdown table (median, min, max over --runs runs, and the Bulkhead/QEMU ratio) and
writes it to --output.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def time_to_result(argv):
    """Seconds from spawning argv to reading a BULKHEAD-RESULT line; the process is then
    waited for (not timed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    elapsed = None
    line = b""
    for line in proc.stdout:
        if line.startswith(b"BULKHEAD-RESULT "):
            elapsed = time.perf_counter() - start
            break
    try:
        proc.stdout.read()
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if elapsed is None or b"status=ok" not in line:
        raise RuntimeError(f"no ok result line from {argv[0]} (exit {proc.returncode})")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bulkhead", required=True)
    parser.add_argument("--qemu", default="qemu-system-x86_64")
    parser.add_argument("--guest", required=True)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--output")
    args = parser.parse_args()

    cmdline = "workload=hello"
    peers = {
        "Bulkhead": [args.bulkhead, "run", "--kernel", args.guest, "--cmdline", cmdline,
                     "--memory", "256M", "--vcpus", "1"],
        "QEMU microvm": [args.qemu, "-accel", "kvm", "-M", "microvm", "-cpu", "host,-arch-capabilities",
                         "-m", "256M", "-smp", "1", "-nographic", "-no-reboot", "-nodefaults",
                         "-serial", "stdio", "-device", "isa-debug-exit,iobase=0x501,iosize=2",
                         "-kernel", args.guest, "-append", cmdline],
    }
    samples = {name: [] for name in peers}
    for name, argv in peers.items():  # one warm-up each: page cache, not measured
        time_to_result(argv)
    for _ in range(args.runs):  # interleaved, so drift on the machine hits both alike
        for name, argv in peers.items():
            samples[name].append(time_to_result(argv) * 1000)

    med = {name: statistics.median(values) for name, values in samples.items()}
    lines = [
        f"Launch to the guest's `hello` result line, {args.runs} runs each, interleaved "
        f"({os.uname().nodename}, {time.strftime('%Y-%m-%d')}):",
        "",
        "| VMM | median ms | min ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    for name, values in samples.items():
        lines.append(f"| {name} | {med[name]:.1f} | {min(values):.1f} | {max(values):.1f} |")
    ratio = med["Bulkhead"] / med["QEMU microvm"]
    lines += ["", f"Bulkhead / QEMU (median): **{ratio:.2f}×** (target ≤ 0.33×)"]
    table = "\n".join(lines)
    print(table)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as out:
            out.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
