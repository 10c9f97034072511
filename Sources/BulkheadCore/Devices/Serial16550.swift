import Synchronization

/// A 16550A UART (COM1: port 0x3f8, IRQ 4). Output goes to a sink (stdout); input comes from
/// `receive` (stdin when it is a terminal). The guest may poll LSR or use the interrupts.
public final class Serial16550: PortIODevice {
    public static let com1Port: UInt16 = 0x3f8
    public static let com1IRQ: UInt32 = 4

    struct State {
        var ier: UInt8 = 0
        var lcr: UInt8 = 0
        var mcr: UInt8 = 0
        var scr: UInt8 = 0
        var dll: UInt8 = 0x0c // 9600 baud
        var dlm: UInt8 = 0
        var fcr: UInt8 = 0
        var rx: [UInt8] = []
        var thrEmptyPending = true
        var irqLevel = false
    }

    private let state = Mutex(State())
    private let output: @Sendable (UInt8) -> Void
    private let setIRQ: @Sendable (Bool) -> Void

    // Register offsets and bits (16550 data sheet).
    static let ierRxAvailable: UInt8 = 0x01
    static let ierThrEmpty: UInt8 = 0x02
    static let lcrDLAB: UInt8 = 0x80
    static let lsrDataReady: UInt8 = 0x01
    static let lsrThrEmpty: UInt8 = 0x20
    static let lsrTransmitterEmpty: UInt8 = 0x40
    static let rxLimit = 4096

    public init(output: @escaping @Sendable (UInt8) -> Void, setIRQ: @escaping @Sendable (Bool) -> Void) {
        self.output = output
        self.setIRQ = setIRQ
    }

    /// Bytes typed by the user, delivered to the guest.
    public func receive(_ bytes: some Sequence<UInt8>) {
        let level = state.withLock { s -> Bool? in
            for byte in bytes where s.rx.count < Self.rxLimit { s.rx.append(byte) }
            return Self.updateIRQ(&s)
        }
        if let level { setIRQ(level) }
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        var level: Bool?
        let value = state.withLock { s -> UInt8 in
            defer { level = Self.updateIRQ(&s) }
            let dlab = s.lcr & Self.lcrDLAB != 0
            switch offset {
            case 0:
                if dlab { return s.dll }
                return s.rx.isEmpty ? 0 : s.rx.removeFirst()
            case 1: return dlab ? s.dlm : s.ier
            case 2:
                // IIR: highest-priority pending interrupt; reading it clears THR-empty.
                let fifo: UInt8 = s.fcr & 1 != 0 ? 0xc0 : 0
                if s.ier & Self.ierRxAvailable != 0 && !s.rx.isEmpty { return fifo | 0x04 }
                if s.ier & Self.ierThrEmpty != 0 && s.thrEmptyPending {
                    s.thrEmptyPending = false
                    return fifo | 0x02
                }
                return fifo | 0x01
            case 3: return s.lcr
            case 4: return s.mcr
            case 5: return (s.rx.isEmpty ? 0 : Self.lsrDataReady) | Self.lsrThrEmpty | Self.lsrTransmitterEmpty
            case 6:
                // MSR: in loopback, reflect MCR; otherwise CTS, DSR and DCD asserted.
                if s.mcr & 0x10 != 0 { return (s.mcr & 0x0c) << 4 | (s.mcr & 0x03) << 4 }
                return 0xb0
            case 7: return s.scr
            default: return 0xff
            }
        }
        if let level { setIRQ(level) }
        return UInt32(value)
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        let byte = UInt8(truncatingIfNeeded: value)
        var emit: UInt8?
        let level = state.withLock { s -> Bool? in
            let dlab = s.lcr & Self.lcrDLAB != 0
            switch offset {
            case 0:
                if dlab { s.dll = byte } else {
                    if s.mcr & 0x10 != 0 { if s.rx.count < Self.rxLimit { s.rx.append(byte) } } else { emit = byte }
                    s.thrEmptyPending = true
                }
            case 1:
                if dlab { s.dlm = byte } else {
                    if byte & Self.ierThrEmpty != 0 && s.ier & Self.ierThrEmpty == 0 { s.thrEmptyPending = true }
                    s.ier = byte & 0x0f
                }
            case 2: s.fcr = byte; if byte & 0x02 != 0 { s.rx.removeAll() }
            case 3: s.lcr = byte
            case 4: s.mcr = byte & 0x1f
            case 7: s.scr = byte
            default: break
            }
            return Self.updateIRQ(&s)
        }
        if let emit { output(emit) }
        if let level { setIRQ(level) }
    }

    /// Recomputes the interrupt line; returns the new level when it changed.
    private static func updateIRQ(_ s: inout State) -> Bool? {
        let pending = (s.ier & ierRxAvailable != 0 && !s.rx.isEmpty) || (s.ier & ierThrEmpty != 0 && s.thrEmptyPending)
        // OUT2 gates the interrupt onto the ISA line on PC-compatible boards.
        let level = pending && s.mcr & 0x08 != 0
        guard level != s.irqLevel else { return nil }
        s.irqLevel = level
        return level
    }
}
