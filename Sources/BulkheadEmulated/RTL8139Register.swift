/// The RTL8139's operational registers: 256 bytes behind BAR 0 (I/O) and BAR 1 (memory), as
/// the Realtek RTL8139C(L) / RTL8139D(L) datasheets name them. Offsets are bytes from the start
/// of the BAR; multi-byte registers are little-endian.
public enum RTL8139Register {
    /// ID registers IDR0–IDR5: the station (MAC) address; IDR0 is its first byte.
    public static let idr0 = 0x00
    /// Multicast registers MAR0–MAR7: the 64-bit multicast hash filter.
    public static let mar0 = 0x08
    /// Transmit status of descriptor 0 (TSD0); descriptor n at `tsd0 + 4n`.
    public static let tsd0 = 0x10
    /// Transmit start address of descriptor 0 (TSAD0); descriptor n at `tsad0 + 4n`.
    public static let tsad0 = 0x20
    /// Receive (ring) buffer start address.
    public static let rbstart = 0x30
    /// Early receive byte count (u16, read-only: early receive is not emulated).
    public static let erbcr = 0x34
    /// Early receive status (u8, read-only).
    public static let ersr = 0x36
    /// Command register (u8): RST, RE, TE, BUFE.
    public static let cr = 0x37
    /// Current address of packet read (u16): where the driver has read up to, minus 16.
    public static let capr = 0x38
    /// Current buffer address (u16, read-only): where the next frame will be written.
    public static let cbr = 0x3A
    /// Interrupt mask (u16).
    public static let imr = 0x3C
    /// Interrupt status (u16, write 1 to clear).
    public static let isr = 0x3E
    /// Transmit configuration (u32; its hardware version bits are read-only).
    public static let tcr = 0x40
    /// Receive configuration (u32).
    public static let rcr = 0x44
    /// Timer count (u32): counts the 33 MHz PCI clock; any write restarts it at 0.
    public static let tctr = 0x48
    /// Missed packet counter (u32, 24 bits valid): frames dropped because the ring was full;
    /// any write clears it.
    public static let mpc = 0x4C
    /// 93C46 (EEPROM) command register (u8).
    public static let cr9346 = 0x50
    /// Configuration register 0 (u8, read-only).
    public static let config0 = 0x51
    /// Configuration register 1 (u8, writable while 9346CR enables configuration writes).
    public static let config1 = 0x52
    /// Timer interrupt (u32): stored, no TimeOut interrupt is generated.
    public static let timerInt = 0x54
    /// Media status (u8, read-only).
    public static let msr = 0x58
    /// Configuration register 3 (u8, writable while 9346CR enables configuration writes).
    public static let config3 = 0x59
    /// Configuration register 4 (u8, writable while 9346CR enables configuration writes).
    public static let config4 = 0x5A
    /// Multiple interrupt select (u16).
    public static let mulint = 0x5C
    /// PCI revision ID (u8, read-only).
    public static let rerid = 0x5E
    /// Transmit status of all descriptors (u16, read-only): TOK, TUN, TABT and OWN of each.
    public static let tsadAll = 0x60
    /// Basic mode control (u16, the internal PHY's MII register 0).
    public static let bmcr = 0x62
    /// Basic mode status (u16, read-only, MII register 1).
    public static let bmsr = 0x64
    /// Auto-negotiation advertisement (u16, MII register 4).
    public static let anar = 0x66
    /// Auto-negotiation link partner ability (u16, read-only, MII register 5).
    public static let anlpar = 0x68
    /// Auto-negotiation expansion (u16, read-only, MII register 6).
    public static let aner = 0x6A
    /// Configuration register 5 (u8).
    public static let config5 = 0xD8

    /// Bytes of the register file.
    public static let count = 256
    /// Transmit descriptors.
    public static let transmitDescriptors = 4

    /// The width in bytes of the register that starts at `offset`, for registers with
    /// behaviour; every other byte is plain storage (its own 1-byte register).
    static func width(at offset: Int) -> Int? {
        switch offset {
        case tsd0, tsd0 + 4, tsd0 + 8, tsd0 + 12, tcr, rcr, tctr, mpc: 4
        case erbcr, capr, cbr, imr, isr, tsadAll, bmcr, bmsr, anlpar, aner: 2
        case ersr, cr, cr9346, config0, config1, msr, config3, config4, rerid: 1
        default: nil
        }
    }

