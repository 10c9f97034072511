import Testing

@testable import BulkheadEmulated

/// A guest driver's receive side, as Linux's 8139too does it: read the header at its offset,
/// take the frame, move its offset past header, frame and CRC rounded to 4, write CAPR =
/// offset - 16.
struct RingReader {
    let ring: Int
    let ringSize: Int
    /// Whether frames continue past the end of the ring (WRAP = 1) rather than wrapping.
    let linear: Bool
    /// Whether the reader zeroes each header it took (a driver need not: see `pollingDriver`).
    var zeroHeaders = true
    var offset = 0

    struct Entry: Equatable {
        let status: UInt16
        /// Including the 4-byte CRC.
        let length: Int
        let frame: [UInt8]
        let crc: UInt32
    }

    /// The entry at the reader's offset, or nil when no header is there (zero).
    mutating func next(_ nic: NICHarness, acknowledge: Bool = true) -> Entry? {
        let header = nic.load32(at: ring + offset)
        guard header != 0 else { return nil }
        let length = Int(header >> 16)
        var bytes: [UInt8] = []
        if linear {
            bytes = nic.bytes(at: ring + offset + 4, count: length)
        } else {
            var position = (offset + 4) % ringSize
            while bytes.count < length {
                let n = min(length - bytes.count, ringSize - position)
                bytes += nic.bytes(at: ring + position, count: n)
                position = (position + n) % ringSize
            }
        }
        let frame = Array(bytes.prefix(length - 4))
        let crc = bytes.suffix(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        if zeroHeaders { nic.store([0, 0, 0, 0], at: ring + offset) }
        offset = ((offset + 4 + length + 3) & ~3) % ringSize
        if acknowledge { nic.write16(R.capr, UInt16(truncatingIfNeeded: offset &- 16)) }
        return Entry(status: UInt16(header & 0xFFFF), length: length, frame: frame, crc: crc)
    }
}

@Suite("RTL8139 receive")
struct RTL8139ReceiveTests {
    static let broadcast: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
    static let ring = 0x2_0000
    /// RCR as 8139too sets it: 32 KiB ring, WRAP = 1, AB | APM, plus thresholds.
    static let linuxConfiguration: UInt32 = 0x0000_E78A | (2 << 11)

    @Test("a frame lands in the ring behind its header: ROK and PAM/BAR, length with CRC, 4-byte aligned")
    func headerLengthCRCAlignment() throws {
        let nic = try NICHarness()
        nic.start(ring: Self.ring, receiveConfiguration: Self.linuxConfiguration)
        var reader = RingReader(ring: Self.ring, ringSize: 32768, linear: true)
        for (n, length) in [60, 61, 62, 63, 64, 100, 1514, 42, 14].enumerated() {
            let destination = n % 2 == 0 ? NICHarness.mac : Self.broadcast
            let frame = NICHarness.frame(to: destination, length: length, seed: UInt8(n))
            try nic.hostSend(frame)
            #expect(nic.nic.receiveFromWire(limit: 64) == 1)
            let before = reader.offset
            let next = reader.next(nic, acknowledge: false)
            let entry = try #require(next)
            let padded = frame + [UInt8](repeating: 0, count: max(0, 60 - length))
            #expect(entry.length == padded.count + 4)
            #expect(entry.frame == padded)
            #expect(entry.crc == padded.withUnsafeBytes { EthernetCRC.frameCheckSequence($0) })
            #expect(entry.status == RTL8139ReceiveStatus.receiveOK
                    | (n % 2 == 0 ? RTL8139ReceiveStatus.physicalMatch : RTL8139ReceiveStatus.broadcast))
            #expect(Int(nic.read16(R.cbr)) == reader.offset, "CBR past header, frame, CRC")
            #expect(reader.offset % 4 == 0 && reader.offset - before == (4 + padded.count + 4 + 3) & ~3)
            #expect(nic.read8(R.cr) & RTL8139Command.bufferEmpty == 0, "not empty until CAPR moves")
            nic.write16(R.capr, UInt16(reader.offset - 16))
            #expect(nic.read8(R.cr) & RTL8139Command.bufferEmpty != 0, "BUFE once the driver caught up")
            #expect(nic.read16(R.isr) & RTL8139Interrupt.receiveOK != 0)
        }
        #expect(nic.nic.counters.receivedFrames == 9)
    }

