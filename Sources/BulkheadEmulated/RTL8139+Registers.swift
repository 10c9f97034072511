/// Register reads and writes: an access of any size at any offset is split into the registers
/// it covers (a 4-byte write at IMR writes IMR and ISR); each register gets the bytes written to
/// it merged into its current value, and applies its own rules.
extension RTL8139 {
    func read(_ state: RTL8139Snapshot, bar: UInt32, offset: UInt64, size: UInt32) -> UInt64 {
        guard bar <= 1, (1...8).contains(size), offset < UInt64(RTL8139Register.count) else { return Self.allOnes(size) }
        let first = Int(offset)
        let end = first + Int(size)
        var result: UInt64 = 0
        var byte = first
        while byte < end {
            guard byte < RTL8139Register.count else {
                result |= 0xFF << (8 * UInt64(byte - first))
                byte += 1
                continue
            }
            let (start, width) = RTL8139Register.layout[byte]
            let value = readRegister(state, start, width: width)
            let stop = min(start + width, end)
            for b in byte..<stop {
                result |= UInt64((value >> (8 * UInt32(b - start))) & 0xFF) << (8 * UInt64(b - first))
            }
            byte = stop
        }
        return result
    }

    func write(_ state: RTL8139Snapshot, bar: UInt32, offset: UInt64, size: UInt32, value: UInt64) {
        guard bar <= 1, (1...8).contains(size), offset < UInt64(RTL8139Register.count) else { return }
        let first = Int(offset)
        let end = min(first + Int(size), RTL8139Register.count)
        var byte = first
        while byte < end {
            let (start, width) = RTL8139Register.layout[byte]
            let stop = min(start + width, end)
            var data: UInt32 = 0
            var mask: UInt32 = 0
            for b in byte..<stop {
                let shift = 8 * UInt32(b - start)
                data |= UInt32((value >> (8 * UInt64(b - first))) & 0xFF) << shift
                mask |= 0xFF << shift
            }
            writeRegister(state, start, width: width, data: data, mask: mask)
            byte = stop
        }
    }

    /// The value a read of the whole register at `start` returns.
    func readRegister(_ state: RTL8139Snapshot, _ start: Int, width: Int) -> UInt32 {
        typealias R = RTL8139Register
        switch start {
        case R.cr:
            let enabled = state.command & (RTL8139Command.receiverEnable | RTL8139Command.transmitterEnable)
            return UInt32(enabled | (state.ringEmpty ? RTL8139Command.bufferEmpty : 0))
        case R.tctr:
            // The 33 MHz PCI clock since TCTR was last written.
            let elapsed = Self.monotonicNanoseconds() &- state.timerBase
            return UInt32(truncatingIfNeeded: elapsed / 1000 &* 33 &+ (elapsed % 1000) &* 33 / 1000)
        case R.cr9346:
            let stored = state.register8(R.cr9346) & ~RTL8139EEPROMCommand.dataOut
            let programming = stored & RTL8139EEPROMCommand.modeMask == RTL8139EEPROMCommand.modeProgramming
            return UInt32(stored | (programming && state.eeprom.dataOutBit ? RTL8139EEPROMCommand.dataOut : 0))
        case R.tsadAll:
            var value: UInt32 = 0
            for n in 0..<R.transmitDescriptors {
                let status = state.transmitStatus(n)
                if status & RTL8139TransmitStatus.transmitOK != 0 { value |= 1 << (12 + n) }
                if status & RTL8139TransmitStatus.underrun != 0 { value |= 1 << (8 + n) }
                if status & RTL8139TransmitStatus.aborted != 0 { value |= 1 << (4 + n) }
                if status & RTL8139TransmitStatus.own != 0 { value |= 1 << n }
            }
            return value
        default:
            return state.register(start, width: width)
        }
    }