    /// For each byte of the register file: the offset of the register it belongs to, and that
    /// register's width.
    static let layout: [(start: Int, width: Int)] = {
        var table = (0..<count).map { (start: $0, width: 1) }
        for offset in 0..<count {
            guard let width = width(at: offset) else { continue }
            for byte in offset..<offset + width { table[byte] = (offset, width) }
        }
        return table
    }()
}

/// CR bits.
public enum RTL8139Command {
    /// BUFE: the receive ring is empty (read-only).
    public static let bufferEmpty: UInt8 = 0x01
    /// TE: transmitter enable.
    public static let transmitterEnable: UInt8 = 0x04
    /// RE: receiver enable.
    public static let receiverEnable: UInt8 = 0x08
    /// RST: software reset (reads 0 once the reset is done, which is at once).
    public static let reset: UInt8 = 0x10
}

/// ISR and IMR bits.
public enum RTL8139Interrupt {
    /// ROK: a frame was received into the ring.
    public static let receiveOK: UInt16 = 0x0001
    /// RER: receive error (never set: the wire delivers no bad frames).
    public static let receiveError: UInt16 = 0x0002
    /// TOK: a descriptor was transmitted.
    public static let transmitOK: UInt16 = 0x0004
    /// TER: a transmission was aborted (its buffer lies outside guest memory).
    public static let transmitError: UInt16 = 0x0008
    /// RXOVW: receive buffer overflow: a frame did not fit the ring and was dropped (MPC counts it).
    public static let receiveBufferOverflow: UInt16 = 0x0010
    /// PUN/LinkChg: packet underrun or link change (never set: the link stays up).
    public static let linkChange: UInt16 = 0x0020
    /// FOVW: receive FIFO overflow (never set).
    public static let receiveFIFOOverflow: UInt16 = 0x0040
    /// LenChg: cable length change (never set).
    public static let lengthChange: UInt16 = 0x2000
    /// TimeOut: TCTR reached TimerInt (never set: not emulated).
    public static let timeOut: UInt16 = 0x4000
    /// SERR: system error: a receive DMA fell outside guest memory.
    public static let systemError: UInt16 = 0x8000
    /// The bits that exist (the others read 0 and cannot be set).
    public static let all: UInt16 = 0xE07F
}

/// TSD bits.
public enum RTL8139TransmitStatus {
    /// SIZE: bytes of the frame at TSAD (bits 0–12).
    public static let sizeMask: UInt32 = 0x1FFF
    /// OWN: 1 once the device is done with the buffer (the driver writes 0 to start).
    public static let own: UInt32 = 0x2000
    /// TUN: transmit FIFO underrun (never set).
    public static let underrun: UInt32 = 0x4000
    /// TOK: the frame was transmitted.
    public static let transmitOK: UInt32 = 0x8000
    /// TABT: the transmission was aborted.
    public static let aborted: UInt32 = 0x4000_0000
    /// What a driver's write sets: SIZE, OWN, ERTXTH (the early transmit threshold, bits 16–21).
    /// A write clears every status bit.
    public static let writable: UInt32 = 0x003F_3FFF
}

/// RCR bits.
public enum RTL8139ReceiveConfiguration {
    /// AAP: accept all packets with a physical destination address (promiscuous).
    public static let acceptAllPhysical: UInt32 = 0x01
    /// APM: accept packets to this station's address.
    public static let acceptPhysicalMatch: UInt32 = 0x02
    /// AM: accept multicast packets whose hash bit is set in MAR.
    public static let acceptMulticast: UInt32 = 0x04
    /// AB: accept broadcast packets.
    public static let acceptBroadcast: UInt32 = 0x08
    /// WRAP: 1 — a frame that runs past the end of the ring continues past it (the driver
    /// allocated the spare room); 0 — it wraps to the start. Ignored for a 64 KiB ring.
    public static let noWrap: UInt32 = 0x80
    /// RBLEN (bits 11–12): ring of 8 KiB << RBLEN (plus 16 bytes).
    public static let ringLengthShift: UInt32 = 11
    /// The bits a driver can write; the others (reserved, 9356SEL) keep their value.
    public static let writable: UInt32 = 0x0F03_FFBF
}

