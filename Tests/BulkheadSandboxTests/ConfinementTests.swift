import BulkheadSandbox
import BulkheadSystem
import Foundation
import Testing

/// A probe domain idling in its sandbox, inspected from outside through /proc as the core
/// would see it.
@Suite("Spawned domain: namespaces, identity, fds", .enabled(if: ProbeHarness.canRun, ProbeHarness.skipReason))
struct ConfinementTests {
    /// A probe that reported `ready` and waits for fd 4 to close.
    struct IdleProbe: ~Copyable {
        let domain: SpawnedDomain
        let report: FileDescriptor
        let hold: Int32
        let ready: String
        let fds: [Int32]

        /// Lets the probe finish (end of file on its fd 4) and returns how it ended.
        consuming func finish() throws -> (DomainTermination, String) {
            close(hold)
            let rest = ProbeHarness.read(report.rawValue)
            return (try domain.wait(), rest)
        }
    }

    /// Spawns `probe <id> idle` with the report pipe at 3, the hold pipe at 4, then `extra`.
    static func startIdle(id: String = "probe0", extra: [Int32] = [], arguments: [String] = []) throws -> IdleProbe {
        let (reportRead, reportWrite) = try ProbeHarness.pipe()
        let (holdRead, holdWrite) = try ProbeHarness.pipe()
        let report = FileDescriptor(owning: reportRead)
        let fds = [reportWrite, holdRead] + extra
        defer {
            close(reportWrite)
            close(holdRead)
        }
        let domain = try DomainProcess.spawn(
            executable: ProbeHarness.domainBinary, arguments: ["probe", id, "idle"] + arguments, fds: fds)
        let ready = ProbeHarness.read(report.rawValue, stopAfterLine: true)
        return IdleProbe(domain: domain, report: report, hold: holdWrite, ready: ready, fds: fds)
    }

    @Test("new namespaces, uid 65534, no capabilities, no_new_privs, seccomp filter, empty root")
    func confined() throws {
        let memfd = try FileDescriptor.memfd(name: "probe-shared", size: 4096)
        let probe = try Self.startIdle(id: "blk7", extra: [memfd.rawValue])
        let pid = probe.domain.pid
        #expect(probe.ready.hasPrefix("BULKHEAD-PROBE idle ready hostname=blk7 pid=1 uid=65534 shared=ok"), "report: \(probe.ready)")

        for namespace in ["mnt", "pid", "ipc", "net", "uts", "cgroup"] {
            let ours = ProbeHarness.link("/proc/self/ns/\(namespace)")
            let theirs = ProbeHarness.link("/proc/\(pid)/ns/\(namespace)")
            #expect(ours != theirs, "\(namespace) namespace shared with the core: \(theirs)")
        }
        let status = try ProbeHarness.status(of: pid)
        #expect(status["Uid"] == "65534\t65534\t65534\t65534")
        #expect(status["Gid"] == "65534\t65534\t65534\t65534")
        #expect(status["Groups"] == "")
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            #expect(status[set] == "0000000000000000", "\(set) = \(status[set] ?? "missing")")
        }
        #expect(status["NoNewPrivs"] == "1")
        #expect(status["Seccomp"] == "2")
        #expect(status["NSpid"]?.hasSuffix("\t1") == true, "NSpid: \(status["NSpid"] ?? "missing")")

