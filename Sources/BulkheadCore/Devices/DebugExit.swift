/// The debug-exit port (0x501), shaped like QEMU's `isa-debug-exit`: the guest writes a value
/// and the VM stops. Bulkhead exits with that value itself (QEMU exits with `value << 1 | 1`).
public final class DebugExit: PortIODevice {
    public static let port: UInt16 = 0x501
    public static let portCount: UInt16 = 2

    private let onExit: @Sendable (UInt8) -> Void

    public init(onExit: @escaping @Sendable (UInt8) -> Void) { self.onExit = onExit }

    public func read(offset: UInt16, size: Int) -> UInt32 { 0xffff_ffff }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        guard offset == 0 else { return }
        onExit(UInt8(truncatingIfNeeded: value))
    }
}

/// The i8042 keyboard controller, reduced to what a guest uses to reset the machine: writing
/// 0xfe (pulse reset line) to the command port 0x64. Status reads say "no data, ready".
public final class I8042: PortIODevice {
    public static let dataPort: UInt16 = 0x60
    public static let commandPort: UInt16 = 0x64
    static let resetCommand: UInt8 = 0xfe

    private let onReset: @Sendable () -> Void

    public init(onReset: @escaping @Sendable () -> Void) { self.onReset = onReset }

    public func read(offset: UInt16, size: Int) -> UInt32 { 0 }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        if offset == I8042.commandPort - I8042.dataPort && UInt8(truncatingIfNeeded: value) == Self.resetCommand {
            onReset()
        }
    }
}
