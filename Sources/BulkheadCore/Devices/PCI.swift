import Synchronization

/// PCI bus 0 for emulated devices, reached through configuration mechanism #1 (ports
/// 0xCF8 address, 0xCFC–0xCFF data), as on every PC: Linux probes it without ACPI help.
///
/// Device 0 is a host bridge; emulated devices follow at devices 1, 2, ... Each has an I/O
/// BAR (BAR 0) and may have a 32-bit memory BAR (BAR 1), which the core assigns before boot
/// the way firmware would and the guest may move anywhere in their windows (`PCIIOWindow`,
/// `PCIMemoryWindow`). An access to a window goes to the function whose enabled BAR covers it.
/// Configuration space lives in the core: the core must know where the BARs are to route
/// their accesses; what is behind the BAR is the device's (a driver domain's).
public final class PCIBus: PortIODevice {
    public static let configAddressPort: UInt16 = 0xcf8
    public static let portCount: UInt16 = 8

    let functions: [PCIFunction]
    /// The last value written to CONFIG_ADDRESS.
    private let address = Mutex<UInt32>(0)

    /// `functions[i]` becomes device `i + 1` on bus 0.
    public init(functions: [PCIFunction]) {
        self.functions = functions
    }

    static let hostBridge = PCIFunction.Identity(vendorID: 0x1b36, deviceID: 0x0008, classCode: 0x060000, revision: 0)

    public func read(offset: UInt16, size: Int) -> UInt32 {
        let ones = allOnes(size: size)
        if offset < 4 { return offset == 0 && size == 4 ? address.withLock { $0 } : ones }
        guard let (function, register) = selected(byte: offset - 4) else { return ones }
        let dword = function?.readConfig(register & ~3) ?? Self.hostBridgeConfig(register & ~3)
        return (dword >> ((register & 3) * 8)) & ones
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        if offset < 4 {
            // Only a 32-bit write to 0xCF8 is CONFIG_ADDRESS (0xCF9 is the reset register on
            // chipsets that have one; here byte writes are ignored).
            if offset == 0 && size == 4 { address.withLock { $0 = value } }
            return
        }
        guard let (function, register) = selected(byte: offset - 4), let function else { return }
        function.writeConfig(register, size: size, value: value)
    }

    /// The function CONFIG_ADDRESS selects (nil: the host bridge) and the register byte of the
    /// data-port access; nil when nothing answers (disabled, another bus, an absent device).
    private func selected(byte: UInt16) -> (PCIFunction?, UInt32)? {
        let value = address.withLock { $0 }
        guard value & 0x8000_0000 != 0 else { return nil }
        let bus = (value >> 16) & 0xff, device = Int((value >> 11) & 0x1f), function = (value >> 8) & 0x7
        guard bus == 0, function == 0 else { return nil }
        let register = (value & 0xfc) + UInt32(byte)
        if device == 0 { return (nil, register) }
        guard device - 1 < functions.count else { return nil }
        return (functions[device - 1], register)
    }

    static func hostBridgeConfig(_ register: UInt32) -> UInt32 {
        switch register {
        case 0x00: return UInt32(hostBridge.deviceID) << 16 | UInt32(hostBridge.vendorID)
        case 0x04: return 0x0000_0006 // memory + bus master enabled
        case 0x08: return hostBridge.classCode << 8 | UInt32(hostBridge.revision)
        default: return 0
        }
    }
}

/// One PCI function: its identity, a configuration space, an I/O BAR served by `device` and
/// optionally a memory BAR served by `memoryDevice` (the same registers, for drivers that
/// prefer MMIO, as Linux's 8139too does).
public final class PCIFunction: Sendable {
    public struct Identity: Sendable {
        public var vendorID: UInt16
        public var deviceID: UInt16
        /// Class, subclass, programming interface (e.g. 0x020000: Ethernet controller).
        public var classCode: UInt32
        public var revision: UInt8
        public var subsystemVendorID: UInt16 = 0
        public var subsystemID: UInt16 = 0

