import Testing

@testable import BulkheadEmulated

/// A restarted domain builds a new `RTL8139` on the same device-state area. `stopAt` abandons a
/// change where a SIGKILL could land; the harness then restarts, as the core would.
@Suite("RTL8139 restart")
struct RTL8139RestartTests {
    static let ring = 0x2_0000
    static let broadcast: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]

    @Test("a device rebuilt on the same state continues exactly: registers, ring position, transmitter")
    func continuesExactly() throws {
        let nic = try NICHarness()
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A | (1 << 11)) // 16 KiB
        nic.write32(R.mar0 + 4, 0xDEAD_BEEF)
        nic.write32(R.idr0, 0x0403_0202)
        var reader = RingReader(ring: Self.ring, ringSize: 16384, linear: true)
        let own: [UInt8] = [0x02, 0x02, 0x03, 0x04, 0x34, 0x56]
        for n in 0..<7 {
            let outcome = NICHarness.frame(to: own, length: 300 + n).withUnsafeBytes { nic.nic.receive($0) }
            #expect(outcome == .delivered)
        }
        for _ in 0..<5 { #expect(reader.next(nic) != nil) } // two left unread
        nic.store(NICHarness.frame(to: Self.broadcast, length: 70), at: 0x1_2000)
        nic.write32(R.tsd0 + 8, 70)
        #expect(nic.hostReceive() != nil)
        let registers = (0..<64).map { nic.nic.peek(offset: UInt64($0 * 4), size: 4) }
        let counted = nic.sequence

        try nic.restart()
        #expect(nic.nic.resumed)
        let after = (0..<64).map { nic.nic.peek(offset: UInt64($0 * 4), size: 4) }
        for i in 0..<64 where i != R.tctr / 4 {
            #expect(after[i] == registers[i], "register 0x\(String(i * 4, radix: 16))")
        }
        #expect(nic.sequence == counted)
        // The two unread frames are still there; the next frame goes after them.
        #expect(reader.next(nic)?.frame == NICHarness.frame(to: own, length: 305))
        #expect(reader.next(nic)?.frame == NICHarness.frame(to: own, length: 306))
        _ = NICHarness.frame(to: own, length: 400).withUnsafeBytes { nic.nic.receive($0) }
        #expect(reader.next(nic)?.frame == NICHarness.frame(to: own, length: 400))
        // The transmitter goes on with the next descriptor.
        nic.store(NICHarness.frame(to: Self.broadcast, length: 90), at: 0x1_3000)
        nic.write32(R.tsd0 + 12, 90)
        #expect(nic.hostReceive()?.count == 90)
    }

    @Test("an access re-sent with a seq already applied is answered with its reply and not applied again")
    func exactlyOnceAccesses() throws {
        let nic = try NICHarness()
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A)
        nic.store(NICHarness.frame(to: Self.broadcast, length: 64), at: 0x1_0000)
        // The core sends TSD0 := 64 with seq 100, the domain applies it and dies before replying.
        #expect(nic.nic.registerAccess(bar: 0, offset: UInt64(R.tsd0), size: 4, write: 64, sequence: 100) == 0)
        #expect(nic.hostReceive() != nil)
        try nic.restart()
        // The core re-sends the same access: not transmitted again.
        #expect(nic.nic.registerAccess(bar: 0, offset: UInt64(R.tsd0), size: 4, write: 64, sequence: 100) == 0)
        #expect(nic.hostReceive(milliseconds: 50) == nil, "no duplicate frame")
        #expect(nic.nic.counters.replayedAccesses == 1)
        // A read: answered with the value recorded when it was applied, even if the register moved.
        let isr = nic.nic.registerAccess(bar: 0, offset: UInt64(R.isr), size: 2, write: nil, sequence: 101)
        #expect(isr == UInt64(RTL8139Interrupt.transmitOK))
        #expect(nic.nic.registerAccess(bar: 0, offset: UInt64(R.isr), size: 2, write: 0xFFFF, sequence: 102) == 0)
        try nic.restart()
        #expect(nic.nic.registerAccess(bar: 0, offset: UInt64(R.isr), size: 2, write: 0xFFFF, sequence: 102) == 0)
        #expect(nic.nic.registerAccess(bar: 0, offset: UInt64(R.isr), size: 2, write: nil, sequence: 103) == 0)
        #expect(nic.nic.registerAccess(bar: 0, offset: UInt64(R.isr), size: 2, write: nil, sequence: 103) == 0)
        // A write-1-to-clear applied twice would be harmless; a counter shows exactly once.
        _ = nic.nic.registerAccess(bar: 0, offset: UInt64(R.tsd0), size: 4, write: 64, sequence: 104)
        let isrBefore = nic.nic.registerAccess(bar: 0, offset: UInt64(R.isr), size: 2, write: nil, sequence: 105)
        #expect(isrBefore == UInt64(RTL8139Interrupt.transmitOK))
        #expect(nic.hostReceive() != nil)
        // An older seq than the last applied: the last reply, counted as stale.
        #expect(nic.nic.registerAccess(bar: 0, offset: UInt64(R.idr0), size: 4, write: nil, sequence: 50) == isrBefore)
        #expect(nic.nic.counters.staleAccesses == 1)
    }

    @Test("killed after marking a descriptor done and before the tap write: the frame is lost, never sent twice")
    func transmitCrashLosesNeverDuplicates() throws {
        let nic = try NICHarness()
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A)
        nic.store(NICHarness.frame(to: Self.broadcast, length: 128), at: 0x1_0000)
        nic.nic.stopAt = .afterCommit
        nic.sequence += 1
        _ = nic.nic.registerAccess(bar: 0, offset: UInt64(R.tsd0), size: 4, write: 128, sequence: nic.sequence)
        try nic.restart()
        _ = nic.interrupts()
        // The core re-sends the write: answered, not applied.
        _ = nic.nic.registerAccess(bar: 0, offset: UInt64(R.tsd0), size: 4, write: 128, sequence: nic.sequence)
        #expect(nic.hostReceive(milliseconds: 50) == nil)
        #expect(nic.read32(R.tsd0) & 0xA000 == 0xA000, "done, as the guest sees it")
        #expect(nic.nic.counters.replayedAccesses == 1)
    }

    @Test("killed before the commit: the access was never applied, and the re-sent one is applied once")
    func transmitCrashBeforeCommit() throws {
        let nic = try NICHarness()
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A)
        let frame = NICHarness.frame(to: Self.broadcast, length: 128)
        nic.store(frame, at: 0x1_0000)
        nic.nic.stopAt = .beforeCommit
        nic.sequence += 1
        let sequence = nic.sequence
        _ = nic.nic.registerAccess(bar: 0, offset: UInt64(R.tsd0), size: 4, write: 128, sequence: sequence)
        try nic.restart()
        #expect(nic.nic.peek(offset: UInt64(R.tsd0), size: 4) == 0x2000, "the restarted device never saw it")
        _ = nic.nic.registerAccess(bar: 0, offset: UInt64(R.tsd0), size: 4, write: 128, sequence: sequence)
        #expect(nic.hostReceive() == frame, "the re-sent access is applied")
        #expect(nic.read32(R.tsd0) & 0xA000 == 0xA000)
        #expect(nic.hostReceive(milliseconds: 50) == nil)
    }

    @Test("a frame half-written into the ring when the domain died is not published; the next one takes its place")
    func receiveCrashBeforeCommit() throws {
        let nic = try NICHarness()
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A)
        nic.fill(0, at: Self.ring, count: 8192 + 2048)
        _ = NICHarness.frame(to: NICHarness.mac, length: 100).withUnsafeBytes { nic.nic.receive($0) }
        let cbr = nic.read16(R.cbr)
        nic.nic.stopAt = .beforeCommit
        #expect(NICHarness.frame(to: NICHarness.mac, length: 500, seed: 9).withUnsafeBytes { nic.nic.receive($0) } == .stopped)
        #expect(nic.load32(at: Self.ring + Int(cbr)) == 0, "no header: a polling driver sees nothing")
        #expect(nic.bytes(at: Self.ring + Int(cbr) + 4, count: 4) != [0, 0, 0, 0], "the frame's bytes were written")
        try nic.restart()
        #expect(nic.read16(R.cbr) == cbr)
        let next = NICHarness.frame(to: NICHarness.mac, length: 200, seed: 3)
        _ = next.withUnsafeBytes { nic.nic.receive($0) }
        var reader = RingReader(ring: Self.ring, ringSize: 8192, linear: true)
        #expect(reader.next(nic)?.frame.count == 100)
        #expect(reader.next(nic)?.frame == next)
        #expect(reader.next(nic) == nil)
    }

    @Test("killed after the commit, before the header: the successor writes the header and raises the interrupt")
    func receiveCrashAfterCommit() throws {
        let nic = try NICHarness()
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A)
        nic.fill(0, at: Self.ring, count: 8192 + 2048)
        _ = nic.interrupts()
        nic.nic.stopAt = .afterCommit
        let frame = NICHarness.frame(to: NICHarness.mac, length: 500, seed: 9)
        #expect(frame.withUnsafeBytes { nic.nic.receive($0) } == .stopped)
        #expect(nic.load32(at: Self.ring) == 0)
        #expect(nic.interrupts() == 0, "died before the edge")
        try nic.restart()
        #expect(nic.nic.counters.republishedHeaders == 1)
        #expect(nic.interrupts() == 1, "ISR.ROK & IMR pending: raised once on resuming")
        var reader = RingReader(ring: Self.ring, ringSize: 8192, linear: true)
        #expect(reader.next(nic)?.frame == frame)
        try nic.restart()
        #expect(nic.nic.counters.republishedHeaders == 0, "written once: a later restart does not write it again")
        #expect(nic.load32(at: Self.ring) == 0)
    }

    @Test("a fresh (zeroed) state area is a NIC at power-on; clear() makes one")
    func powerOnFromFreshArea() throws {
        let nic = try NICHarness()
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A)
        RTL8139StateLayout.clear(nic.region.deviceState)
        try nic.restart()
        #expect(nic.nic.resumed == false)
        // An access numbered below the old ones is applied: nothing was applied since power-on.
        #expect(nic.nic.registerAccess(bar: 0, offset: 0, size: 4, write: nil, sequence: 1) == 0x1200_5452)
        #expect(nic.read32(R.rbstart) == 0)
        #expect(nic.read8(R.cr) == RTL8139Command.bufferEmpty)
    }
}
