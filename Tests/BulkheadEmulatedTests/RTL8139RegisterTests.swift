import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import BulkheadEmulated

typealias R = RTL8139Register

@Suite("RTL8139 registers")
struct RTL8139RegisterTests {
    @Test("power-on values are the datasheet's, with the link up")
    func resetValues() throws {
        let nic = try NICHarness()
        #expect((0..<6).map { nic.read8(R.idr0 + $0) } == NICHarness.mac)
        #expect((0..<8).map { nic.read8(R.mar0 + $0) } == [UInt8](repeating: 0, count: 8))
        for n in 0..<4 {
            #expect(nic.read32(R.tsd0 + 4 * n) == 0x2000, "TSD\(n): OWN")
            #expect(nic.read32(R.tsad0 + 4 * n) == 0)
        }
        #expect(nic.read32(R.rbstart) == 0)
        #expect(nic.read8(R.cr) == RTL8139Command.bufferEmpty, "CR: BUFE only")
        #expect(nic.read16(R.capr) == 0xFFF0)
        #expect(nic.read16(R.cbr) == 0)
        #expect(nic.read16(R.imr) == 0)
        #expect(nic.read16(R.isr) == 0)
        #expect(nic.read32(R.tcr) & 0x7CC0_0000 == 0x7400_0000, "HWVERID: RTL8139C")
        #expect(nic.read32(R.rcr) == 0)
        #expect(nic.read32(R.mpc) == 0)
        #expect(nic.read8(R.cr9346) == 0)
        #expect(nic.read8(R.config0) == 0)
        #expect(nic.read8(R.config1) == 0x0C)
        #expect(nic.read8(R.msr) & 0x0C == 0, "MSR: LINKB = 0 (link up), SPEED_10 = 0")
        #expect(nic.read8(R.rerid) == 0x10)
        #expect(nic.read16(R.tsadAll) == 0x000F, "all four OWN")
        #expect(nic.read16(R.bmcr) == 0x3100)
        #expect(nic.read16(R.bmsr) == 0x782D)
        #expect(nic.read16(R.bmsr) & 0x0024 == 0x0024, "link up, auto-negotiation complete")
        #expect(nic.read16(R.anar) == 0x05E1)
        #expect(nic.read16(R.anlpar) == 0x05E1)
        #expect(nic.read16(R.aner) == 0x0001)
        #expect(nic.nic.resumed == false)
    }

    @Test("a 32-bit read of IDR0 and a 16-bit read of IDR4 give the station address, little-endian")
    func wideReads() throws {
        let nic = try NICHarness()
        #expect(nic.read32(R.idr0) == 0x1200_5452)
        #expect(nic.read16(R.idr0 + 4) == 0x5634)
        // IMR and ISR in one 32-bit access.
        nic.write16(R.imr, 0x0005)
        #expect(nic.read32(R.imr) == 0x0000_0005)
    }

    @Test("ISR is write-1-to-clear; IMR keeps only the bits that exist")
    func interruptStatusWriteOneToClear() throws {
        let nic = try NICHarness()
        nic.start(ring: 0x2_0000, receiveConfiguration: 0x0000_008A)
        nic.store([UInt8](repeating: 1, count: 64), at: 0x1_0000)
        nic.write32(R.tsd0, 64)
        #expect(nic.read16(R.isr) == RTL8139Interrupt.transmitOK)
        nic.write16(R.isr, 0) // writing 0 changes nothing
        #expect(nic.read16(R.isr) == RTL8139Interrupt.transmitOK)
        nic.write16(R.isr, RTL8139Interrupt.receiveOK) // another bit: TOK stays
        #expect(nic.read16(R.isr) == RTL8139Interrupt.transmitOK)
        nic.write16(R.isr, 0xFFFF)
        #expect(nic.read16(R.isr) == 0)
        nic.write16(R.imr, 0xFFFF)
        #expect(nic.read16(R.imr) == 0xE07F)
    }