    @Test("a driver polling headers in memory reads 0 after the last frame, whatever bytes the ring held")
    func pollingDriver() throws {
        let nic = try NICHarness()
        nic.fill(0xAB, at: Self.ring, count: 8192 + 2048)
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A) // 8 KiB, WRAP = 1
        var reader = RingReader(ring: Self.ring, ringSize: 8192, linear: true, zeroHeaders: false)
        var random = SplitMix64(seed: 7)
        for n in 0..<200 {
            let frame = NICHarness.frame(to: NICHarness.mac, length: 60 + Int(random.next() % 1455), seed: UInt8(truncatingIfNeeded: n))
            _ = frame.withUnsafeBytes { nic.nic.receive($0) }
            #expect(reader.next(nic)?.frame == frame, "frame \(n)")
            #expect(nic.load32(at: Self.ring + reader.offset) == 0, "nothing published after frame \(n)")
        }
    }

    @Test("the receive filter follows RCR and MAR")
    func filter() throws {
        let nic = try NICHarness()
        let other: [UInt8] = [0x52, 0x54, 0x00, 0x99, 0x99, 0x99]
        let group: [UInt8] = [0x01, 0x00, 0x5E, 0x00, 0x00, 0x01] // hash bit 31: MAR3 bit 7
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A) // AB | APM, 8 KiB, WRAP = 1
        func offer(_ destination: [UInt8]) -> RTL8139.ReceiveOutcome {
            NICHarness.frame(to: destination, length: 64).withUnsafeBytes { nic.nic.receive($0) }
        }
        #expect(offer(other) == .filtered)
        #expect(offer(group) == .filtered)
        #expect(offer(NICHarness.mac) == .delivered)
        #expect(offer(Self.broadcast) == .delivered)
        nic.write32(R.rcr, 0x8E) // + AM, hash bit not set
        #expect(offer(group) == .filtered)
        nic.write8(R.mar0 + 3, 0x80)
        #expect(offer(group) == .delivered)
        nic.write32(R.rcr, 0x82) // APM only: no broadcast
        #expect(offer(Self.broadcast) == .filtered)
        nic.write32(R.rcr, 0x81) // AAP: everything
        #expect(offer(other) == .delivered)
        #expect(offer(Self.broadcast) == .delivered)
        var reader = RingReader(ring: Self.ring, ringSize: 8192, linear: true)
        let statuses = (0..<5).compactMap { _ in reader.next(nic)?.status }
        #expect(statuses == [0x4001, 0x2001, 0x8001, 0x0001, 0x2001])
        #expect(nic.nic.counters.filteredFrames == 4)
    }

    @Test("WRAP = 0: a frame that reaches the end of the ring continues at its start")
    func wrapToStart() throws {
        try wrap(linear: false)
    }

    @Test("WRAP = 1: a frame that reaches the end of the ring continues past it; the next starts at the wrapped offset")
    func noWrap() throws {
        try wrap(linear: true)
    }

    func wrap(linear: Bool) throws {
        let nic = try NICHarness()
        nic.fill(0, at: Self.ring, count: 8192 + 16 + 2048)
        nic.start(ring: Self.ring, receiveConfiguration: 0x0A | (linear ? 0x80 : 0)) // 8 KiB
        var reader = RingReader(ring: Self.ring, ringSize: 8192, linear: linear)
        var crossed = false
        for n in 0..<40 {
            let frame = NICHarness.frame(to: NICHarness.mac, length: 700 + n, seed: UInt8(n))
            try nic.hostSend(frame)
            #expect(nic.nic.receiveFromWire(limit: 64) == 1)
            let start = reader.offset
            let next = reader.next(nic)
            let entry = try #require(next, "frame \(n)")
            #expect(entry.frame == frame, "frame \(n) intact")
            #expect(entry.crc == frame.withUnsafeBytes { EthernetCRC.frameCheckSequence($0) })
            if start + entry.length + 4 > 8192 {
                crossed = true
                if linear {
                    #expect(nic.bytes(at: Self.ring + 8192, count: 4) != [0, 0, 0, 0], "written past the end")
                }
            }
            #expect(Int(nic.read16(R.cbr)) == reader.offset)
        }
        #expect(crossed)
        #expect(nic.canaryIntact)
    }

    @Test("a 64 KiB ring always wraps, whatever WRAP says")
    func sixtyFourKiBRingWraps() throws {
        let nic = try NICHarness()
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A | (3 << 11))
        var reader = RingReader(ring: Self.ring, ringSize: 65536, linear: false)
        for n in 0..<50 {
            let frame = NICHarness.frame(to: NICHarness.mac, length: 1500, seed: UInt8(n))
            _ = frame.withUnsafeBytes { nic.nic.receive($0) }
            #expect(reader.next(nic)?.frame == frame)
        }
        #expect(nic.bytes(at: Self.ring + 65536, count: 16) == [UInt8](repeating: 0, count: 16))
    }

    @Test("a full ring drops the frame: ISR.RXOVW and MPC; the frames before it are intact; the tap keeps the rest")
    func overflow() throws {
        let nic = try NICHarness()
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A) // 8 KiB
        var delivered = 0
        var overflowed = 0
        for n in 0..<12 {
            let frame = NICHarness.frame(to: NICHarness.mac, length: 1000, seed: UInt8(n))
            switch frame.withUnsafeBytes({ nic.nic.receive($0) }) {
            case .delivered: delivered += 1
            case .overflow: overflowed += 1
            default: Issue.record("frame \(n): unexpected outcome")
            }
        }
        #expect(delivered == 8, "8 × 1008 bytes fit; the 9th would reach CAPR + 16")
        #expect(overflowed == 4)
        #expect(nic.read16(R.isr) & RTL8139Interrupt.receiveBufferOverflow != 0)
        #expect(nic.read32(R.mpc) == 4)
        var reader = RingReader(ring: Self.ring, ringSize: 8192, linear: true)
        for n in 0..<8 {
            #expect(reader.next(nic, acknowledge: false)?.frame == NICHarness.frame(to: NICHarness.mac, length: 1000, seed: UInt8(n)))
        }
        // From the wire: with no room for the largest frame the device leaves frames in the tap.
        #expect(nic.nic.receiverReady == false)
        try nic.hostSend(NICHarness.frame(to: NICHarness.mac, length: 100))
        #expect(nic.nic.receiveFromWire(limit: 64) == 0)
        nic.write16(R.capr, UInt16(reader.offset - 16))
        #expect(nic.nic.receiverReady)
        #expect(nic.nic.receiveFromWire(limit: 64) == 1)
        #expect(nic.read32(R.mpc) == 4)
        nic.write32(R.mpc, 0)
        #expect(nic.read32(R.mpc) == 0)
    }

    @Test("the interrupt is an edge of ISR & IMR going from 0 to non-zero")
    func interruptEdge() throws {
        let nic = try NICHarness()
        nic.start(ring: Self.ring, receiveConfiguration: 0x8A, interruptMask: 0)
        let frame = NICHarness.frame(to: NICHarness.mac, length: 64)
        func offer() { _ = frame.withUnsafeBytes { nic.nic.receive($0) } }
        offer()
        #expect(nic.interrupts() == 0, "masked")
        nic.write16(R.imr, RTL8139Interrupt.receiveOK)
        #expect(nic.interrupts() == 1, "unmasking a pending ROK is an edge")
        offer()
        #expect(nic.interrupts() == 0, "ROK already pending: no new edge")
        nic.write16(R.isr, RTL8139Interrupt.receiveOK)
        #expect(nic.interrupts() == 0)
        offer()
        #expect(nic.interrupts() == 1)
        nic.write16(R.imr, 0)
        nic.write16(R.isr, 0xFFFF)
        nic.write16(R.imr, RTL8139Interrupt.receiveOK)
        #expect(nic.interrupts() == 0, "nothing pending")
        nic.write8(R.cr, 0) // RE off: nothing received, no interrupt
        offer()
        #expect(nic.interrupts() == 0)
        #expect(nic.nic.pendingInterrupts == 0)
    }

    @Test("hostile RBSTART and CAPR never trap and never write outside guest memory")
    func hostileRing() throws {
        let nic = try NICHarness()
        let guest = UInt32(NICHarness.guestSize)
        let frame = NICHarness.frame(to: NICHarness.mac, length: 1514)
        for (ring, configuration) in [(0xFFFF_FFF0, 0x8A), (guest - 100, 0x8A), (guest - 100, 0x0A), (guest - 8192, 0x8A),
                                      (guest, 0x0A), (guest - 8192 - 16, 0x8A | (3 << 11))] as [(UInt32, UInt32)] {
            nic.write8(R.cr, RTL8139Command.reset)
            nic.write32(R.rbstart, ring)
            nic.write32(R.rcr, configuration)
            nic.write8(R.cr, RTL8139Command.receiverEnable)
            for _ in 0..<20 {
                let outcome = frame.withUnsafeBytes { nic.nic.receive($0) }
                #expect(outcome == .dmaFault || outcome == .delivered || outcome == .overflow)
            }
        }
        #expect(nic.nic.counters.drops.receiveDMAFault > 0)
        #expect(nic.read16(R.isr) & RTL8139Interrupt.systemError != 0)
        #expect(nic.canaryIntact)
    }

    @Test("random register writes, frames both ways: no trap, no write outside guest memory")
    func randomAccesses() throws {
        let nic = try NICHarness()
        var random = SplitMix64(seed: 0x8139)
        let sizes: [UInt32] = [1, 2, 4, 8, 3, 0]
        for round in 0..<20_000 {
            let offset = Int(random.next() % 0x110)
            let size = sizes[Int(random.next() % UInt64(sizes.count))]
            var value = random.next()
            if round % 7 == 0 { value = UInt64(NICHarness.guestSize) &- (value % 0x10000) } // near the end of guest memory
            if offset == R.cr9346 && value & 0xC0 == 0x40 { value = 0 } // auto-load is a reset: keep some state
            nic.access(offset, size: size, write: value)
            if round % 5 == 0 {
                let frame = NICHarness.frame(to: random.next() % 2 == 0 ? NICHarness.mac : [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                                             length: Int(random.next() % 1900))
                _ = frame.withUnsafeBytes { nic.nic.receive($0) }
            }
            if round % 11 == 0 { _ = nic.read32(Int(random.next() % 0x100)) }
            while nic.hostReceive(milliseconds: 0) != nil {}
        }
        #expect(nic.canaryIntact)
    }
}
