import BulkheadChannel
import BulkheadProtocol
import BulkheadSandbox
import BulkheadSystem
import BulkheadTestSupport
import CBulkheadLinux
import Foundation
import Testing

@testable import BulkheadEmulated

/// Plays the core for one `bulkhead-domain rtl8139` process: creates what the core creates
/// (control region, guest memory memfd, doorbells, irqfd; a socket pair stands in for the tap),
/// spawns the domain with them at the fixed numbers, attaches it, forwards register accesses,
/// and restarts it after a kill the way the supervisor does (reset the rings, spawn, `Attach`,
/// re-send the access in flight with the same seq).
final class DomainHarness {
    static let guestSize = 4 << 20
    static let mac: [UInt8] = [0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF]

    static var domainBinary: String {
        ProcessInfo.processInfo.environment["BULKHEAD_DOMAIN_BIN"]
            ?? Checkout.root.appendingPathComponent(".build/debug/bulkhead-domain").path
    }
    static var canRun: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: domainBinary) }
    static let skipReason: Comment = "needs root (namespaces) and a built bulkhead-domain (swift build --product bulkhead-domain, or $BULKHEAD_DOMAIN_BIN); skipped"

    final class Process {
        let domain: SpawnedDomain
        init(_ domain: consuming SpawnedDomain) { self.domain = domain }
    }

    let guestFile: FileDescriptor
    let guestMapping: MemoryMapping
    let region: ControlRegion
    let channel: ControlChannel
    let irq: FileDescriptor
    let tapFD: Int32
    let hostFD: Int32
    var process: Process?
    var sequence: UInt64 = 0
    var generation: UInt64 = 0
    /// Messages other than replies the domain sent (logs, stats, faults), in order.
    var other: [ControlMessage] = []

    init() throws {
        guestFile = try FileDescriptor.memfd(name: "rtl8139-domain-test-guest", size: Self.guestSize)
        guestMapping = try MemoryMapping(sharing: guestFile, length: Self.guestSize)
        region = try ControlRegion.create(name: "rtl8139-domain-test")
        channel = ControlChannel(region: region, side: .core, incomingDoorbell: try FileDescriptor.eventfd(nonBlocking: true),
                                 outgoingDoorbell: try FileDescriptor.eventfd(nonBlocking: true))
        irq = try FileDescriptor.eventfd(nonBlocking: true)
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw SystemError(call: "socketpair", errno: .current)
        }
        tapFD = pair[0]
        hostFD = pair[1]
    }

    deinit {
        if let process {
            try? process.domain.kill()
            _ = try? process.domain.wait()
        }
        close(tapFD)
        close(hostFD)
    }

    /// Starts a domain generation and attaches it (a restart after the first).
    func spawn() throws {
        if generation > 0 { channel.resetRings(generation: generation) }
        // At 3, 4, ...: control region, guest memory, doorbells, irqfd, tap, (no standby: tap again).
        let fds = [region.file.rawValue, guestFile.rawValue, channel.outgoingDoorbell.rawValue,
                   channel.incomingDoorbell.rawValue, irq.rawValue, tapFD, tapFD]
        process = Process(try DomainProcess.spawn(executable: Self.domainBinary, arguments: ["rtl8139", "nic0"], fds: fds))
        guard case .hello(let hello) = try next(), hello.kind == "rtl8139" else { throw HarnessError("no Hello from the domain") }
        try channel.send(.attach(.init(generation: generation, deviceFeatures: 0, queues: [],
                                       guestMemorySize: UInt64(Self.guestSize), config: Self.mac)))
        while true {
            let message = try next()
            if case .attached = message { break }
            if case .faultReport(let fault) = message { throw HarnessError("attach failed: \(fault.detail)") }
            other.append(message)
        }
        generation += 1
    }

    /// SIGKILL, reaped.
    func kill() throws -> DomainTermination {
        guard let process else { throw HarnessError("no domain") }
        self.process = nil
        try process.domain.kill()
        return try process.domain.wait()
    }

    func waitForExit() throws -> DomainTermination {
        guard let process else { throw HarnessError("no domain") }
        self.process = nil
        return try process.domain.wait()
    }

    func next(timeoutMilliseconds: Int = 10_000) throws -> ControlMessage {
        guard let message = try channel.receive(timeoutMilliseconds: timeoutMilliseconds) else {
            throw HarnessError("no message from the domain in \(timeoutMilliseconds) ms")
        }
        return message
    }

    /// Sends a register access with a new seq and waits for its reply.
    @discardableResult
    func access(_ offset: Int, size: UInt32, write value: UInt64? = nil) throws -> UInt64 {
        sequence += 1
        try send(offset, size: size, write: value, sequence: sequence)
        return try reply(sequence)
    }

    func send(_ offset: Int, size: UInt32, write value: UInt64?, sequence: UInt64) throws {
        if let value {
            try channel.send(.registerWrite(.init(bar: 0, offset: UInt64(offset), size: size, value: value, sequence: sequence)))
        } else {
            try channel.send(.registerRead(.init(bar: 0, offset: UInt64(offset), size: size, sequence: sequence)))
        }
    }

    func reply(_ sequence: UInt64) throws -> UInt64 {
        while true {
            let message = try next()
            if case .registerReadReply(let reply) = message {
                guard reply.sequence == sequence else { throw HarnessError("reply to seq \(reply.sequence), expected \(sequence)") }
                return reply.value
            }
            other.append(message)
        }
    }

    // MARK: guest memory, the host side of the tap, the irqfd

    func store(_ bytes: [UInt8], at address: Int) {
        UnsafeMutableRawBufferPointer(start: guestMapping.base + address, count: bytes.count).copyBytes(from: bytes)
    }

    func bytes(at address: Int, count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: guestMapping.base + address, count: count))
    }

    /// The receive header at `address`, read with acquire ordering, as a polling driver does.
    func header(at address: Int) -> UInt32 {
        bh_atomic_load_acquire_u32(guestMapping.base + address)
    }

    func hostSend(_ frame: [UInt8]) throws {
        let n = frame.withUnsafeBytes { Glibc.send(hostFD, $0.baseAddress, $0.count, 0) }
        guard n == frame.count else { throw SystemError(call: "send", errno: .current) }
    }

    func hostReceive(milliseconds: Int32 = 2000) -> [UInt8]? {
        var entry = pollfd(fd: hostFD, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, milliseconds) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(hostFD, $0.baseAddress, $0.count, 0) }
        return n >= 0 ? Array(buffer[0..<n]) : nil
    }

    /// Interrupts raised, waiting up to `milliseconds` for the first.
    func interrupts(milliseconds: Int32 = 2000) -> UInt64 {
        var entry = pollfd(fd: irq.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, milliseconds) > 0 else { return 0 }
        return readEventfd(irq.rawValue) ?? 0
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Suite("rtl8139 domain process", .serialized)
struct RTL8139DomainTests {
    static let ring = 0x2_0000
    static let transmitBuffer = 0x1_0000
    static let broadcast: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]

    /// A frame carrying `id` in bytes 14–17.
    static func frame(to destination: [UInt8], id: UInt32, length: Int = 200) -> [UInt8] {
        var frame = destination + [0x02, 0, 0, 0, 0, 1, 0x88, 0xB5]
        withUnsafeBytes(of: id.littleEndian) { frame += $0 }
        while frame.count < length { frame.append(UInt8(truncatingIfNeeded: frame.count &+ Int(id))) }
        return frame
    }

    static func id(of frame: [UInt8]) -> UInt32 {
        frame.count >= 18 ? frame[14..<18].reversed().reduce(0) { $0 << 8 | UInt32($1) } : .max
    }

    /// 8139too's start: reset, ring (32 KiB, WRAP = 1), RE | TE, RCR (AB | APM), TSADs, IMR.
    func start(_ core: DomainHarness) throws {
        try core.access(R.cr, size: 1, write: 0x10)
        try core.access(R.rbstart, size: 4, write: UInt64(Self.ring))
        try core.access(R.cr, size: 1, write: 0x0C)
        try core.access(R.rcr, size: 4, write: 0x0000_E78A | (2 << 11))
        for n in 0..<4 { try core.access(R.tsad0 + 4 * n, size: 4, write: UInt64(Self.transmitBuffer + n * 0x800)) }
        try core.access(R.imr, size: 2, write: 0xE07F)
    }

    @Test("serves register accesses, sends and receives frames, raises the interrupt", .enabled(if: DomainHarness.canRun, DomainHarness.skipReason))
    func serves() throws {
        let core = try DomainHarness()
        try core.spawn()
        #expect(try core.access(R.idr0, size: 4) == 0xAB00_5452)
        #expect(try core.access(R.idr0 + 4, size: 2) == 0xEFCD)
        #expect(try core.access(R.tcr, size: 4) & 0x7CC0_0000 == 0x7400_0000)
        try start(core)
        _ = core.interrupts(milliseconds: 0)

        let outgoing = Self.frame(to: Self.broadcast, id: 1)
        core.store(outgoing, at: Self.transmitBuffer)
        try core.access(R.tsd0, size: 4, write: UInt64(outgoing.count))
        #expect(core.hostReceive() == outgoing)
        #expect(try core.access(R.tsd0, size: 4) & 0xA000 == 0xA000)
        #expect(core.interrupts() >= 1)
        try core.access(R.isr, size: 2, write: 0xFFFF)

        let incoming = Self.frame(to: DomainHarness.mac, id: 2, length: 300)
        try core.hostSend(incoming)
        let deadline = Date().addingTimeInterval(5)
        while core.header(at: Self.ring) == 0 && Date() < deadline { usleep(100) }
        let header = core.header(at: Self.ring)
        #expect(header == UInt32(304) << 16 | 0x4001, "ROK | PAM, 300 + 4 bytes")
        #expect(core.bytes(at: Self.ring + 4, count: 300) == incoming)
        #expect(core.interrupts() >= 1)
        #expect(try core.access(R.isr, size: 2) & 0x0001 != 0)
        #expect(try core.access(R.cbr, size: 2) == 308)

        try core.channel.send(.shutdown)
        #expect(try core.waitForExit() == .exited(status: 0))
        while let message = try core.channel.tryReceive() { core.other.append(message) }
        let stats = core.other.compactMap { if case .stats(let stats) = $0 { stats } else { nil } }.last
        #expect(stats?.requests == 2)
        #expect(stats?.readBytes == 300)
        #expect(stats?.writtenBytes == 200)
    }

    @Test("killed again and again mid-stream: every frame once at most, in order, and the NIC goes on", .enabled(if: DomainHarness.canRun, DomainHarness.skipReason))
    func killedMidStream() throws {
        let core = try DomainHarness()
        try core.spawn()
        try start(core)
        var kills = 0
        var received: [UInt32] = []
        var readOffset = 0
        let rounds = 60

        /// Takes every published frame from the ring, as a polling driver does, and moves CAPR.
        func drain(expecting id: UInt32?, milliseconds: Int) throws {
            let deadline = Date().addingTimeInterval(Double(milliseconds) / 1000)
            while true {
                let header = core.header(at: Self.ring + readOffset)
                if header == 0 {
                    if let id, received.last.map({ $0 < id }) ?? true, Date() < deadline { usleep(200); continue }
                    return
                }
                let length = Int(header >> 16)
                #expect(header & 0xFFFF == 0x4001 && length >= 64 && length <= 1518, "header 0x\(String(header, radix: 16))")
                let frame = core.bytes(at: Self.ring + readOffset + 4, count: length - 4)
                received.append(Self.id(of: frame))
                #expect(frame == Self.frame(to: DomainHarness.mac, id: Self.id(of: frame), length: length - 4))
                readOffset = ((readOffset + 4 + length + 3) & ~3) % 32768
                try core.access(R.capr, size: 2, write: UInt64((readOffset - 16) & 0xFFFF))
                try core.access(R.isr, size: 2, write: 0x0001)
            }
        }

        for round in 0..<rounds {
            let id = UInt32(round)
            let descriptor = round % 4
            core.store(Self.frame(to: Self.broadcast, id: id, length: 100 + round), at: Self.transmitBuffer + descriptor * 0x800)
            try core.hostSend(Self.frame(to: DomainHarness.mac, id: id, length: 100 + round))
            core.sequence += 1
            let sequence = core.sequence
            try core.send(R.tsd0 + 4 * descriptor, size: 4, write: UInt64(100 + round), sequence: sequence)
            if round % 6 == 3 {
                // The domain dies with the access in flight (applied or not, sent or not).
                if round % 12 == 3 { usleep(UInt32(round * 20)) }
                _ = try core.kill()
                kills += 1
                try core.spawn()
                try core.send(R.tsd0 + 4 * descriptor, size: 4, write: UInt64(100 + round), sequence: sequence)
            }
            #expect(try core.reply(sequence) == 0)
            #expect(try core.access(R.tsd0 + 4 * descriptor, size: 4) & 0xA000 == 0xA000, "round \(round): descriptor done")
            try drain(expecting: id, milliseconds: 500)
        }
        try drain(expecting: nil, milliseconds: 0)

        var sent: [UInt32] = []
        while let frame = core.hostReceive(milliseconds: 200) { sent.append(Self.id(of: frame)) }
        #expect(sent == sent.sorted() && Set(sent).count == sent.count, "transmitted once at most, in order: \(sent)")
        #expect(rounds - sent.count <= kills, "lost only frames in flight at a kill: \(rounds - sent.count) of \(kills) kills")
        #expect(received == received.sorted() && Set(received).count == received.count, "received once at most, in order: \(received)")
        #expect(rounds - received.count <= kills, "lost only frames in flight at a kill: \(rounds - received.count)")
        print("rtl8139 domain: \(kills) kills, \(sent.count)/\(rounds) frames sent, \(received.count)/\(rounds) received")
        try core.channel.send(.shutdown)
        _ = try core.waitForExit()
    }

    @Test("a system call outside its allowlist kills the domain with SIGSYS", .enabled(if: DomainHarness.canRun, DomainHarness.skipReason))
    func seccompKills() throws {
        let core = try DomainHarness()
        try core.spawn()
        try core.channel.send(.injectFault(.init(kind: .seccomp)))
        #expect(try core.waitForExit().isSeccompViolation)
        // A successor continues with the state the dead one left.
        try core.spawn()
        #expect(try core.access(R.idr0, size: 4) == 0xAB00_5452)
        _ = try core.kill()
    }

    @Test("register access round trips: back to back, and after the domain went to sleep", .enabled(if: DomainHarness.canRun, DomainHarness.skipReason))
    func accessLatency() throws {
        let core = try DomainHarness()
        try core.spawn()
        func measure(_ count: Int, gapMicroseconds: UInt32) throws -> (median: Double, p99: Double) {
            var samples: [UInt64] = []
            for _ in 0..<count {
                if gapMicroseconds > 0 { usleep(gapMicroseconds) }
                let start = ControlChannel.monotonicNanoseconds()
                _ = try core.access(R.isr, size: 2)
                samples.append(ControlChannel.monotonicNanoseconds() - start)
            }
            samples.sort()
            return (Double(samples[count / 2]) / 1000, Double(samples[count * 99 / 100]) / 1000)
        }
        let hot = try measure(5000, gapMicroseconds: 0)
        let spaced = try measure(500, gapMicroseconds: 100)
        let asleep = try measure(200, gapMicroseconds: 2000)
        print("rtl8139 domain register read round trip (µs): back to back median \(hot.median) p99 \(hot.p99); "
              + "100 µs apart median \(spaced.median) p99 \(spaced.p99); 2 ms apart (asleep) median \(asleep.median) p99 \(asleep.p99)")
        #expect(hot.median < 500)
        _ = try core.kill()
    }
}