        // ps shows `bulkhead-domain probe blk7 idle`.
        let cmdline = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))
        #expect(String(decoding: cmdline, as: UTF8.self) == "bulkhead-domain\0probe\0blk7\0idle\0")

        // Its root is the empty tmpfs.
        let root = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root/")
        #expect(root.isEmpty, "root holds \(root)")
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        #expect(limits.contains { _ in true })
        let limitLines = limits.split(separator: "\n")
        #expect(limitLines.contains { $0.hasPrefix("Max open files") && $0.contains(" 64 ") }, "\(limits)")
        #expect(limitLines.contains { $0.hasPrefix("Max processes") && $0.contains(" 0 ") }, "\(limits)")
        #expect(limitLines.contains { $0.hasPrefix("Max core file size") && $0.contains(" 0 ") }, "\(limits)")
        #expect(limitLines.contains { $0.hasPrefix("Max data size") && $0.contains(" 268435456 ") }, "\(limits)")

        // Shared memory passed as an fd works: the probe wrote its magic into the memfd.
        let mapping = try MemoryMapping(sharing: memfd, length: 4096)
        #expect(mapping.base.load(as: UInt32.self) == 0x4275_6c6b)

        let (termination, rest) = try probe.finish()
        #expect(termination == .exited(status: 0), "report: \(rest)")
        #expect(rest.hasSuffix("BULKHEAD-PROBE idle done\n"), "report: \(rest)")
    }

    @Test("fds land at 3, 4, ... even when sources overlap targets, and nothing else leaks")
    func fileDescriptors() throws {
        // Pipes, so that every fd has its own identity (pipe:[inode]) in /proc.
        var ours: [Int32] = []
        for _ in 0..<6 {
            let (r, w) = try ProbeHarness.pipe()
            ours += [r, w]
        }
        defer { for fd in ours { close(fd) } }
        // Enough entries that every source number is also a target number: fd k goes to
        // 3 + i while another entry's source sits at 3 + i. Reversed, and repeated.
        let count = min(max(Int(ours.max()!) - 2, ours.count), DomainProcess.maximumFileDescriptors - 5)
        var extra: [Int32] = []
        while extra.count < count { extra += ours.reversed() }
        extra = Array(extra.prefix(count))
        // The report and hold pipes go to 3 and 4, these to 5...: some sources are targets.
        let targets = 3..<(5 + count)
        #expect(extra.contains { targets.contains(Int($0)) }, "no overlap exercised: \(extra)")

        // A non-close-on-exec fd of the core that is not passed must not leak either.
        let leaky = dup(ours[0])
        defer { close(leaky) }
        #expect(fcntl(leaky, F_GETFD) & FD_CLOEXEC == 0)

        let probe = try Self.startIdle(extra: extra, arguments: ["--no-seccomp"])
        let pid = probe.domain.pid
        #expect(probe.ready.hasPrefix("BULKHEAD-PROBE idle ready"), "report: \(probe.ready)")

        let listed = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap { Int32($0) }.sorted()
        #expect(listed == Array(0..<Int32(3 + probe.fds.count)), "fds in the domain: \(listed)")
        // 3 and 4: the other ends of our report and hold pipes (a pipe's ends share an inode).
        #expect(ProbeHarness.link("/proc/\(pid)/fd/3") == ProbeHarness.link("/proc/self/fd/\(probe.report.rawValue)"))
        #expect(ProbeHarness.link("/proc/\(pid)/fd/4") == ProbeHarness.link("/proc/self/fd/\(probe.hold)"))
        for (index, fd) in probe.fds.enumerated() where index >= 2 {
            let expected = ProbeHarness.link("/proc/self/fd/\(fd)")
            let actual = ProbeHarness.link("/proc/\(pid)/fd/\(3 + index)")
            #expect(actual == expected, "fd \(3 + index) should be our fd \(fd)")
        }
        #expect(ProbeHarness.link("/proc/\(pid)/fd/0") == "/dev/null")
        #expect(ProbeHarness.link("/proc/\(pid)/fd/1") == "/dev/null")
        #expect(ProbeHarness.link("/proc/\(pid)/fd/2") == ProbeHarness.link("/proc/self/fd/2"))
        // None of them close-on-exec bits matter after exec; the numbers are what counts.
        let (termination, _) = try probe.finish()
        #expect(termination == .exited(status: 0))
    }

    @Test("the domain dies with the thread that spawned it (PR_SET_PDEATHSIG)")
    func parentDeath() throws {
        final class Box: @unchecked Sendable {
            var pid: Int32 = 0, pidfd: Int32 = -1, hold: Int32 = -1, ready = "", error: String?
        }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            do {
                let (reportRead, reportWrite) = try ProbeHarness.pipe()
                let (holdRead, holdWrite) = try ProbeHarness.pipe()
                defer {
                    close(reportRead)
                    close(reportWrite)
                    close(holdRead)
                }
                let domain = try DomainProcess.spawn(
                    executable: ProbeHarness.domainBinary, arguments: ["probe", "orphan", "idle"],
                    fds: [reportWrite, holdRead])
                box.ready = ProbeHarness.read(reportRead, stopAfterLine: true)
                box.pid = domain.pid
                box.pidfd = dup(domain.pidfd.rawValue)  // outlives this thread
                box.hold = holdWrite  // kept open: only the thread's end can stop the probe
            } catch {
                box.error = "\(error)"
            }
        }
        thread.start()
        done.wait()
        defer { close(box.hold) }
        try #require(box.error == nil, "\(box.error ?? "")")
        #expect(box.ready.hasPrefix("BULKHEAD-PROBE idle ready"), "report: \(box.ready)")
        let domain = SpawnedDomain(pid: box.pid, pidfd: FileDescriptor(owning: box.pidfd))
        #expect(try domain.wait() == .signaled(signal: SIGKILL, coreDumped: false))
    }
}
