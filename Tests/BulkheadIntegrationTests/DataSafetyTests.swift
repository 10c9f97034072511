import BulkheadTestSupport
import Foundation
import Testing

/// Issue 6, data safety: the blk domain dies during storms of writes and flushes on a disk
/// opened `O_DIRECT` (`--disk PATH,cache=none`: no host page cache holds what the guest
/// believes written), and the host then checks, reading with O_DIRECT too, that every write
/// the guest saw complete before a flush that completed is on the file
/// (guest/workloads/blk_storm.c, guest/tools/check-blk-storm.py).
@Suite("data safety: kills during write/flush storms on an O_DIRECT disk", .serialized,
       .enabled(if: Checkout.hasKVM, "needs /dev/kvm (read-write); skipped"),
       .enabled(if: getuid() == 0, "needs root (namespaces, uid change); skipped"),
       .enabled(if: Checkout.hasGuest && Checkout.hasBulkhead, "needs guest/build/guest.elf and the bulkhead build"),
       .enabled(if: DirectIO.temporaryDirectoryHasIt,
                "the temporary directory's file system has no O_DIRECT; set TMPDIR elsewhere; skipped"))
struct DataSafetyTests {
    /// The blk domain is SIGKILLed 30 times at random moments of a 7 s storm (qd 32, a flush
    /// every 4 writes). The guest then reads every block back, and the host checks the file:
    /// each block holds exactly its last write.
    @Test("30 kills of the blk domain during a write/flush storm: every flushed write is on the file")
    func domainKills() throws {
        let disk = try TemporaryDisk(megabytes: 32)
        let run = try BackgroundRun([
            "run", "--kernel", Checkout.guest, "--disk", disk.path + ",cache=none",
            "--cmdline", "workload=blk-storm seconds=7 qd=32 flush_every=4 seed=11",
        ])
        let kills = Self.killDomain(of: run, times: 30, within: 6.5)
        let result = run.finish()
        #expect(kills >= 25, "only \(kills) kills landed before the storm ended")
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=ok") && line.contains("mismatches=0") && line.contains("io_errors=0"), "\(line)")
        let durable = try #require(line.value(of: "durable").flatMap(Int.init), "\(line)")
        #expect(durable > 1000, "the storm wrote only \(durable) blocks")
        let report = try #require(DomainReport(result.stderr, domain: "blk0"), "stderr: \(result.stderr)")
        #expect(report.restarts >= kills && !report.failed, "\(report.raw)")
        let check = try Self.check(disk, durable: durable, exact: true)
        #expect(check.status == 0, "host check: \(check.stdout)\(check.stderr)")
        print("data safety: \(kills) SIGKILLs during the storm; \(line.value(of: "writes") ?? "?") writes, "
              + "\(line.value(of: "flushes") ?? "?") flushes; \(check.stdout.trimmingCharacters(in: .whitespacesAndNewlines))")
    }

    /// The harder case: after killing the blk domain a few times, the whole VM (core and
    /// domains) is SIGKILLed mid-storm, so nothing gets to drain or flush. Every write that a
    /// flush the guest saw complete covered must still be on the file. Then one such block is
    /// zeroed on purpose and the check must name it: it can find a loss.
    @Test("SIGKILL of the whole VM mid-storm: every write a completed flush covered is on the file")
    func wholeVMKilled() throws {
        let disk = try TemporaryDisk(megabytes: 32)
        let seed = 13
        let run = try BackgroundRun([
            "run", "--kernel", Checkout.guest, "--disk", disk.path + ",cache=none",
            "--cmdline", "workload=blk-storm seconds=60 qd=32 flush_every=4 report_ms=20 seed=\(seed)",
        ])
        let kills = Self.killDomain(of: run, times: 6, within: 2.5)
        usleep(UInt32.random(in: 200_000...1_500_000))
        // The last durable= line printed before the kill: the flush it reports has completed.
        let durable = try #require(Self.lastDurable(run.stdoutSoFar), "no durable= line: \(run.stdoutSoFar)")
        let domain = run.domain("blk0")
        let standby = run.domain("blk0-standby")
        kill(run.process.processIdentifier, SIGKILL)
        let result = run.finish()
        #expect(result.signaled, "the core was expected to die of SIGKILL")
        // The domains die with the core (PR_SET_PDEATHSIG); check only once they have.
        for pid in [domain, standby].compactMap({ $0 }) {
            #expect(Self.waitForExit(pid), "domain pid \(pid) still running 10 s after the core died")
        }
        #expect(durable > 500, "the storm made only \(durable) writes durable before the kill")
        let check = try Self.check(disk, durable: durable, exact: false, seed: seed)
        #expect(check.status == 0, "host check: \(check.stdout)\(check.stderr)")
        print("data safety: \(kills) domain SIGKILLs, then the whole VM at durable=\(durable): "
              + check.stdout.trimmingCharacters(in: .whitespacesAndNewlines))

        // The block of write number `durable` must hold it or a later write; erase it.
        let block = Self.stormBlock(seed: UInt64(seed), write: UInt64(durable), blocks: 32 << 20 / 4096)
        let fd = open(disk.path, O_WRONLY)
        try #require(fd >= 0)
        let zeros = [UInt8](repeating: 0, count: 4096)
        #expect(pwrite(fd, zeros, zeros.count, off_t(block * 4096)) == 4096)
        close(fd)
        let damaged = try Self.check(disk, durable: durable, exact: false, seed: seed)
        #expect(damaged.status == 1 && damaged.stdout.contains("block \(block) "), "\(damaged.stdout)\(damaged.stderr)")
    }

