import BulkheadTestSupport
import Foundation
import Testing

/// The virtio-net driver domain under real KVM, real processes and a real tap device, each
/// test in its own network namespace (10.0.0.1/24 on the host side of `tap0`, the guest at
/// 10.0.0.2): frames flow both ways, the domain dies under traffic and the guest does not
/// notice, malformed frames from the host are counted drops, and a NIC past its restart
/// budget goes link down while the guest keeps running.
@Suite("virtio-net driver domain", .serialized,
       .enabled(if: Checkout.hasKVM, "needs /dev/kvm (read-write); skipped"),
       .enabled(if: getuid() == 0, "needs root (network namespaces, tap devices); skipped"),
       .enabled(if: Checkout.which("ip") != nil, "needs iproute2's `ip`; skipped"),
       .enabled(if: Checkout.hasBulkhead, "needs the bulkhead build"),
       .enabled(if: NetNamespace.guestHasNetWorkloads, "needs guest/build/guest.elf with net-echo (make -C guest)"))
struct NetDomainTests {
    static let echo = "workload=net-echo ip=10.0.0.2 peer=10.0.0.1"

    @Test("net-echo passes; the domain is its own sandboxed process, named after its device")
    func echoAndIdentity() throws {
        let namespace = try NetNamespace()
        try namespace.startEcho()
        let run = try namespace.bulkhead(["--cmdline", "\(Self.echo) duration=2 rate=500"])
        let domain = try #require(run.waitForDomain("net0"), "no net0 domain appeared")
        let cmdline = try String(contentsOfFile: "/proc/\(domain)/cmdline", encoding: .utf8)
        #expect(cmdline.split(separator: "\0") == ["bulkhead-domain", "net", "net0"])
        let status = try String(contentsOfFile: "/proc/\(domain)/status", encoding: .utf8)
        #expect(status.contains("Seccomp:\t2"))
        #expect(status.contains("CapEff:\t0000000000000000"))
        #expect(status.contains("Uid:\t65534\t65534\t65534\t65534"))
        let result = run.finish()
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=ok") && line.contains("lost=0") && line.contains("corrupt=0"), "\(line)")
        #expect(line.contains("link_down_seen=0"), "\(line)")
        #expect(result.stderr.contains("domain net0 restarts=0 failed=no"), "stderr: \(result.stderr)")
    }