    /// A write of the bytes in `mask` (positioned in the register) of `data` to the register at
    /// `start`.
    func writeRegister(_ state: RTL8139Snapshot, _ start: Int, width: Int, data: UInt32, mask: UInt32) {
        typealias R = RTL8139Register
        let old = state.register(start, width: width)
        let merged = (old & ~mask) | (data & mask)
        switch start {
        case R.tsd0, R.tsd0 + 4, R.tsd0 + 8, R.tsd0 + 12:
            writeTransmitStatus(state, descriptor: (start - R.tsd0) / 4, merged)
        case R.cr:
            writeCommand(state, UInt8(truncatingIfNeeded: merged))
        case R.imr:
            state.interruptMask = UInt16(truncatingIfNeeded: merged)
        case R.isr:
            // Write 1 to clear; a 0 leaves the bit as it is.
            state.interruptStatus &= ~UInt16(truncatingIfNeeded: data & mask)
        case R.tcr:
            let writable = RTL8139TransmitConfiguration.writable
            state.setRegister32(R.tcr, old & ~writable | merged & writable)
        case R.rcr:
            let writable = RTL8139ReceiveConfiguration.writable
            state.setRegister32(R.rcr, old & ~writable | merged & writable)
        case R.tctr:
            state.timerBase = Self.monotonicNanoseconds()
        case R.mpc:
            state.setRegister32(R.mpc, 0)
        case R.cr9346:
            writeEEPROMCommand(state, UInt8(truncatingIfNeeded: merged))
        case R.config1, R.config3, R.config4:
            let unlocked = state.register8(R.cr9346) & RTL8139EEPROMCommand.modeMask == RTL8139EEPROMCommand.modeConfigurationWrite
            if unlocked { state.setRegister8(start, UInt8(truncatingIfNeeded: merged)) }
        case R.bmcr:
            // Speed, duplex and auto-negotiation are fixed (the link is virtual); a PHY reset
            // (bit 15) and a restart of auto-negotiation (bit 9) complete at once.
            if merged & 0x8000 != 0 { state.setRegister16(R.bmcr, RTL8139ResetValue.bmcr) }
        case R.erbcr, R.ersr, R.cbr, R.config0, R.msr, R.rerid, R.tsadAll, R.bmsr, R.anlpar, R.aner:
            break // read-only
        default:
            state.setRegister(start, width: width, merged) // plain storage (CAPR included)
        }
    }

    /// CR: RST resets at once (and reads 0 after); RE and TE are stored; turning TE on sends the
    /// descriptors the driver handed over while it was off.
    func writeCommand(_ state: RTL8139Snapshot, _ value: UInt8) {
        if value & RTL8139Command.reset != 0 {
            Self.softReset(state)
            return
        }
        let wasTransmitting = state.command & RTL8139Command.transmitterEnable != 0
        state.command = value & (RTL8139Command.receiverEnable | RTL8139Command.transmitterEnable)
        if !wasTransmitting && state.command & RTL8139Command.transmitterEnable != 0 { transmitPending(state) }
    }

    /// 9346CR: EEM selects normal operation, auto-load (a power-on reset that reloads IDR0–5
    /// from the EEPROM; 9346CR reads 0 after), the EEPROM's pins, or configuration writes.
    func writeEEPROMCommand(_ state: RTL8139Snapshot, _ written: UInt8) {
        let value = state.register8(RTL8139Register.cr9346) & ~RTL8139EEPROMCommand.writable
            | written & RTL8139EEPROMCommand.writable
        switch value & RTL8139EEPROMCommand.modeMask {
        case RTL8139EEPROMCommand.modeAutoLoad:
            Self.powerOn(state, stationAddress: state.stationAddress)
            state.setRegister8(RTL8139Register.cr9346, 0)
        case RTL8139EEPROMCommand.modeProgramming:
            state.setRegister8(RTL8139Register.cr9346, value)
            var eeprom = state.eeprom
            eeprom.setWires(
                chipSelect: value & RTL8139EEPROMCommand.chipSelect != 0, clock: value & RTL8139EEPROMCommand.serialClock != 0,
                dataIn: value & RTL8139EEPROMCommand.dataIn != 0, stationAddress: state.stationAddress)
            state.eeprom = eeprom
        default:
            state.setRegister8(RTL8139Register.cr9346, value)
        }
    }
}