    /// Sequential reads and writes through the AIO path (`domains/blk/BlockAIO.swift`), with
    /// completions taken from the shared completion ring: blk-verify's sweeps (qd 32 of adjacent
    /// 4 KiB blocks) while the domain is SIGKILLed; the guest checks every block it reads back,
    /// the successor replays what was in flight, and the host finds the last pass on the file.
    @Test("sequential AIO reads and writes on an O_DIRECT disk, with kills: every block right, on the file too")
    func sequentialRequestsWithKills() throws {
        let disk = try TemporaryDisk(megabytes: 16)
        let run = try BackgroundRun([
            "run", "--kernel", Checkout.guest, "--disk", disk.path + ",cache=none",
            "--cmdline", "workload=blk-verify seconds=4 seed=5 qd=32",
        ])
        let kills = Self.killDomain(of: run, times: 12, within: 3.5)
        let result = run.finish()
        #expect(kills >= 8, "only \(kills) kills landed before the workload ended")
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=ok") && line.contains("mismatches=0") && line.contains("io_errors=0"), "\(line)")
        let report = try #require(DomainReport(result.stderr, domain: "blk0"), "stderr: \(result.stderr)")
        #expect(report.restarts >= kills && !report.failed, "\(report.raw)")
        let passes = try #require(line.value(of: "passes").flatMap(Int.init), "\(line)")
        try disk.expectGuestData(seed: 5, pass: passes)
    }

    /// SIGKILLs the serving blk domain `times` times at random moments within `seconds`;
    /// returns how many kills landed.
    static func killDomain(of run: BackgroundRun, times: Int, within seconds: Double) -> Int {
        var killed = Set<Int32>()
        let interval = seconds / Double(times) * 0.8  // leaves slack for a loaded machine
        let deadline = Date().addingTimeInterval(seconds)
        _ = run.waitForDomain("blk0")
        while killed.count < times && Date() < deadline && run.isRunning {
            usleep(UInt32(Double.random(in: 0.5...1.5) * interval * 1_000_000))
            // Count each process once: a killed domain keeps its comm until it is reaped.
            if let pid = run.domain("blk0"), !killed.contains(pid), kill(pid, SIGKILL) == 0 { killed.insert(pid) }
        }
        return killed.count
    }

    static func lastDurable(_ stdout: String) -> Int? {
        stdout.split(whereSeparator: \.isNewline).last(where: { $0.hasPrefix("guest: blk-storm durable=") })
            .flatMap { String($0).value(of: "durable") }.flatMap(Int.init)
    }

    /// True once `pid` is gone or a zombie (a zombie does no more I/O).
    static func waitForExit(_ pid: Int32) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
            if let close = stat.lastIndex(of: ")"), stat[close...].dropFirst(2).first == "Z" { return true }
            usleep(10_000)
        }
        return false
    }

    static func check(_ disk: TemporaryDisk, durable: Int, exact: Bool, seed: Int = 11) throws -> ProcessResult {
        let checker = Checkout.root.appendingPathComponent("guest/tools/check-blk-storm.py").path
        return try runProcess("/usr/bin/env", ["python3", checker, disk.path, "--durable", "\(durable)", "--seed", "\(seed)"]
                              + (exact ? ["--exact"] : []))
    }

    /// blk-storm's block for write number `write` (guest/workloads/blk_storm.c).
    static func stormBlock(seed: UInt64, write: UInt64, blocks: UInt64) -> UInt64 {
        func mix64(_ value: UInt64) -> UInt64 {
            var z = (value ^ (value >> 30)) &* 0xbf58476d1ce4e5b9
            z = (z ^ (z >> 27)) &* 0x94d049bb133111eb
            return z ^ (z >> 31)
        }
        return mix64(seed ^ mix64(write)) % blocks
    }
}

enum DirectIO {
    /// O_DIRECT on x86-64 Linux (Swift's Glibc module does not export it).
    static let flag: Int32 = 0o40000

    static var temporaryDirectoryHasIt: Bool {
        guard let disk = try? TemporaryDisk(megabytes: 1) else { return false }
        let fd = open(disk.path, O_RDONLY | flag)
        if fd >= 0 { close(fd) }
        return fd >= 0
    }
}
