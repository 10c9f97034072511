import BulkheadKVM

/// A device on the MMIO bus. Offsets are relative to the device's base address; `data` is the
/// access (1, 2, 4 or 8 bytes, little-endian).
public protocol MMIODevice: AnyObject, Sendable {
    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt64, data: UnsafeRawBufferPointer)
}

/// Routes MMIO exits (accesses no memory slot and no ioeventfd claimed) to devices in the
/// core. Unclaimed reads return all ones; unclaimed writes are dropped.
public final class MMIOBus: Sendable {
    struct Mapping: Sendable {
        let base: GuestAddress
        let size: UInt64
        let device: any MMIODevice
    }

    let mappings: [Mapping]

    public init(_ devices: [(base: GuestAddress, size: UInt64, device: any MMIODevice)]) {
        mappings = devices.map { Mapping(base: $0.base, size: $0.size, device: $0.device) }
    }

    func find(_ address: GuestAddress, length: Int) -> Mapping? {
        mappings.first {
            address >= $0.base && address.rawValue - $0.base.rawValue < $0.size
                && UInt64(length) <= $0.size - (address.rawValue - $0.base.rawValue)
        }
    }

    public func read(_ address: GuestAddress, data: UnsafeMutableRawBufferPointer) {
        guard let mapping = find(address, length: data.count) else {
            for i in 0..<data.count { data[i] = 0xff }
            return
        }
        mapping.device.read(offset: address.rawValue - mapping.base.rawValue, data: data)
    }

    public func write(_ address: GuestAddress, data: UnsafeRawBufferPointer) {
        guard let mapping = find(address, length: data.count) else { return }
        mapping.device.write(offset: address.rawValue - mapping.base.rawValue, data: data)
    }
}

extension UnsafeRawBufferPointer {
    /// The access as a little-endian integer (up to 8 bytes).
    var littleEndianValue: UInt64 {
        var value: UInt64 = 0
        for (i, byte) in prefix(8).enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
        return value
    }
}

extension UnsafeMutableRawBufferPointer {
    /// Stores `value` little-endian into the access, truncated to its width.
    func storeLittleEndian(_ value: UInt64) {
        for i in 0..<Swift.min(count, 8) { self[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }
}