        public init(vendorID: UInt16, deviceID: UInt16, classCode: UInt32, revision: UInt8,
                    subsystemVendorID: UInt16 = 0, subsystemID: UInt16 = 0) {
            self.vendorID = vendorID
            self.deviceID = deviceID
            self.classCode = classCode
            self.revision = revision
            self.subsystemVendorID = subsystemVendorID
            self.subsystemID = subsystemID
        }
    }

    static let commandIO: UInt16 = 1 << 0
    static let commandMemory: UInt16 = 1 << 1
    static let commandBusMaster: UInt16 = 1 << 2
    static let commandInterruptDisable: UInt16 = 1 << 10
    static let writableCommandBits = commandIO | commandMemory | commandBusMaster | commandInterruptDisable

    let identity: Identity
    /// Bytes of the I/O BAR: a power of two, at least 4.
    let ioSize: UInt32
    let interruptPin: UInt8
    let device: any PortIODevice
    /// Bytes of the memory BAR (a power of two, at least 16), and what serves it; nil: none.
    let memorySize: UInt32?
    let memoryDevice: (any PortIODevice)?

    private struct Registers {
        var command: UInt16 = 0
        var bar0: UInt32
        var bar1: UInt32
        var cacheLineSize: UInt8 = 0
        var latencyTimer: UInt8 = 0
        var interruptLine: UInt8
    }
    private let registers: Mutex<Registers>

    /// `ioBase` and `memory.base` are where firmware would have put BARs 0 and 1;
    /// `interruptLine` the GSI its INTx reaches (INTA#).
    public init(identity: Identity, ioSize: UInt32, ioBase: UInt16, interruptLine: UInt8, device: any PortIODevice,
                memory: (size: UInt32, base: UInt32, device: any PortIODevice)? = nil) {
        precondition(ioSize >= 4 && ioSize & (ioSize - 1) == 0 && ioSize <= 0x1000, "I/O BAR size \(ioSize)")
        if let memory { precondition(memory.size >= 16 && memory.size & (memory.size - 1) == 0, "memory BAR size \(memory.size)") }
        self.identity = identity
        self.ioSize = ioSize
        self.interruptPin = 1
        self.device = device
        memorySize = memory?.size
        memoryDevice = memory?.device
        registers = Mutex(Registers(bar0: UInt32(ioBase) & ~(ioSize - 1), bar1: memory.map { $0.base & ~($0.size - 1) } ?? 0,
                                    interruptLine: interruptLine))
    }

    /// Where BAR 0 decodes now: nil unless I/O decoding is on.
    var ioRange: Range<UInt32>? {
        registers.withLock { r in
            guard r.command & Self.commandIO != 0, r.bar0 != 0 else { return nil }
            return r.bar0..<(r.bar0 + ioSize)
        }
    }

    /// Where BAR 1 decodes now: nil unless there is one and memory decoding is on.
    var memoryRange: Range<UInt64>? {
        guard let memorySize else { return nil }
        return registers.withLock { r in
            guard r.command & Self.commandMemory != 0, r.bar1 != 0 else { return nil }
            return UInt64(r.bar1)..<(UInt64(r.bar1) + UInt64(memorySize))
        }
    }

    func readConfig(_ register: UInt32) -> UInt32 {
        registers.withLock { r in
            switch register {
            case 0x00: return UInt32(identity.deviceID) << 16 | UInt32(identity.vendorID)
            case 0x04: return UInt32(r.command) // status 0: no capability list, no errors
            case 0x08: return identity.classCode << 8 | UInt32(identity.revision)
            case 0x0c: return UInt32(r.latencyTimer) << 8 | UInt32(r.cacheLineSize) // header type 0, no BIST
            case 0x10: return r.bar0 | 1 // I/O space indicator
            case 0x14: return r.bar1 // memory, 32-bit, not prefetchable (0 without a memory BAR)
            case 0x2c: return UInt32(identity.subsystemID) << 16 | UInt32(identity.subsystemVendorID)
            case 0x3c: return UInt32(interruptPin) << 8 | UInt32(r.interruptLine)
            default: return 0 // BARs 1-5, expansion ROM, capabilities: none
            }
        }
    }

