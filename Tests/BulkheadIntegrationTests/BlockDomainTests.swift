import BulkheadTestSupport
import Foundation
import Testing

/// The virtio-blk driver domain under real KVM, real processes and real disk files: data
/// survives every way a domain can die, and the core restarts it without the guest noticing.
@Suite("virtio-blk driver domain", .serialized,
       .enabled(if: Checkout.hasKVM, "needs /dev/kvm (read-write); skipped"),
       .enabled(if: getuid() == 0, "needs root (namespaces, uid change); skipped"),
       .enabled(if: Checkout.hasGuest && Checkout.hasBulkhead, "needs guest/build/guest.elf and the bulkhead build"))
struct BlockDomainTests {
    @Test("blk-verify passes, and the host finds the guest's data on the disk file")
    func verify() throws {
        let disk = try TemporaryDisk(megabytes: 16)
        let result = try runProcess(Checkout.bulkhead, [
            "run", "--kernel", Checkout.guest, "--disk", disk.path, "--cmdline", "workload=blk-verify passes=2 seed=7",
        ])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=ok") && line.contains("mismatches=0") && line.contains("io_errors=0"), "\(line)")
        try disk.expectGuestData(seed: 7, pass: 2)
        #expect(result.stderr.contains("domain blk0 restarts=0 failed=no"), "stderr: \(result.stderr)")
    }

    @Test("the domain is its own sandboxed process, named after its device")
    func processIdentity() throws {
        let disk = try TemporaryDisk(megabytes: 8)
        let run = try BackgroundRun([
            "run", "--kernel", Checkout.guest, "--disk", disk.path, "--cmdline", "workload=blk-verify seconds=3",
        ])
        let domain = try #require(run.waitForDomain("blk0"), "no blk0 domain appeared")
        let cmdline = try String(contentsOfFile: "/proc/\(domain)/cmdline", encoding: .utf8)
        #expect(cmdline.split(separator: "\0") == ["bulkhead-domain", "blk", "blk0"])
        let status = try String(contentsOfFile: "/proc/\(domain)/status", encoding: .utf8)
        #expect(status.contains("NoNewPrivs:\t1"))
        #expect(status.contains("Seccomp:\t2"))
        #expect(status.contains("CapEff:\t0000000000000000"))
        #expect(status.contains("Uid:\t65534\t65534\t65534\t65534"))
        let mine = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")
        let theirs = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(domain)/ns/net")
        #expect(mine != theirs)
        let result = run.finish()
        #expect(result.status == 0, "stderr: \(result.stderr)")
    }

    /// The kill test: while blk-verify runs, the blk domain dies at random moments — SIGKILL
    /// (at least 50 times), SIGSTOP then SIGKILL, and segfaults from inside — and the guest
    /// still sees every block it wrote, with no I/O error.
    @Test("kill test: 50+ kills during blk-verify, no mismatch, no I/O error")
    func killTest() throws {
        let disk = try TemporaryDisk(megabytes: 16)
        let segfaults = [1.0, 2.5, 4.0]
        var arguments = ["run", "--kernel", Checkout.guest, "--disk", disk.path,
                         "--cmdline", "workload=blk-verify seconds=10 seed=3 qd=32"]
        for at in segfaults { arguments += ["--inject-fault", "blk0:segv@\(at)"] }
        let run = try BackgroundRun(arguments)
        var generator = SystemRandomNumberGenerator()
        var kills = 0
        var killed = Set<Int32>()
        var stops = 0
        let deadline = Date().addingTimeInterval(60)
        while kills < 55 && Date() < deadline && run.isRunning {
            usleep(UInt32.random(in: 20_000...90_000, using: &generator))
            guard let domain = run.domain("blk0") else { continue }
            if kills % 10 == 9 {
                // A stopped domain makes no progress; the core sees it die only when killed.
                kill(domain, SIGSTOP)
                usleep(30_000)
                stops += 1
            }
            // Count each process once: a killed domain keeps its comm until it is reaped.
            if !killed.contains(domain), kill(domain, SIGKILL) == 0 { killed.insert(domain); kills += 1 }
        }
        let result = run.finish()
        #expect(kills >= 50, "only \(kills) kills landed before the workload ended")
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=ok") && line.contains("mismatches=0") && line.contains("io_errors=0"), "\(line)")
        let report = try #require(DomainReport(result.stderr, domain: "blk0"), "stderr: \(result.stderr)")
        #expect(report.restarts >= kills + segfaults.count - 1)
        #expect(!report.failed)
        #expect(report.raw.contains("killed by SIGKILL"))
        #expect(report.raw.contains("killed by SIGSEGV"))
        let passes = try #require(line.value(of: "passes").flatMap(Int.init))
        try disk.expectGuestData(seed: 3, pass: passes)
        print("kill test: \(kills) SIGKILLs (\(stops) after SIGSTOP), \(segfaults.count) segfaults; \(report.raw)")
    }

