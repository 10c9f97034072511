import Testing

@testable import BulkheadEmulated

@Suite("RTL8139 transmit")
struct RTL8139TransmitTests {
    static let broadcast: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]

    @Test("a TSD write with OWN = 0 sends SIZE bytes from TSAD to the tap, then OWN | TOK and ISR.TOK")
    func transmitLandsOnTheWire() throws {
        let nic = try NICHarness()
        nic.start(ring: 0x2_0000, receiveConfiguration: 0x8A)
        _ = nic.interrupts()
        for n in 0..<6 {
            let descriptor = n % 4
            let frame = NICHarness.frame(to: Self.broadcast, length: 100 + n * 200, seed: UInt8(n))
            nic.store(frame, at: 0x1_0000 + descriptor * 0x1000)
            nic.write32(R.tsd0 + 4 * descriptor, UInt32(frame.count) | 0x0008_0000) // ERTXTH as 8139too sets it
            #expect(nic.hostReceive() == frame, "frame \(n) on the wire, byte for byte")
            let status = nic.read32(R.tsd0 + 4 * descriptor)
            #expect(status & 0xA000 == 0xA000, "OWN | TOK")
            #expect(status & 0x1FFF == UInt32(frame.count))
            #expect(nic.read16(R.isr) & RTL8139Interrupt.transmitOK != 0)
            #expect(nic.read16(R.tsadAll) & (0x1000 << descriptor) != 0, "TOK\(descriptor) in TSAD")
            #expect(nic.interrupts() == 1, "one edge: ISR & IMR went from 0 to TOK")
            nic.write16(R.isr, RTL8139Interrupt.transmitOK)
        }
        #expect(nic.nic.counters.transmittedFrames == 6)
        #expect(nic.hostReceive(milliseconds: 50) == nil, "nothing sent twice")
    }

    @Test("a short frame is padded with zeros to 60 bytes")
    func padding() throws {
        let nic = try NICHarness()
        nic.start(ring: 0x2_0000, receiveConfiguration: 0x8A)
        nic.fill(0xEE, at: 0x1_0000, count: 128)
        let frame = NICHarness.frame(to: Self.broadcast, length: 42)
        nic.store(frame, at: 0x1_0000)
        nic.write32(R.tsd0, 42)
        #expect(nic.hostReceive() == frame + [UInt8](repeating: 0, count: 18))
    }

    @Test("with TE off a handed-over descriptor waits; turning TE on sends it")
    func transmitterDisabled() throws {
        let nic = try NICHarness()
        nic.start(ring: 0x2_0000, receiveConfiguration: 0x8A)
        nic.write8(R.cr, RTL8139Command.receiverEnable)
        let frame = NICHarness.frame(to: Self.broadcast, length: 80)
        nic.store(frame, at: 0x1_1000)
        nic.write32(R.tsd0 + 4, 80)
        #expect(nic.hostReceive(milliseconds: 50) == nil)
        #expect(nic.read32(R.tsd0 + 4) & 0xA000 == 0, "still the device's, not done")
        nic.write8(R.cr, RTL8139Command.receiverEnable | RTL8139Command.transmitterEnable)
        #expect(nic.hostReceive() == frame)
        #expect(nic.read32(R.tsd0 + 4) & 0xA000 == 0xA000)
    }

    @Test("hostile TSAD and SIZE abort the descriptor (TABT, ISR.TER) and never trap")
    func hostileTransmit() throws {
        let nic = try NICHarness()
        nic.start(ring: 0x2_0000, receiveConfiguration: 0x8A)
        let guest = UInt32(NICHarness.guestSize)
        let cases: [(address: UInt32, size: UInt32)] = [
            (0xFFFF_FFFF, 0x1FFF), (0xFFFF_FFF0, 64), (guest - 10, 64), (guest, 1), (0x1_0000, 0x1FFF), (0x1_0000, 1793),
        ]
        for (address, size) in cases {
            nic.write32(R.tsad0, address)
            nic.write32(R.tsd0, size)
            let status = nic.read32(R.tsd0)
            #expect(status & (RTL8139TransmitStatus.own | RTL8139TransmitStatus.aborted) == 0x4000_2000,
                    "TSAD 0x\(String(address, radix: 16)) SIZE \(size): OWN | TABT")
            #expect(status & RTL8139TransmitStatus.transmitOK == 0)
            #expect(nic.read16(R.isr) & RTL8139Interrupt.transmitError != 0)
            nic.write16(R.isr, 0xFFFF)
        }
        #expect(nic.hostReceive(milliseconds: 50) == nil)
        #expect(nic.nic.counters.drops.transmitAborted == UInt64(cases.count))
        // The last bytes of guest memory are fine: the range is inside.
        nic.write32(R.tsad0, guest - 60)
        nic.write32(R.tsd0, 60)
        #expect(nic.hostReceive()?.count == 60)
        #expect(nic.canaryIntact)
    }

    @Test("a frame the tap refuses is counted, and the descriptor completes anyway")
    func refusedByTheWire() throws {
        let nic = try NICHarness()
        nic.start(ring: 0x2_0000, receiveConfiguration: 0x8A)
        nic.store(NICHarness.frame(to: Self.broadcast, length: 1500), at: 0x1_0000)
        // Fill the socket until it refuses (nobody reads the host side).
        var refusedAt: Int?
        for n in 0..<10_000 {
            nic.write32(R.tsd0, 1500)
            if nic.nic.counters.drops.transmitRefused > 0 { refusedAt = n; break }
        }
        #expect(refusedAt != nil)
        #expect(nic.read32(R.tsd0) & 0xA000 == 0xA000)
    }
}
