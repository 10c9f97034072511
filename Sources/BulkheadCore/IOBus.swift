/// What a port read returns when nothing answers it (an ISA bus floats high): all ones of
/// the access size.
@inline(__always) func allOnes(size: Int) -> UInt32 {
    size >= 4 ? 0xffff_ffff : (1 << (size * 8)) - 1
}

/// A device on the port I/O bus. Offsets are relative to the device's base port.
public protocol PortIODevice: AnyObject, Sendable {
    func read(offset: UInt16, size: Int) -> UInt32
    func write(offset: UInt16, size: Int, value: UInt32)
}

/// Routes port I/O exits to the platform devices in the core. Ports nobody claims read as
/// all ones and ignore writes, as on a real ISA bus.
public final class IOBus: Sendable {
    struct Mapping: Sendable {
        let base: UInt16
        let count: UInt16
        let device: any PortIODevice
    }

    let mappings: [Mapping]

    public init(_ devices: [(base: UInt16, count: UInt16, device: any PortIODevice)]) {
        mappings = devices.map { Mapping(base: $0.base, count: $0.count, device: $0.device) }
    }

    func find(_ port: UInt16) -> Mapping? {
        mappings.first { port >= $0.base && port - $0.base < $0.count }
    }

    public func read(port: UInt16, size: Int) -> UInt32 {
        guard let mapping = find(port) else { return allOnes(size: size) }
        return mapping.device.read(offset: port - mapping.base, size: size)
    }

    public func write(port: UInt16, size: Int, value: UInt32) {
        guard let mapping = find(port) else { return }
        mapping.device.write(offset: port - mapping.base, size: size, value: value)
    }
}