    /// A write of `size` bytes at configuration byte `register`.
    func writeConfig(_ register: UInt32, size: Int, value: UInt32) {
        registers.withLock { r in
            // Merge a narrow write into its dword, as the register sees it.
            let shift = (register & 3) * 8
            let mask: UInt32 = size >= 4 ? 0xffff_ffff : ((1 << (size * 8)) - 1) << shift
            func merged(_ old: UInt32) -> UInt32 { (old & ~mask) | ((value << shift) & mask) }
            switch register & ~3 {
            case 0x04:
                let command = UInt16(truncatingIfNeeded: merged(UInt32(r.command)))
                r.command = command & Self.writableCommandBits // status bits: write-1-to-clear, none set
            case 0x0c:
                let dword = merged(UInt32(r.latencyTimer) << 8 | UInt32(r.cacheLineSize))
                r.cacheLineSize = UInt8(truncatingIfNeeded: dword)
                r.latencyTimer = UInt8(truncatingIfNeeded: dword >> 8)
            case 0x10:
                // I/O addresses are 16-bit; sizing writes all ones and reads back the size mask
                // (0xff01 for 256 bytes). Only a BAR inside `PCIIOWindow` is reachable.
                r.bar0 = merged(r.bar0) & ~(ioSize - 1) & 0xffff
            case 0x14:
                // Only a BAR inside `PCIMemoryWindow` is reachable.
                if let memorySize { r.bar1 = merged(r.bar1) & ~(memorySize - 1) }
            case 0x3c:
                r.interruptLine = UInt8(truncatingIfNeeded: merged(UInt32(r.interruptLine)))
            default:
                break
            }
        }
    }
}

/// The I/O ports PCI BARs may decode (0xC000–0xFFFF, above every legacy device): a port goes
/// to the function whose enabled BAR 0 covers it; ports nobody decodes read as all ones.
public final class PCIIOWindow: PortIODevice {
    public static let base: UInt16 = 0xc000
    public static let count: UInt16 = 0x4000

    let functions: [PCIFunction]

    public init(functions: [PCIFunction]) { self.functions = functions }

    /// The function whose enabled BAR 0 decodes the port at `offset` in the window, and the
    /// register offset inside that BAR.
    private func target(_ offset: UInt16) -> (any PortIODevice, UInt16)? {
        let port = UInt32(Self.base) + UInt32(offset)
        for function in functions {
            if let range = function.ioRange, range.contains(port) {
                return (function.device, UInt16(port - range.lowerBound))
            }
        }
        return nil
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        guard let (device, register) = target(offset) else { return allOnes(size: size) }
        return device.read(offset: register, size: size)
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        guard let (device, register) = target(offset) else { return }
        device.write(offset: register, size: size, value: value)
    }
}

/// The guest-physical range PCI memory BARs may decode (16 MiB at 0xE000_0000, in the MMIO
/// hole below the IOAPIC): an access goes to the function whose enabled BAR 1 covers it, as
/// a little-endian register access; addresses nobody decodes read as all ones.
public final class PCIMemoryWindow: MMIODevice {
    public static let base: UInt64 = 0xe000_0000
    public static let size: UInt64 = 0x0100_0000

    let functions: [PCIFunction]

    public init(functions: [PCIFunction]) { self.functions = functions }

    private func target(_ offset: UInt64, _ count: Int) -> (any PortIODevice, UInt16)? {
        let address = Self.base + offset
        for function in functions {
            if let range = function.memoryRange, range.contains(address), address + UInt64(count) <= range.upperBound,
               let device = function.memoryDevice {
                return (device, UInt16(address - range.lowerBound))
            }
        }
        return nil
    }

    public func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        guard data.count <= 4, let (device, register) = target(offset, data.count) else {
            data.storeLittleEndian(.max)
            return
        }
        data.storeLittleEndian(UInt64(device.read(offset: register, size: data.count)))
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard data.count <= 4, let (device, register) = target(offset, data.count) else { return }
        device.write(offset: register, size: data.count, value: UInt32(truncatingIfNeeded: data.littleEndianValue))
    }
}
