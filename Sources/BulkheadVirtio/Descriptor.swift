/// One entry of a descriptor table (`struct virtq_desc`, virtio 1.2 2.7.5), as a local copy:
/// the guest may rewrite the table at any moment, so a descriptor is loaded once and only the
/// copy is checked and used.
public struct Descriptor: Sendable, Equatable {
    /// `VIRTQ_DESC_F_NEXT`: the chain continues at `next`.
    public static let flagNext: UInt16 = 1
    /// `VIRTQ_DESC_F_WRITE`: device-writable (otherwise device-readable).
    public static let flagWrite: UInt16 = 2
    /// `VIRTQ_DESC_F_INDIRECT`: the buffer is a table of descriptors.
    public static let flagIndirect: UInt16 = 4
    /// The size of one descriptor in a table.
    public static let size = 16

    public var address: UInt64
    public var length: UInt32
    public var flags: UInt16
    public var next: UInt16

    public init(address: UInt64, length: UInt32, flags: UInt16, next: UInt16) {
        self.address = address
        self.length = length
        self.flags = flags
        self.next = next
    }

    /// Loads the descriptor at `pointer` (16 bytes, any alignment).
    @inline(__always)
    init(loadingFrom pointer: UnsafeRawPointer) {
        // SAFETY: the caller guarantees 16 readable bytes at `pointer`; unaligned loads of
        // trivial integers are always valid.
        address = UInt64(littleEndian: pointer.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        length = UInt32(littleEndian: pointer.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        flags = UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
        next = UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
    }

    public var hasNext: Bool { flags & Self.flagNext != 0 }
    public var isWriteOnly: Bool { flags & Self.flagWrite != 0 }
    public var isIndirect: Bool { flags & Self.flagIndirect != 0 }
}