    @Test("the guest answers pings from the host")
    func ping() throws {
        let namespace = try NetNamespace()
        try namespace.startEcho()
        let run = try namespace.bulkhead(["--cmdline", "\(Self.echo) duration=4 rate=200"])
        #expect(run.waitForDomain("net0") != nil)
        let ping = try namespace.ping(count: 50, interval: 0.02, after: 1)
        let result = run.finish()
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(ping.received >= 45, "ping: \(ping)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect((line.value(of: "pings_answered").flatMap(Int.init) ?? 0) >= 45, "\(line)")
    }

    /// The kill test: SIGKILL the net domain at least 50 times while the host floods the guest
    /// with pings every 10 ms and net-echo runs; the guest never sees the link go down, every
    /// echo is checked, and the loss is what the restarts cost.
    @Test("kill test: 50+ SIGKILLs during a ping flood and net-echo; link never down")
    func killTest() throws {
        let namespace = try NetNamespace()
        try namespace.startEcho()
        // 14 s: room for 60 kills even when the machine is loaded (48 landed in 10 s once).
        let run = try namespace.bulkhead(["--cmdline", "\(Self.echo) duration=14 rate=1000 max_loss=2"])
        #expect(run.waitForDomain("net0") != nil)
        let pinger = try namespace.startPing(count: 800, interval: 0.01)
        var generator = SystemRandomNumberGenerator()
        var kills = 0
        var killed = Set<Int32>()
        let deadline = Date().addingTimeInterval(60)
        while kills < 60 && Date() < deadline && run.isRunning {
            usleep(UInt32.random(in: 20_000...120_000, using: &generator))
            guard let domain = run.domain("net0") else { continue }
            // Count each process once: a killed domain keeps its comm until it is reaped.
            if !killed.contains(domain), kill(domain, SIGKILL) == 0 { killed.insert(domain); kills += 1 }
        }
        let result = run.finish()
        let ping = NetNamespace.PingResult(pinger.finish().stdout)
        #expect(kills >= 50, "only \(kills) kills landed before the workload ended")
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=ok") && line.contains("corrupt=0") && line.contains("duplicates=0"), "\(line)")
        #expect(line.contains("link_down_seen=0"), "\(line)")
        let report = try #require(DomainReport(result.stderr, domain: "net0"), "stderr: \(result.stderr)")
        #expect(report.restarts >= kills)
        #expect(!report.failed)
        #expect(ping.received > 0, "ping: \(ping)")
        print("net kill test: \(kills) SIGKILLs; net-echo sent=\(line.value(of: "sent") ?? "?") lost=\(line.value(of: "lost") ?? "?"); "
              + "ping \(ping); \(report.raw)")
    }

    @Test("runt, garbage and oversize frames from the host are counted drops, not crashes")
    func malformedFrames() throws {
        // A 9000-byte MTU lets the host send frames larger than the guest's 2 KiB buffers.
        let namespace = try NetNamespace(mtu: 9000)
        try namespace.startEcho()
        let run = try namespace.bulkhead(["--cmdline", "\(Self.echo) duration=4 rate=300"])
        #expect(run.waitForDomain("net0") != nil)
        usleep(1_500_000)
        let injected = try namespace.inject()
        let result = run.finish()
        #expect(injected.status == 0, "injector: \(injected.stdout)\(injected.stderr)")
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=ok") && line.contains("corrupt=0"), "\(line)")
        #expect(result.stderr.contains("domain net0 restarts=0 failed=no"), "stderr: \(result.stderr)")
        // The domain reports its drops (at most once a second): 2 oversize kinds x 20.
        let drops = result.stderr.split(whereSeparator: \.isNewline).last { $0.contains("net0: frames dropped:") }
        let oversize = drops.flatMap { String($0).value(of: "rx_oversize") }.flatMap(Int.init) ?? 0
        #expect(oversize == 40, "stderr: \(result.stderr)")
        print("malformed frames: \(injected.stdout.split(whereSeparator: \.isNewline).joined(separator: "; "))")
    }

    @Test("past its restart budget the NIC goes link down; the guest sees it and runs to its end")
    func budgetExhaustedLinkDown() throws {
        let namespace = try NetNamespace()
        try namespace.startEcho()
        let run = try namespace.bulkhead([
            "--cmdline", "\(Self.echo) duration=3 rate=200 timeout_ms=200", "--restart-budget", "1",
            "--inject-fault", "net0:exit@1.0", "--inject-fault", "net0:exit@1.4",
        ])
        let result = run.finish()
        let line = try #require(result.resultLines.first, "stdout: \(result.stdout)")
        #expect(line.contains("status=fail"), "\(line)")
        #expect((line.value(of: "link_down_seen").flatMap(Int.init) ?? 0) >= 1, "\(line)")
        #expect(result.status == 1, "the guest's own failure status, not a crash: \(result.stderr)")
        let report = try #require(DomainReport(result.stderr, domain: "net0"), "stderr: \(result.stderr)")
        #expect(report.failed)
    }
}

/// A network namespace of its own for one test, with `tap0` (10.0.0.1/24, up) in it; the VM,
/// the echo peer and the pinger run inside. Deleted, and the processes it started killed,
/// when the value goes away.
final class NetNamespace {
    let name: String
    private var started: [Process] = []
    private static let counter = Counter()

    static let ip = Checkout.which("ip") ?? "/usr/sbin/ip"
    static var guestHasNetWorkloads: Bool {
        guard let image = FileManager.default.contents(atPath: Checkout.guest) else { return false }
        return image.range(of: Data("net-echo".utf8)) != nil
    }

    init(mtu: Int = 1500) throws {
        name = "bh-net-\(getpid())-\(Self.counter.next())"
        try Self.must([Self.ip, "netns", "add", name])
        do {
            try exec(["ip", "link", "set", "lo", "up"])
            try exec(["ip", "tuntap", "add", "tap0", "mode", "tap"])
            try exec(["ip", "link", "set", "tap0", "mtu", "\(mtu)"])
            try exec(["ip", "addr", "add", "10.0.0.1/24", "dev", "tap0"])
            try exec(["ip", "link", "set", "tap0", "up"])
        } catch {
            _ = try? runProcess(Self.ip, ["netns", "del", name])
            throw error
        }
    }

    deinit {
        for process in started where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        _ = try? runProcess(Self.ip, ["netns", "del", name])
    }

    /// Runs a command inside the namespace to completion; throws when it fails.
    @discardableResult
    func exec(_ command: [String]) throws -> ProcessResult {
        try Self.must([Self.ip, "netns", "exec", name] + command)
    }

