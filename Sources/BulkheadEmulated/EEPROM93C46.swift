/// The 93C46 serial EEPROM beside an RTL8139 (64 words of 16 bits), as a driver bit-bangs it
/// through 9346CR: chip select (EECS), clock (EESK), data in (EEDI), data out (EEDO). Linux's
/// 8139too reads the station address from it (words 7–9), not from IDR0–5.
///
/// Only READ is implemented: after CS rises, a start bit (1), the opcode 10 and six address bits
/// are clocked in on rising edges of SK; the chip then drives a dummy 0 and shifts the word out,
/// most significant bit first, one bit per rising edge, and waits for the next command. WRITE,
/// ERASE and the extended commands are ignored (the contents are fixed: this EEPROM is
/// write-protected).
struct EEPROM93C46State: Equatable {
    enum Mode: UInt8 {
        /// CS low, or an ignored command: wait for CS to rise (or the next start bit).
        case idle = 0
        /// CS high: wait for the start bit.
        case awaitingStart = 1
        /// Clocking in the opcode and address.
        case command = 2
        /// Shifting a word out.
        case reading = 3
    }

    var mode: UInt8 = Mode.idle.rawValue
    var tick: UInt8 = 0
    /// Bit 0 CS, 1 SK, 2 DI, 3 DO.
    var wires: UInt8 = 0
    var input: UInt16 = 0
    var output: UInt16 = 0
    var address: UInt8 = 0

    static let chipSelect: UInt8 = 1
    static let clock: UInt8 = 2
    static let dataIn: UInt8 = 4
    static let dataOut: UInt8 = 8

    /// EEDO as the driver reads it.
    var dataOutBit: Bool { wires & Self.dataOut != 0 }

    /// The EEPROM's words: 0x8129 (the RTL8139 signature), the PCI vendor and device ids, and
    /// the station address at words 7–9 (little-endian pairs); zero elsewhere.
    static func word(_ address: Int, stationAddress: [UInt8]) -> UInt16 {
        let mac = stationAddress.count == 6 ? stationAddress : [UInt8](repeating: 0, count: 6)
        switch address {
        case 0: return 0x8129
        case 1: return 0x10EC
        case 2: return 0x8139
        case 7, 8, 9:
            let i = (address - 7) * 2
            return UInt16(mac[i]) | UInt16(mac[i + 1]) << 8
        default: return 0
        }
    }

    /// The driver set the pins through 9346CR (programming mode).
    mutating func setWires(chipSelect: Bool, clock: Bool, dataIn: Bool, stationAddress: [UInt8]) {
        let wasSelected = wires & Self.chipSelect != 0
        let clockWasHigh = wires & Self.clock != 0
        wires = (wires & Self.dataOut) | (chipSelect ? Self.chipSelect : 0) | (clock ? Self.clock : 0)
            | (dataIn ? Self.dataIn : 0)
        if chipSelect && !wasSelected {
            mode = Mode.awaitingStart.rawValue
            tick = 0
            input = 0
            output = 0
        }
        guard chipSelect else {
            wires &= ~Self.dataOut
            mode = Mode.idle.rawValue
            return
        }
        if clock && !clockWasHigh { risingEdge(dataIn: dataIn, stationAddress: stationAddress) }
    }

    private mutating func risingEdge(dataIn bit: Bool, stationAddress: [UInt8]) {
        tick &+= 1
        switch Mode(rawValue: mode) ?? .idle {
        case .idle:
            break
        case .awaitingStart:
            if bit {
                mode = Mode.command.rawValue
                tick = 0
                input = 0
            }
        case .command:
            input = input << 1 | (bit ? 1 : 0)
            guard tick == 8 else { break }
            address = UInt8(input & 0x3F)
            if (input >> 6) & 3 == 2 { // READ
                output = Self.word(Int(address), stationAddress: stationAddress)
                wires &= ~Self.dataOut // the dummy 0
                tick = 0
                mode = Mode.reading.rawValue
            } else {
                mode = Mode.idle.rawValue
            }
        case .reading:
            wires = output & 0x8000 != 0 ? wires | Self.dataOut : wires & ~Self.dataOut
            output <<= 1
            if tick == 16 {
                // Ready for the next command without CS dropping (some drivers never drop it).
                mode = Mode.awaitingStart.rawValue
                tick = 0
                input = 0
            }
        }
    }
}