    @Test("TCR's hardware version and RCR's reserved bits are read-only")
    func readOnlyConfigurationBits() throws {
        let nic = try NICHarness()
        nic.write32(R.tcr, 0)
        #expect(nic.read32(R.tcr) == 0x7400_0000)
        nic.write32(R.tcr, 0x0300_0700) // IFG96, MXDMA 2048, as 8139too writes it
        #expect(nic.read32(R.tcr) == 0x7700_0700)
        nic.write32(R.rcr, 0xFFFF_FFFF)
        #expect(nic.read32(R.rcr) == RTL8139ReceiveConfiguration.writable)
    }

    @Test("MPC and TCTR restart at zero on any write; TCTR counts")
    func counters() throws {
        let nic = try NICHarness()
        nic.write32(R.tctr, 0x1234)
        let first = nic.read32(R.tctr)
        usleep(2000)
        let later = nic.read32(R.tctr)
        #expect(later > first)
        #expect(later - first >= 2000 * 33, "at least 2 ms of a 33 MHz clock")
        nic.write32(R.tctr, 0xFFFF)
        #expect(nic.read32(R.tctr) < later)
        nic.write32(R.mpc, 0xFFFF_FFFF)
        #expect(nic.read32(R.mpc) == 0)
    }

    @Test("CR.RST resets the transmitter, the ring and interrupts, and keeps IDR and MAR")
    func softwareReset() throws {
        let nic = try NICHarness()
        nic.start(ring: 0x2_0000, receiveConfiguration: 0x8A)
        nic.write32(R.idr0, 0x0403_0201)
        nic.write32(R.mar0, 0xFFFF_FFFF)
        nic.write32(R.tsd0 + 4, 0x40) // SIZE only, OWN = 0: sent (TE is on)
        #expect(nic.read16(R.isr) != 0)
        nic.write16(R.capr, 0x0100)
        nic.write8(R.cr, RTL8139Command.reset)
        #expect(nic.read8(R.cr) == RTL8139Command.bufferEmpty, "RST reads 0 at once; RE and TE off")
        #expect(nic.read32(R.tsd0 + 4) == 0x2000)
        #expect(nic.read16(R.isr) == 0)
        #expect(nic.read16(R.imr) == 0)
        #expect(nic.read16(R.capr) == 0xFFF0)
        #expect(nic.read16(R.cbr) == 0)
        #expect(nic.read32(R.idr0) == 0x0403_0201)
        #expect(nic.read32(R.mar0) == 0xFFFF_FFFF)
        #expect(nic.read32(R.rbstart) == 0x2_0000)
    }

    @Test("CONFIG1 is writable only while 9346CR enables configuration writes; CONFIG0 never")
    func configurationLock() throws {
        let nic = try NICHarness()
        nic.write8(R.config1, 0x01)
        #expect(nic.read8(R.config1) == 0x0C)
        nic.write8(R.cr9346, 0xC0)
        nic.write8(R.config1, 0x0D)
        nic.write8(R.config0, 0x07)
        #expect(nic.read8(R.config1) == 0x0D)
        #expect(nic.read8(R.config0) == 0)
        nic.write8(R.cr9346, 0x00)
        nic.write8(R.config1, 0x0C)
        #expect(nic.read8(R.config1) == 0x0D)
    }

    @Test("the EEPROM gives Linux's 8139too the signature and the station address")
    func eepromRead() throws {
        let nic = try NICHarness()
        // 8139too probes the address width with an 8-bit read of word 0: a 93C46 (6-bit
        // addresses) answers something other than 0x8129.
        #expect(readEEPROM(nic, location: 0, addressLength: 8) != 0x8129)
        #expect(readEEPROM(nic, location: 0, addressLength: 6) == 0x8129)
        #expect(readEEPROM(nic, location: 1, addressLength: 6) == 0x10EC)
        #expect(readEEPROM(nic, location: 2, addressLength: 6) == 0x8139)
        let words = (7...9).map { readEEPROM(nic, location: $0, addressLength: 6) }
        let mac = words.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        #expect(mac == NICHarness.mac)
    }

    @Test("9346CR auto-load is a power-on reset that reloads IDR from the EEPROM")
    func eepromAutoLoad() throws {
        let nic = try NICHarness()
        nic.write32(R.idr0, 0)
        nic.write32(R.rcr, 0x8A)
        nic.write8(R.cr9346, 0x40)
        #expect((0..<6).map { nic.read8(R.idr0 + $0) } == NICHarness.mac)
        #expect(nic.read32(R.rcr) == 0)
        #expect(nic.read8(R.cr9346) == 0)
    }