    /// `bulkhead run --net tap=tap0 ARGS` inside the namespace, in the background (`net`: the
    /// whole `--net` value, e.g. with `,model=rtl8139`).
    func bulkhead(_ arguments: [String], net: String = "tap=tap0") throws -> BackgroundRun {
        try BackgroundRun(["netns", "exec", name, Checkout.bulkhead, "run", "--kernel", Checkout.guest, "--net", net] + arguments,
                          executable: Self.ip)
    }

    /// The UDP echo peer (port 7) of net-echo: guest/tools/net-host.py echo.
    func startEcho() throws {
        let script = Checkout.root.appendingPathComponent("guest/tools/net-host.py").path
        _ = try start(["python3", script, "echo", "--bind", "10.0.0.1", "--port", "7"])
        usleep(300_000)
    }

    /// A pinger in the background: `count` ICMP echo requests to the guest, one every
    /// `interval` seconds (a raw socket from Python, so that no ping binary is needed).
    func startPing(count: Int, interval: Double, after delay: Double = 0) throws -> BackgroundRun {
        try start(["python3", "-c", Self.pinger, "10.0.0.2", "\(count)", "\(interval)", "\(delay)"])
    }

    func ping(count: Int, interval: Double, after delay: Double) throws -> PingResult {
        PingResult(try startPing(count: count, interval: interval, after: delay).finish().stdout)
    }

    /// Sends runt, garbage and oversize frames into the tap from an AF_PACKET socket.
    func inject() throws -> ProcessResult {
        try runProcess(Self.ip, ["netns", "exec", name, "python3", "-c", Self.injector, "tap0"])
    }

    private func start(_ command: [String]) throws -> BackgroundRun {
        let background = try BackgroundRun(["netns", "exec", name] + command, executable: Self.ip)
        started.append(background.process)
        return background
    }

    @discardableResult
    private static func must(_ command: [String]) throws -> ProcessResult {
        let result = try runProcess(command[0], Array(command.dropFirst()))
        guard result.status == 0 else {
            throw NetNamespaceError(detail: "\(command.joined(separator: " ")): \(result.stderr)")
        }
        return result
    }

    struct PingResult: CustomStringConvertible {
        var sent = 0
        var received = 0
        init(_ output: String) {
            let line = output.split(whereSeparator: \.isNewline).map(String.init).last { $0.hasPrefix("ping ") } ?? ""
            sent = line.value(of: "sent").flatMap(Int.init) ?? 0
            received = line.value(of: "received").flatMap(Int.init) ?? 0
        }
        var description: String {
            "sent=\(sent) received=\(received) lost=\(sent - received)"
        }
    }

    static let pinger = """
        import os, socket, struct, sys, time
        dst, count, interval, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
        time.sleep(delay)
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        s.setblocking(False)
        ident = os.getpid() & 0xffff
        def csum(b):
            t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
            t = (t >> 16) + (t & 0xffff); t += t >> 16
            return ~t & 0xffff
        got = set(); sent = 0
        def drain():
            while True:
                try: data = s.recv(2048)
                except BlockingIOError: return
                h = (data[0] & 15) * 4
                t, _, _, i, q = struct.unpack("!BBHHH", data[h:h + 8])
                if t == 0 and i == ident: got.add(q)
        for seq in range(count):
            body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"bulkhead" * 7
            body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
            try:
                s.sendto(body, (dst, 0)); sent += 1
            except OSError:
                pass
            end = time.time() + interval
            while time.time() < end:
                drain(); time.sleep(0.001)
        end = time.time() + 1
        while time.time() < end:
            drain(); time.sleep(0.005)
        print(f"ping sent={sent} received={len(got)}", flush=True)
        """

    static let injector = """
        import os, socket, sys
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((sys.argv[1], 0))
        bc = b"\\xff" * 6 + b"\\x02\\x00\\x00\\x00\\x00\\x01"
        kinds = [("runt_6", b"\\xff" * 6), ("runt_13", bc[:13]), ("garbage_60", os.urandom(60)),
                 ("garbage_1514", bc + os.urandom(1500)), ("oversize_2100", bc + b"\\x08\\x00" + os.urandom(2086)),
                 ("oversize_9014", bc + b"\\x08\\x00" + os.urandom(9000))]
        for name, frame in kinds:
            n = 0
            for _ in range(20):
                try:
                    s.send(frame); n += 1
                except OSError:
                    pass
            print(f"{name}: {n} of 20 sent", flush=True)
        """

    final class Counter: @unchecked Sendable {
        private var value = 0
        private let lock = NSLock()
        func next() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value }
    }
}

struct NetNamespaceError: Error, CustomStringConvertible {
    let detail: String
    var description: String { detail }
}
