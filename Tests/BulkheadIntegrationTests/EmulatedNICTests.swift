import BulkheadTestSupport
import Foundation
import Testing

/// The emulated RTL8139 (`--net tap=IF,model=rtl8139`): a PCI NIC whose every register access
/// the core forwards to an `rtl8139` driver domain, under real KVM, real processes and a real
/// tap in a network namespace. The guest finds it by a PCI scan and drives it with its own
/// RTL8139 driver (the one QEMU's RTL8139 also runs, see guest/README.md).
@Suite("emulated RTL8139 driver domain", .serialized,
       .enabled(if: Checkout.hasKVM, "needs /dev/kvm (read-write); skipped"),
       .enabled(if: getuid() == 0, "needs root (network namespaces, tap devices); skipped"),
       .enabled(if: Checkout.which("ip") != nil, "needs iproute2's `ip`; skipped"),
       .enabled(if: Checkout.hasBulkhead, "needs the bulkhead build"),
       .enabled(if: NetNamespace.guestHasNetWorkloads, "needs guest/build/guest.elf with net-echo (make -C guest)"))
struct EmulatedNICTests {
    static let net = "tap=tap0,model=rtl8139"
    static let echo = "workload=net-echo nic=rtl8139 ip=10.0.0.2 peer=10.0.0.1"

    @Test("net-echo over the RTL8139; its domain is its own sandboxed process; register round trips are reported")
    func echoAndIdentity() throws {
        let namespace = try NetNamespace()
        try namespace.startEcho()
        let run = try namespace.bulkhead(["--cmdline", "\(Self.echo) duration=2 rate=200"], net: Self.net)
        let domain = try #require(run.waitForDomain("net0"), "no net0 domain appeared")
        let cmdline = try String(contentsOfFile: "/proc/\(domain)/cmdline", encoding: .utf8)
        #expect(cmdline.split(separator: "\0") == ["bulkhead-domain", "rtl8139", "net0"])
        let status = try String(contentsOfFile: "/proc/\(domain)/status", encoding: .utf8)
        #expect(status.contains("Seccomp:\t2") && status.contains("CapEff:\t0000000000000000"))
        let result = run.finish()
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("10ec:8139"), "no PCI scan line: \(result.stdout)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=ok") && line.contains("lost=0") && line.contains("corrupt=0"), "\(line)")
        let report = try #require(DomainReport(result.stderr, domain: "net0"), "stderr: \(result.stderr)")
        #expect(report.restarts == 0, "\(report.raw)")
        let accesses = report.raw.value(of: "register_accesses").flatMap(Int.init) ?? 0
        #expect(accesses > 100, "\(report.raw)")
        print("rtl8139 net-echo: \(line)\n\(report.raw)")
    }

    /// SIGKILL the domain 30 times while the guest echoes 500 datagrams a second and the host
    /// pings it: every register access a vCPU was waiting on is answered by the successor, the
    /// ring position and registers carry over in the device-state area, nothing is corrupt or
    /// duplicated; the loss is bounded by what the restarts cost.
    @Test("kill test: 30 SIGKILLs of the RTL8139 domain during net-echo and pings")
    func killTest() throws {
        let namespace = try NetNamespace()
        try namespace.startEcho()
        let run = try namespace.bulkhead(["--cmdline", "\(Self.echo) duration=8 rate=500 max_loss=2"], net: Self.net)
        #expect(run.waitForDomain("net0") != nil)
        let pinger = try namespace.startPing(count: 400, interval: 0.015, after: 0.5)
        var killed = Set<Int32>()
        let deadline = Date().addingTimeInterval(30)
        while killed.count < 30 && Date() < deadline && run.isRunning {
            usleep(UInt32.random(in: 60_000...200_000))
            if let domain = run.domain("net0"), !killed.contains(domain), kill(domain, SIGKILL) == 0 { killed.insert(domain) }
        }
        let result = run.finish()
        let ping = NetNamespace.PingResult(pinger.finish().stdout)
        #expect(killed.count >= 25, "only \(killed.count) kills landed before the workload ended")
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=ok") && line.contains("corrupt=0") && line.contains("duplicates=0"), "\(line)")
        let report = try #require(DomainReport(result.stderr, domain: "net0"), "stderr: \(result.stderr)")
        #expect(report.restarts >= killed.count && !report.failed, "\(report.raw)")
        #expect(ping.received >= ping.sent * 9 / 10, "ping: \(ping)")
        print("rtl8139 kill test: \(killed.count) SIGKILLs; \(line); ping \(ping)\n\(report.raw)")
    }

    @Test("the exits workload times a forwarded register read")
    func registerReadCost() throws {
        let namespace = try NetNamespace()
        let run = try namespace.bulkhead(["--cmdline", "workload=exits"], net: Self.net)
        let result = run.finish()
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        let nanoseconds = try #require(line.value(of: "rtl8139_pio_ns").flatMap(Double.init), "\(line)")
        #expect(nanoseconds > 0)
        print("forwarded register read seen from the guest: \(line)")
    }
}