    @Test("a domain that exits, sends garbage, or breaks its seccomp policy is restarted",
          arguments: [("exit", "exited with status 3"), ("corrupt-message", "protocol fault"),
                      ("seccomp", "seccomp violation (SIGSYS)"), ("segv", "killed by SIGSEGV")])
    func selfInflicted(kind: String, reason: String) throws {
        let disk = try TemporaryDisk(megabytes: 8)
        let result = try runProcess(Checkout.bulkhead, [
            "run", "--kernel", Checkout.guest, "--disk", disk.path, "--cmdline", "workload=blk-verify seconds=2 seed=5",
            "--inject-fault", "blk0:\(kind)@0.5", "--inject-fault", "blk0:\(kind)@1.2",
            // No watchdog kill of a domain a loaded machine starved of CPU for a second.
            "--watchdog-ms", "10000",
        ])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=ok") && line.contains("mismatches=0") && line.contains("io_errors=0"), "\(line)")
        let report = try #require(DomainReport(result.stderr, domain: "blk0"), "stderr: \(result.stderr)")
        #expect(report.count(startingWith: reason) == 2, "\(report.raw)")
        // The two injected faults and nothing else. (A restart more used to slip in, rarely: a
        // domain reading avail.idx torn while the guest moved it, `RingIndexTests`.) The domain's
        // own lines on stderr say why, should it happen again.
        let domainLines = result.stderr.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("bulkhead-domain:") }
        #expect(report.restarts == 2, "\(report.raw)\n\(domainLines.joined(separator: "\n"))")
        let passes = try #require(line.value(of: "passes").flatMap(Int.init))
        try disk.expectGuestData(seed: 5, pass: passes)
    }

    @Test("past its restart budget the device fails: the guest gets I/O errors and runs to its end")
    func budgetExhausted() throws {
        let disk = try TemporaryDisk(megabytes: 8)
        let result = try runProcess(Checkout.bulkhead, [
            "run", "--kernel", Checkout.guest, "--disk", disk.path, "--cmdline", "workload=blk-verify seconds=2",
            "--restart-budget", "2", "--inject-fault", "blk0:exit@0.3", "--inject-fault", "blk0:exit@0.6",
            "--inject-fault", "blk0:exit@0.9",
        ])
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=fail"), "\(line)")
        #expect((line.value(of: "io_errors").flatMap(Int.init) ?? 0) > 0, "\(line)")
        #expect(line.contains("mismatches=0"), "\(line)")
        #expect(result.status == 1, "the guest's own failure status, not a crash: \(result.stderr)")
        let report = try #require(DomainReport(result.stderr, domain: "blk0"), "stderr: \(result.stderr)")
        #expect(report.failed)
        #expect(result.stderr.contains("exceeded its restart budget"))
    }
}

/// A sparse disk image in the temporary directory, removed when the value goes away.
final class TemporaryDisk {
    let path: String

    init(megabytes: Int) throws {
        path = NSTemporaryDirectory() + "bulkhead-disk-\(UUID().uuidString).img"
        FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(megabytes) << 20)
        try handle.close()
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Re-checks every block the guest's blk-verify left, from the host, with the guest's own
    /// block format (guest/tools/check-blk-verify.py).
    func expectGuestData(seed: Int, pass: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let checker = Checkout.root.appendingPathComponent("guest/tools/check-blk-verify.py").path
        let check = try runProcess("/usr/bin/env", ["python3", checker, path, "--seed", "\(seed)", "--pass", "\(pass)"])
        #expect(check.status == 0, "host check of \(path): \(check.stdout)\(check.stderr)", sourceLocation: sourceLocation)
    }
}