    @Test("accesses outside the register file, to other BARs or of odd sizes never trap")
    func oddAccesses() throws {
        let nic = try NICHarness()
        #expect(nic.access(0xFE, size: 4) == 0xFFFF_0000 | UInt64(nic.nic.peek(offset: 0xFE, size: 2)))
        #expect(nic.access(0x100, size: 4) == 0xFFFF_FFFF)
        #expect(nic.access(.max / 2, size: 2) == 0xFFFF)
        #expect(nic.access(0, size: 4, bar: 2) == 0xFFFF_FFFF)
        #expect(nic.access(0, size: 0) == .max)
        #expect(nic.access(0, size: 16) == .max)
        #expect(nic.access(0, size: 8) == 0x0000_5634_1200_5452)
        #expect(nic.access(0, size: 4, bar: 1) == 0x1200_5452, "BAR 1 (memory) holds the same registers")
        nic.access(0xFF, size: 4, write: 0xFFFF_FFFF)
        nic.access(0x1000, size: 4, write: 0xFFFF_FFFF)
        nic.access(0, size: 4, write: 0xFFFF_FFFF, bar: 7)
        #expect(nic.read32(R.idr0) == 0x1200_5452)
        // An 8-byte write over TSD0 and TSD1 hands over both (TE is off: nothing is sent).
        nic.access(R.tsd0, size: 8, write: 0x0000_0040_0000_0040)
        #expect(nic.read32(R.tsd0) == 0x40)
        #expect(nic.read32(R.tsd0 + 4) == 0x40)
        #expect(nic.read16(R.tsadAll) == 0x000C)
    }

    @Test("a multicast hash index is Linux's ether_crc >> 26")
    func multicastHash() {
        let cases: [([UInt8], Int)] = [
            ([0x01, 0x00, 0x5E, 0x00, 0x00, 0x01], 31), ([0x33, 0x33, 0x00, 0x00, 0x00, 0x01], 62),
            ([0x01, 0x00, 0x5E, 0x7F, 0xFF, 0xFA], 43), ([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 63),
        ]
        for (address, index) in cases {
            #expect(address.withUnsafeBytes { EthernetCRC.multicastHashIndex($0) } == index)
        }
        #expect(Array("123456789".utf8).withUnsafeBytes { EthernetCRC.frameCheckSequence($0) } == 0xCBF4_3926)
    }
}

/// Linux's `read_eeprom` (drivers/net/ethernet/realtek/8139too.c), bit for bit.
func readEEPROM(_ nic: NICHarness, location: Int, addressLength: Int) -> UInt16 {
    let chipSelect: UInt8 = 0x08, clock: UInt8 = 0x04, dataWrite: UInt8 = 0x02, enable: UInt8 = 0x80 | 0x08
    let readCommand = location | (6 << addressLength)
    nic.write8(R.cr9346, enable & ~chipSelect)
    nic.write8(R.cr9346, enable)
    _ = nic.read8(R.cr9346)
    for i in stride(from: 4 + addressLength, through: 0, by: -1) {
        let bit: UInt8 = readCommand & (1 << i) != 0 ? dataWrite : 0
        nic.write8(R.cr9346, enable | bit)
        _ = nic.read8(R.cr9346)
        nic.write8(R.cr9346, enable | bit | clock)
        _ = nic.read8(R.cr9346)
    }
    nic.write8(R.cr9346, enable)
    _ = nic.read8(R.cr9346)
    var value: UInt16 = 0
    for _ in 0..<16 {
        nic.write8(R.cr9346, enable | clock)
        _ = nic.read8(R.cr9346)
        value = value << 1 | (nic.read8(R.cr9346) & 0x01 != 0 ? 1 : 0)
        nic.write8(R.cr9346, enable)
        _ = nic.read8(R.cr9346)
    }
    nic.write8(R.cr9346, 0)
    _ = nic.read8(R.cr9346)
    return value
}