/// TCR: the hardware version the driver identifies the chip by, and the writable bits.
public enum RTL8139TransmitConfiguration {
    /// HWVERID of an RTL8139C (bits 30–26 = 11101, 23–22 = 00): Linux's 8139too knows it as
    /// "RTL-8139C".
    public static let hardwareVersion8139C: UInt32 = 0x7400_0000
    /// IFG (25–24), LBK/CRC (19–16), MXDMA (10–8), TXRR (7–4); the version bits are read-only.
    public static let writable: UInt32 = 0x030F_07F0
}

/// Status bits in the 32-bit header the device writes before each received frame (the low
/// 16 bits; the high 16 are the frame's length including its 4-byte CRC).
public enum RTL8139ReceiveStatus {
    /// ROK: a good frame.
    public static let receiveOK: UInt16 = 0x0001
    /// BAR: sent to the broadcast address.
    public static let broadcast: UInt16 = 0x2000
    /// PAM: sent to this station's address.
    public static let physicalMatch: UInt16 = 0x4000
    /// MAR: sent to a multicast address.
    public static let multicast: UInt16 = 0x8000
}

/// 9346CR: the EEPROM interface and the configuration-write lock.
public enum RTL8139EEPROMCommand {
    /// EEM (bits 7–6): operating mode.
    public static let modeMask: UInt8 = 0xC0
    /// EEM = 01: auto-load the EEPROM (the chip resets as at power-on).
    public static let modeAutoLoad: UInt8 = 0x40
    /// EEM = 10: the EEPROM's pins are driven by EECS/EESK/EEDI and read through EEDO.
    public static let modeProgramming: UInt8 = 0x80
    /// EEM = 11: CONFIG0–4 (and BMCR) writes enabled.
    public static let modeConfigurationWrite: UInt8 = 0xC0
    public static let chipSelect: UInt8 = 0x08
    public static let serialClock: UInt8 = 0x04
    public static let dataIn: UInt8 = 0x02
    public static let dataOut: UInt8 = 0x01
    /// EEM, EECS, EESK, EEDI; EEDO is read-only and bits 5–4 are reserved.
    public static let writable: UInt8 = 0xCE
}

/// Values a register holds after power-on (datasheet defaults; the PHY shows a link that is up
/// at 100 Mbit/s full duplex with auto-negotiation complete).
public enum RTL8139ResetValue {
    public static let tsd: UInt32 = RTL8139TransmitStatus.own
    /// CAPR: 0xFFF0, so that CAPR + 16 = 0 = CBR (the ring is empty).
    public static let capr: UInt16 = 0xFFF0
    public static let tcr: UInt32 = RTL8139TransmitConfiguration.hardwareVersion8139C
    /// CONFIG1: IOMAP | MEMMAP (the registers are behind both BARs).
    public static let config1: UInt8 = 0x0C
    /// MSR: AUX power present; LINKB = 0 (link OK); SPEED_10 = 0 (100 Mbit/s); no flow control.
    public static let msr: UInt8 = 0x10
    /// RERID: revision 0x10 (below 0x20, which Linux takes for an 8139C+).
    public static let rerid: UInt8 = 0x10
    /// BMCR: 100 Mbit/s, auto-negotiation enabled, full duplex.
    public static let bmcr: UInt16 = 0x3100
    /// BMSR: 100BASE-TX FD/HD, 10BASE-T FD/HD, auto-negotiation complete, able to
    /// auto-negotiate, link up, extended capabilities.
    public static let bmsr: UInt16 = 0x782D
    /// ANAR: 100BASE-TX FD/HD, 10BASE-T FD/HD, IEEE 802.3 selector.
    public static let anar: UInt16 = 0x05E1
    /// ANLPAR: the link partner advertises the same.
    public static let anlpar: UInt16 = 0x05E1
    /// ANER: the link partner can auto-negotiate.
    public static let aner: UInt16 = 0x0001
}