/// `bulkhead run` in the background, for tests that act on it while it runs.
final class BackgroundRun: @unchecked Sendable {
    let process = Process()
    let out = Pipe(), err = Pipe()
    private var outData = Data(), errData = Data()
    private let group = DispatchGroup()
    private let lock = NSLock()

    /// Runs `executable` (default: `bulkhead`; the net tests run it through `ip netns exec`,
    /// which execs it in place, so the pid is still the core's).
    init(_ arguments: [String], executable: String = Checkout.bulkhead) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        try process.run()
        group.enter()
        DispatchQueue.global().async {
            while case let chunk = self.out.fileHandleForReading.availableData, !chunk.isEmpty {
                self.lock.withLock { self.outData.append(chunk) }
            }
            self.group.leave()
        }
        group.enter()
        DispatchQueue.global().async { self.errData = self.err.fileHandleForReading.readDataToEndOfFile(); self.group.leave() }
    }

    var isRunning: Bool { process.isRunning }

    /// What the VM printed on its serial console so far.
    var stdoutSoFar: String { lock.withLock { String(decoding: outData, as: UTF8.self) } }

    /// The pid of the child process serving `id` (its comm is the device id; a warm standby
    /// is `<id>-standby`).
    func domain(_ id: String) -> Int32? {
        let core = process.processIdentifier
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(core)/task") else { return nil }
        for task in tasks {
            guard let children = try? String(contentsOfFile: "/proc/\(core)/task/\(task)/children", encoding: .utf8) else { continue }
            for child in children.split(separator: " ").compactMap({ Int32($0) }) {
                let comm = (try? String(contentsOfFile: "/proc/\(child)/comm", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                if comm == id { return child }
            }
        }
        return nil
    }

    func waitForDomain(_ id: String, seconds: Double = 10) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let pid = domain(id) { return pid }
            usleep(10_000)
        }
        return nil
    }

    /// Waits (at most two minutes, then kills) and collects the output.
    func finish() -> ProcessResult {
        let deadline = Date().addingTimeInterval(120)
        var timedOut = false
        while process.isRunning {
            if Date() > deadline { timedOut = true; kill(process.processIdentifier, SIGKILL); break }
            usleep(10_000)
        }
        process.waitUntilExit()
        group.wait()
        return ProcessResult(status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                             stdout: stdoutSoFar, stderr: String(decoding: errData, as: UTF8.self),
                             timedOut: timedOut)
    }
}

/// The closing line `bulkhead run` prints for a domain: `bulkhead: domain blk0 restarts=...`.
struct DomainReport {
    let raw: String
    let restarts: Int
    let failed: Bool

    init?(_ stderr: String, domain: String) {
        guard let line = stderr.split(whereSeparator: \.isNewline).map(String.init)
            .last(where: { $0.hasPrefix("bulkhead: domain \(domain) ") }) else { return nil }
        raw = line
        guard let restarts = line.value(of: "restarts").flatMap(Int.init) else { return nil }
        self.restarts = restarts
        failed = line.value(of: "failed") == "yes"
    }

    /// How many exits had a reason starting with `prefix` (`reasons="a" x2,"b" x1`).
    func count(startingWith prefix: String) -> Int {
        guard let list = raw.range(of: " reasons=").map({ raw[$0.upperBound...] }) else { return 0 }
        var total = 0
        for entry in list.split(separator: ",\"") {
            let text = entry.hasPrefix("\"") ? entry.dropFirst() : entry
            guard text.hasPrefix(prefix), let times = text.range(of: "\" x", options: .backwards) else { continue }
            total += Int(text[times.upperBound...].prefix { $0.isNumber }) ?? 0
        }
        return total
    }
}

extension String {
    /// The value of `key=value` in a space-separated line.
    func value(of key: String) -> String? {
        split(separator: " ").first(where: { $0.hasPrefix(key + "=") }).map { String($0.dropFirst(key.count + 1)) }
    }
}
